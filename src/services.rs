//! The application's parts, built once by [`Services::build`] and owned
//! here: the cluster, the repository's syncer, the run ledger and its
//! trackers, the dispatcher, the publisher and the background work. Every
//! part reaches the others through this one context (controller-rs'
//! `Context`): the HTTP state holds it, the background loops borrow it, and
//! nothing else hands the parts around.
//!
//! What it does not own: the HTTP server and its access rules (`http`), the
//! signals and the stop's time bound ([`crate::Application`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::cluster::{self, Applier};
use crate::publish::workflow::{Parts, Publisher};
use crate::publish::Relauncher;
use crate::run::callbacks::RetryPolicy;
use crate::run::dispatch::Dispatcher;
use crate::run::lifecycle::Lifecycle;
use crate::run::rollbacks::Rollbacks;
use crate::run::runs::Runs;
use crate::schedule::lease::{Elector, Leadership, LeaseSettings};
use crate::schedule::ticker::Ticker;
use crate::schedule::SchedulerStatus;
use crate::settings::{Settings, StoreSettings};
use crate::source::Syncer;
use crate::store::{Clock, Store};
use crate::tasks::{ShutdownReport, Tasks};
use crate::{callback, StartError};

/// The application's parts.
pub struct Services {
    applier: Arc<Applier>,
    syncer: Arc<Syncer>,
    lifecycle: Arc<Lifecycle>,
    runs: Arc<Runs>,
    dispatcher: Arc<Dispatcher>,
    publisher: Arc<Publisher>,
    /// Whether this replica fires the schedules (the scheduler's Lease).
    leadership: Arc<Leadership>,
    tasks: Tasks,
    /// Publishes in flight (`--max-in-flight` permits).
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

impl Services {
    /// Connects to the cluster, opens the store and wires the parts;
    /// `public_url` is `{{GITFAAS_URL}}`. Runs nothing yet: see
    /// [`Self::recover`] and [`Self::spawn_background`].
    pub async fn build(settings: &Settings, public_url: String) -> Result<Self, StartError> {
        let applier = connect(settings).await?;
        let store = open_store(settings).await?;
        let callbacks = callback::CallbackClient::new(
            settings.callbacks.targets.clone(),
            settings.callbacks.max_in_flight,
            settings.callbacks.signing.clone(),
        )
        .map_err(StartError::Callbacks)?;
        let tasks = Tasks::new();
        let retry = RetryPolicy {
            max_wait: settings.callbacks.max_wait,
            lease: settings.callbacks.lease,
            ..Default::default()
        };
        let lifecycle = Arc::new(Lifecycle::new(
            store,
            Arc::clone(&applier),
            callbacks,
            retry,
            tasks.clone(),
            settings.limits.log_archive_bytes,
        ));
        let runs = Runs::new(Arc::clone(&lifecycle));
        let syncer = Arc::new(Syncer::new(
            settings.source.clone(),
            settings.config_path.clone(),
        ));
        let rollbacks = Rollbacks::new();
        let relauncher = Relauncher::new(
            Arc::clone(&applier),
            settings.policy.clone(),
            tasks.clone(),
            Arc::clone(&rollbacks),
        );
        let dispatcher = Dispatcher::new(
            Arc::clone(&lifecycle),
            Arc::clone(&runs),
            Arc::clone(&syncer),
            Arc::new(relauncher.clone()),
            Arc::clone(&rollbacks),
            settings.limits.dispatch_lease,
        );
        let in_flight = Arc::new(Semaphore::new(settings.limits.max_in_flight));
        let publisher = Arc::new(Publisher::new(Parts {
            syncer: Arc::clone(&syncer),
            applier: Arc::clone(&applier),
            lifecycle: Arc::clone(&lifecycle),
            runs: Arc::clone(&runs),
            policy: settings.policy.clone(),
            public_url,
            limits: settings.limits,
            max_payload_bytes: settings.max_payload_bytes,
            in_flight: Arc::clone(&in_flight),
            tasks: tasks.clone(),
            dispatcher: Arc::clone(&dispatcher),
            relauncher,
            rollbacks,
        }));
        let leadership = Leadership::new(LeaseSettings {
            name: settings.lease.name.clone(),
            namespace: settings
                .lease
                .namespace
                .clone()
                .unwrap_or_else(|| applier.home_namespace().to_string()),
            duration: settings.lease.duration,
            identity: crate::schedule::lease::identity(),
        });
        Ok(Services {
            applier,
            syncer,
            lifecycle,
            runs,
            dispatcher,
            publisher,
            leadership,
            tasks,
            in_flight,
            max_in_flight: settings.limits.max_in_flight,
        })
    }

