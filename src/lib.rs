//! gitfaas turns a git repository of Kubernetes manifests into HTTP-triggered
//! functions: `POST /publish/<topic>` renders the topic's manifests with the
//! message and query parameters and server-side applies them.
//!
//! # Layout
//! - [`settings`]: flags and environment: the clap types (`settings/args.rs`),
//!   validated once at start into [`settings::Settings`] (`settings/mod.rs`).
//! - [`source`]: git fetch (git2) and directory sources, the sync loop, the live snapshot.
//! - [`catalog`]: config.json model and validation; builds a [`catalog::Snapshot`].
//! - [`template`]: `{{NAME}}` templates, strict rendering, the structure (injection) check;
//!   one file per part in `template/`: `syntax` (the text to segments), `yaml`
//!   (each placeholder's YAML context), `encode` (a value for its context),
//!   `documents` (YAML to Kubernetes objects), `check` (the structure check).
//! - [`policy`]: what may be applied: kinds, Pod Security Standards, service
//!   accounts, namespaces.
//! - [`publish`]: one publish, HTTP-agnostic: render, check, execute and roll
//!   back (`publish/mod.rs`); the whole workflow from admission to answer,
//!   [`publish::workflow::Publisher`] (`publish/workflow.rs`).
//! - [`names`]: Kubernetes' name rules per kind.
//! - [`error`]: the kinds of failure ([`error::Code`]) every module's error
//!   names, and their HTTP statuses.
//! - [`cluster`]: the connection to the cluster ([`cluster::connect`]), kind
//!   discovery and its cache, the writes of a publish (create, server-side
//!   apply, deletes by uid), and Jobs: live status, phase, waiting on a
//!   shared watch per namespace.
//! - [`object`]: what gitfaas calls and labels an applied object:
//!   [`object::ObjectRef`] and the label and annotation names.
//! - [`store`]: requests, responses, callbacks and idempotency keys with expiry:
//!   the facade in `store/mod.rs`, a file per concern (`records`, `clock`,
//!   `history`, `idempotency`, `outbox`, `slots`) and per backend
//!   (`embedded.rs`: redb; `redis.rs`: Redis).
//! - [`run`]: a run after its publish, one concept per file: its state
//!   machine, the ledger of its records with their views, waits and callbacks
//!   (`run/lifecycle.rs`), the trackers of running runs (`run/runs.rs`), the
//!   outputs kept after its pods (`run/outputs.rs`), the slots and queues of
//!   limited topics (`run/dispatch.rs`), what every apply ends with
//!   (`run/outcome.rs`) and the rollbacks in progress (`run/rollbacks.rs`).
//! - [`callback`]: where an `X-Callback-Url` may point, and the client that keeps to it.
//! - [`auth`]: API bearer tokens and webhook signatures.
//! - [`http`]: actix-web routes, the request span, the client-gone check, and
//!   errors as JSON bodies.
//! - [`metrics`]: Prometheus metrics.
//! - [`tasks`]: background work and its shutdown: a cancellation token, a
//!   task tracker, cancelled and drained tasks, "every N until stopped".
//! - [`telemetry`]: logging setup.
//! - [`cli`]: the `validate`, `render` and `publish` subcommands.
//! - `fixtures` (unit tests only): a scripted, mocked API server for the
//!   tests of `cluster` and `publish`.
//!
//! Data flows one way: `http` → `publish` → `catalog`/`template`/`policy` → `cluster`.

pub mod auth;
pub mod callback;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod http;
pub mod metrics;
pub mod names;
pub mod object;
pub mod policy;
pub mod publish;
pub mod run;
pub mod services;
pub mod settings;
pub mod source;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod template;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};

use crate::cluster::ApplyError;
use crate::services::{purge_expired, sweep_dispatch, sweep_outbox, trim_when_idle};
use crate::settings::Settings;
use crate::source::Syncer;
use crate::tasks::Tasks;