    /// Takes over what a previous process left, then syncs: the runs it
    /// left running followed again, its callbacks swept from the outbox, the
    /// first sync (a failure is logged, not fatal: publishes answer 503
    /// until a sync succeeds), and the dispatch slots swept (which needs the
    /// topics' limits, so after the sync).
    pub async fn recover(&self) {
        match self.runs.resume().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                runs = n,
                "following the runs a previous process left running"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the runs left running; they are settled when read")
            }
        }
        sweep_outbox(Arc::clone(&self.lifecycle)).await;
        tracing::info!(source = self.syncer.describe(), "first sync");
        if let Err(e) = self.syncer.sync().await {
            tracing::error!(error = %e, "first sync failed; publishes answer 503 until a sync succeeds");
        }
        sweep_dispatch(Arc::clone(&self.dispatcher)).await;
    }

    /// Starts the background work, every piece a task of [`Self::tasks`]:
    /// the sync loop, the hourly purge, the outbox and dispatch sweeps, the
    /// dispatcher's wake-ups, the flush of records the store could not
    /// take, the release of free memory while idle, and the scheduler (its
    /// Lease and its ticks; both idle while no topic has a schedule).
    pub fn spawn_background(&self, every: Background) {
        let tasks = &self.tasks;
        tasks.spawn_drained(
            "sync loop",
            Arc::clone(&self.syncer).run(every.poll_interval, tasks.token()),
        );
        let store = self.lifecycle.store.clone();
        tasks.spawn_every("purge expired", Duration::from_secs(3600), move || {
            purge_expired(store.clone())
        });
        // The callbacks a process that died or stopped left in the outbox.
        let lifecycle = Arc::clone(&self.lifecycle);
        tasks.spawn_every("sweep outbox", every.callback_lease, move || {
            sweep_outbox(Arc::clone(&lifecycle))
        });
        let dispatcher = Arc::clone(&self.dispatcher);
        tasks.spawn_every(
            "sweep dispatch",
            (every.dispatch_lease / 3).max(Duration::from_millis(300)),
            move || sweep_dispatch(Arc::clone(&dispatcher)),
        );
        if let Some(wakeups) = self.runs.take_wakeups() {
            tasks.spawn_cancellable(
                "dispatch wakeups",
                Arc::clone(&self.dispatcher).run(wakeups),
            );
        }
        // Writes the records the store could not take, once it is back.
        let lifecycle = Arc::clone(&self.lifecycle);
        tasks.spawn_every("flush pending", Duration::from_secs(1), move || {
            let lifecycle = Arc::clone(&lifecycle);
            async move {
                lifecycle.flush_pending().await;
            }
        });
        // Drained: a tick's publish in progress finishes; the elector then
        // gives the Lease up, after its ticker's last fire at the latest.
        let elector = Arc::new(Elector::new(
            self.applier.client().clone(),
            Arc::clone(&self.leadership),
            Arc::clone(&self.syncer),
        ));
        tasks.spawn_drained("scheduler lease", elector.run(tasks.token()));
        let ticker = Arc::new(Ticker::new(
            Arc::clone(&self.syncer),
            Arc::clone(&self.publisher),
            self.lifecycle.store.clone(),
            Arc::clone(&self.leadership),
        ));
        tasks.spawn_drained("scheduler", ticker.run(tasks.token()));
        let (in_flight, max) = (Arc::clone(&self.in_flight), self.max_in_flight);
        tasks.spawn_every("trim memory", Duration::from_secs(5), move || {
            trim_when_idle(Arc::clone(&in_flight), max)
        });
    }

    /// Stops the background work within `bound`, then hands back what
    /// another process must carry on: undelivered callbacks to the outbox,
    /// the records kept in memory to the store, the dispatch slots (after
    /// the records: a replica taking a slot over reads them); and makes the
    /// store durable.
    pub async fn stop(&self, bound: Duration) {
        tracing::info!(
            tasks = self.tasks.running(),
            bound = ?bound,
            "stopping background tasks"
        );
        let report: ShutdownReport = self.tasks.shutdown(bound).await;
        report.log();
        self.lifecycle.report_shutdown(&report);
        self.lifecycle
            .hand_back_callbacks(&report, Duration::from_secs(5))
            .await;
        let left = self.lifecycle.flush_pending().await;
        self.dispatcher.resign().await;
        if let Err(e) = self.lifecycle.store.flush().await {
            tracing::error!(error = %e, "the store could not make the last records durable");
        }
        if left > 0 {
            tracing::error!(
                records = left,
                "the store is unavailable: these request records are lost on exit"
            );
        }
    }

    /// The cluster.
    pub fn applier(&self) -> &Arc<Applier> {
        &self.applier
    }

    /// The repository's syncer and its live snapshot.
    pub fn syncer(&self) -> &Arc<Syncer> {
        &self.syncer
    }

    /// The ledger of runs: records, views, waits, callbacks.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// The runs: history, trackers, cancel, trees, logs.
    pub fn runs(&self) -> &Arc<Runs> {
        &self.runs
    }

    /// Publishes, from admission to answer.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The scheduler: whether this replica holds its Lease.
    pub fn scheduler(&self) -> SchedulerStatus {
        SchedulerStatus {
            leader: self.leadership.leads(),
            lease: self.leadership.describe(),
            identity: self.leadership.settings().identity.clone(),
        }
    }

    /// The background work: what a handler starts and does not await goes
    /// here (drained if it must finish, cancellable if it may stop), so
    /// that shutdown waits for it or stops it.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }
}

/// How often the background loops run.
#[derive(Debug, Clone, Copy)]
pub struct Background {
    /// The sync loop (`--poll-interval`).
    pub poll_interval: Duration,
    /// The outbox sweep (`--callback-lease`).
    pub callback_lease: Duration,
    /// The dispatch sweep: a third of this (`--dispatch-lease`).
    pub dispatch_lease: Duration,
}

impl Background {
    /// As the settings say.
    pub fn of(settings: &Settings) -> Self {
        Background {
            poll_interval: settings.poll_interval,
            callback_lease: settings.callbacks.lease,
            dispatch_lease: settings.limits.dispatch_lease,
        }
    }
}

async fn connect(settings: &Settings) -> Result<Arc<Applier>, StartError> {
    let applier = cluster::connect(
        settings.kubeconfig.as_deref(),
        settings.namespace.as_deref(),
        settings.api_timeout,
    )
    .await
    .map_err(StartError::Cluster)?;
    let version = applier.probe().await.map_err(StartError::Cluster)?;
    tracing::info!(server = %applier.server(), version, namespace = applier.default_namespace(), "connected to Kubernetes");
    Ok(Arc::new(applier))
}

async fn open_store(settings: &Settings) -> Result<Store, StartError> {
    let clock = Clock::system();
    let store = match &settings.store {
        StoreSettings::Embedded(dir) => Store::open_embedded(dir, clock, settings.expiration).await,
        StoreSettings::Redis(url) => {
            use secrecy::ExposeSecret;
            Store::connect_redis(url.expose_secret(), clock, settings.expiration).await
        }
    }
    .map_err(StartError::Store)?;
    tracing::info!(backend = store.backend_name(), "store ready");
    Ok(store)
}

/// One sweep of the callback outbox (at start, then every lease): takes
/// over the callbacks whose lease ran out.
async fn sweep_outbox(lifecycle: Arc<Lifecycle>) {
    match lifecycle.sweep_outbox().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(callbacks = n, "callbacks taken over from the outbox"),
        Err(e) => {
            tracing::info!(error = %e, "cannot read the outbox; it is swept again every --callback-lease")
        }
    }
}

/// One sweep of the dispatch slots (at start, then every third of
/// `--dispatch-lease`): the heartbeat, the slots of dead processes taken
/// over, the queues pumped.
async fn sweep_dispatch(dispatcher: Arc<Dispatcher>) {
    match dispatcher.sweep().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            slots = n,
            "dispatch slots taken over from a stopped gitfaas"
        ),
        Err(e) => {
            tracing::info!(error = %e, "cannot sweep the dispatch slots; tried again every third of --dispatch-lease")
        }
    }
}

/// One round of the hourly purge of expired records.
async fn purge_expired(store: Store) {
    match store.purge_expired().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "expired records purged"),
        Err(e) => tracing::warn!(error = %e, "purging expired records failed"),
    }
}

/// Gives memory freed after a burst back to the OS. glibc keeps freed
/// chunks in per-thread arenas: after 1,000 concurrent publishes about 50 MB
/// stayed resident although nothing used it; `malloc_trim` releases it.
/// Called every 5 s while no publish is in flight; it takes well under a millisecond.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only returns free heap pages to the kernel; it
        // is thread-safe and touches no memory the program owns.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Releases free memory when no publish is in flight.
async fn trim_when_idle(in_flight: Arc<Semaphore>, max: usize) {
    if in_flight.available_permits() == max {
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    }
}