/// Why the service could not start. Each message says what failed and
/// leaves the why to its `source()`: whoever prints the error prints the
/// chain (`gitfaas: while starting: cannot reach Kubernetes: <cause>`), and
/// a message that held its source too said every cause twice.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The Kubernetes API is not usable.
    #[error("cannot reach Kubernetes")]
    Cluster(#[source] ApplyError),
    /// The store cannot be opened.
    #[error("cannot open the store")]
    Store(#[source] store::StoreError),
    /// A credentials file cannot be read.
    #[error(transparent)]
    Auth(auth::AuthError),
    /// The callback HTTP client cannot be built.
    #[error(transparent)]
    Callbacks(callback::ClientError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The least time shutdown gives the background work, even when the
/// drain of in-flight requests used all of `--shutdown-timeout`: enough for
/// cancelled tasks to end and a short drained one to finish.
pub const MIN_TASKS_BOUND: Duration = Duration::from_secs(1);

/// Resolves on SIGTERM or SIGINT, the signals actix stops on; never when
/// they cannot be listened to. The listeners are registered at the call,
/// not at the first poll.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let (Some(mut term), Some(mut int)) = (term, int) else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    std::future::pending()
}

/// A built, not yet running, gitfaas server.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    syncer: Arc<Syncer>,
    lifecycle: Arc<run::lifecycle::Lifecycle>,
    in_flight: Arc<tokio::sync::Semaphore>,
    max_in_flight: usize,
    poll_interval: std::time::Duration,
    /// How often the outbox is swept (`--callback-lease`).
    callback_lease: std::time::Duration,
    /// The slots and queues of limited topics.
    dispatcher: Arc<run::dispatch::Dispatcher>,
    /// The run ends the dispatcher wakes on.
    wakeups: Option<tokio::sync::mpsc::Receiver<String>>,
    /// How often the dispatch slots are swept: a third of this.
    dispatch_lease: std::time::Duration,
    /// The background work of this server, shared with its HTTP state and
    /// its lifecycle.
    tasks: Tasks,
    /// How long shutdown waits for the background work.
    shutdown_timeout: Duration,
}

impl Application {
    /// Connects to the cluster, runs the first sync and binds the listener.
    /// A first sync that fails is logged, not fatal: the service answers 503
    /// on publishes until a sync succeeds.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
        let applier = cluster::connect(
            settings.kubeconfig.as_deref(),
            settings.namespace.as_deref(),
            settings.api_timeout,
        )
        .await
        .map_err(StartError::Cluster)?;
        let applier = Arc::new(applier);
        let version = applier.probe().await.map_err(StartError::Cluster)?;
        tracing::info!(server = %applier.server(), version, namespace = applier.default_namespace(), "connected to Kubernetes");

        let clock = store::Clock::system();
        let store = match &settings.store {
            settings::StoreSettings::Embedded(dir) => {
                store::Store::open_embedded(dir, clock, settings.expiration).await
            }
            settings::StoreSettings::Redis(url) => {
                use secrecy::ExposeSecret;
                store::Store::connect_redis(url.expose_secret(), clock, settings.expiration).await
            }
        }
        .map_err(StartError::Store)?;
        tracing::info!(backend = store.backend_name(), "store ready");
        let callbacks = callback::Client::new(
            settings.callbacks.targets.clone(),
            settings.callbacks.max_in_flight,
            settings.callbacks.signing.clone(),
        )
        .map_err(StartError::Callbacks)?;
        let tasks = Tasks::new();
        let lifecycle = Arc::new(run::lifecycle::Lifecycle::new(
            store,
            Arc::clone(&applier),
            callbacks,
            run::lifecycle::RetryPolicy {
                max_wait: settings.callbacks.max_wait,
                lease: settings.callbacks.lease,
                ..Default::default()
            },
            tasks.clone(),
            settings.limits.log_archive_bytes,
        ));
        let runs = run::runs::Runs::new(Arc::clone(&lifecycle));
        match runs.resume().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                runs = n,
                "following the runs a previous process left running"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the runs left running; they are settled when read")
            }
        }

        sweep_outbox(Arc::clone(&lifecycle)).await;

        let syncer = Arc::new(Syncer::new(
            settings.source.clone(),
            settings.config_path.clone(),
        ));
        tracing::info!(source = syncer.describe(), "first sync");
        if let Err(e) = syncer.sync().await {
            tracing::error!(error = %e, "first sync failed; publishes answer 503 until a sync succeeds");
        }

        let rollbacks = run::rollbacks::Rollbacks::new();
        let relauncher = publish::Relauncher::new(
            Arc::clone(&applier),
            settings.policy.clone(),
            tasks.clone(),
            Arc::clone(&rollbacks),
        );
        let dispatcher = run::dispatch::Dispatcher::new(
            Arc::clone(&lifecycle),
            Arc::clone(&runs),
            Arc::clone(&syncer),
            Arc::new(relauncher.clone()),
            Arc::clone(&rollbacks),
            settings.limits.dispatch_lease,
        );
        sweep_dispatch(Arc::clone(&dispatcher)).await;
        let wakeups = runs.take_wakeups();

        let in_flight = Arc::new(tokio::sync::Semaphore::new(settings.limits.max_in_flight));
        let tokens = match &settings.api_token_file {
            Some(path) => {
                let t = auth::ApiTokens::load(path).map_err(StartError::Auth)?;
                tracing::info!(tokens = t.len(), "API authentication on");
                Some(t)
            }
            None => {
                tracing::warn!("NO API TOKENS (--api-token-file): anyone who can reach this port can publish, refresh and read requests");
                None
            }
        };
        let webhook = match &settings.webhook_secret_file {
            Some(path) => Some(auth::WebhookSecret::load(path).map_err(StartError::Auth)?),
            None => None,
        };
        let listener = TcpListener::bind(settings.listen).map_err(|source| StartError::Listen {
            addr: settings.listen.to_string(),
            source,
        })?;
        let bound = listener.local_addr().ok();
        let port = bound.map_or(0, |a| a.port());
        // A public URL derived from `--listen 127.0.0.1:0` would say port 0:
        // derive it again from the address the kernel bound.
        let public_url = match bound {
            Some(addr) if settings.public_url_from_listen => settings::derived_public_url(addr),
            _ => settings.public_url.clone(),
        };
        let state = web::Data::new(http::AppState {
            syncer: Arc::clone(&syncer),
            applier: Arc::clone(&applier),
            lifecycle: Arc::clone(&lifecycle),
            runs: Arc::clone(&runs),
            publisher: publish::workflow::Publisher::new(publish::workflow::Parts {
                syncer: Arc::clone(&syncer),
                applier: Arc::clone(&applier),
                lifecycle: Arc::clone(&lifecycle),
                runs: Arc::clone(&runs),
                policy: settings.policy.clone(),
                public_url: public_url.clone(),
                limits: settings.limits,
                max_payload_bytes: settings.max_payload_bytes,
                in_flight: Arc::clone(&in_flight),
                tasks: tasks.clone(),
                dispatcher: Arc::clone(&dispatcher),
                relauncher,
                rollbacks,
            }),
            max_payload_bytes: settings.max_payload_bytes,
            tokens,
            webhook,
            browser: settings.browser.clone(),
            tasks: tasks.clone(),
        });
        let server = HttpServer::new(move || {
            // Runs on each worker's runtime: the worker's own client is built there.
            let calls = web::Data::new(http::worker::Calls(state.applier.worker_calls()));
            App::new()
                .app_data(state.clone())
                .app_data(calls)
                .wrap(actix_web::middleware::from_fn(http::worker::around))
                .wrap(
                    // Method and path only: no query values, no whole function uid.
                    actix_web::middleware::Logger::new("%{method}xi %{path}xi %s %Dms")
                        .custom_request_replace("method", |req| req.method().to_string())
                        .custom_request_replace("path", |req| telemetry::access_path(req.path()))
                        .log_target("gitfaas::access"),
                )
                .wrap(actix_web::middleware::from_fn(http::browser::guard))
                .wrap(actix_web::middleware::from_fn(http::span::around))
                .configure(http::configure)
                .default_service(web::to(http::not_found))
        })
        .on_connect(http::client::on_connect)
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        // Under a burst, reading a request head can wait for a CPU: 5 s (the
        // default) answered 408 to clients that had done nothing wrong.
        .client_request_timeout(std::time::Duration::from_secs(30))
        .listen(listener)
        .map_err(|source| StartError::Listen {
            addr: settings.listen.to_string(),
            source,
        })?
        .run();
        tracing::info!(port, public_url, "listening");
        Ok(Application {
            port,
            server,
            syncer,
            lifecycle,
            in_flight,
            max_in_flight: settings.limits.max_in_flight,
            poll_interval: settings.poll_interval,
            callback_lease: settings.callbacks.lease,
            dispatcher,
            wakeups,
            dispatch_lease: settings.limits.dispatch_lease,
            tasks,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    /// The bound port (useful when listening on port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server gracefully (as SIGTERM does).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The server's background work, for work that must outlive a request
    /// (or be stopped at shutdown); see [`tasks`].
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Serves until SIGTERM/SIGINT (or [`Self::handle`]'s `stop`). Then, all
    /// within `--shutdown-timeout` of the signal: actix stops accepting and
    /// lets in-flight requests finish; the background work is stopped (loops
    /// after their current step, callbacks at once, drained tasks waited
    /// for with what is left of the timeout, at least [`MIN_TASKS_BOUND`]);
    /// what did not finish is logged; and the store makes its last records
    /// durable.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        // Registered before anything else: actix handles the same signals
        // (tokio tells every listener), this only learns when stopping began.
        let signalled = stop_signal();
        let tasks = self.tasks;
        tasks.spawn_drained(
            "sync loop",
            Arc::clone(&self.syncer).run(self.poll_interval, tasks.token()),
        );
        let store = self.lifecycle.store.clone();
        tasks.spawn_every("purge expired", Duration::from_secs(3600), move || {
            purge_expired(store.clone())
        });
        // The callbacks a process that died or stopped left in the outbox:
        // at start, then every lease.
        let lifecycle = Arc::clone(&self.lifecycle);
        tasks.spawn_every("sweep outbox", self.callback_lease, move || {
            sweep_outbox(Arc::clone(&lifecycle))
        });
        let dispatcher = Arc::clone(&self.dispatcher);
        tasks.spawn_every(
            "sweep dispatch",
            (self.dispatch_lease / 3).max(Duration::from_millis(300)),
            move || sweep_dispatch(Arc::clone(&dispatcher)),
        );
        if let Some(wakeups) = self.wakeups {
            tasks.spawn_cancellable(
                "dispatch wakeups",
                Arc::clone(&self.dispatcher).run(wakeups),
            );
        }
        let lifecycle = Arc::clone(&self.lifecycle);
        // Writes the records the store could not take, once it is back.
        tasks.spawn_every("flush pending", Duration::from_secs(1), move || {
            let lifecycle = Arc::clone(&lifecycle);
            async move {
                lifecycle.flush_pending().await;
            }
        });
        let (in_flight, max) = (self.in_flight, self.max_in_flight);
        tasks.spawn_every("trim memory", Duration::from_secs(5), move || {
            trim_when_idle(Arc::clone(&in_flight), max)
        });
        let mut server = std::pin::pin!(self.server);
        let (served, since) = tokio::select! {
            served = &mut server => (served, tokio::time::Instant::now()),
            () = signalled => {
                let since = tokio::time::Instant::now();
                (server.await, since)
            }
        };
        // One bound for the whole stop, as Kubernetes' grace period is one:
        // the tasks get what actix' drain left of it.
        let bound = (since + self.shutdown_timeout)
            .saturating_duration_since(tokio::time::Instant::now())
            .max(MIN_TASKS_BOUND);
        tracing::info!(
            tasks = tasks.running(),
            bound = ?bound,
            "stopping background tasks"
        );
        let report = tasks.shutdown(bound).await;
        report.log();
        self.lifecycle.report_shutdown(&report);
        self.lifecycle
            .hand_back_callbacks(&report, Duration::from_secs(5))
            .await;
        let left = self.lifecycle.flush_pending().await;
        // After the records: a replica taking a slot over reads them.
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
        tracing::info!("stopped");
        served
    }
}
