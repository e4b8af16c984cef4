//! gitfaas turns a git repository of Kubernetes manifests into HTTP-triggered
//! functions: `POST /publish/<topic>` renders the topic's manifests with the
//! message and query parameters and server-side applies them.
//!
//! # Layout
//! - [`settings`]: flags and environment: the clap types (`settings/args.rs`),
//!   validated once at start into [`settings::Settings`] (`settings/mod.rs`).
//! - [`source`]: git fetch (git2) and directory sources, the sync loop, the live snapshot.
//! - [`catalog`]: config.json model and validation; builds a [`catalog::Snapshot`].
//! - [`filter`]: a topic's `"filter"`, a CEL expression over the request
//!   (body, parameters, headers, CloudEvent attributes), compiled at sync,
//!   with the rules that bound its cost.
//! - [`template`]: `{{NAME}}` templates, strict rendering, the structure (injection) check;
//!   one file per part in `template/`: `syntax` (the text to segments), `yaml`
//!   (each placeholder's YAML context), `encode` (a value for its context),
//!   `documents` (YAML to Kubernetes objects), `check` (the structure check).
//! - [`policy`]: what may be applied: kinds, Pod Security Standards, service
//!   accounts, namespaces.
//! - [`publish`]: one publish, HTTP-agnostic, a file per step: `render`,
//!   `prepare` (policy, kinds, dry run), `execute` (all or nothing, with its
//!   rollback), `report`, `error`, `queued`/`lean` (a run as its queue keeps
//!   it), `relaunch` (a run applied again for the dispatcher), `claim` (the
//!   Idempotency-Key guard); the whole workflow from admission to answer,
//!   [`publish::workflow::Publisher`] (`publish/workflow.rs`).
//! - [`cloudevent`]: CloudEvents 1.0 over HTTP received: the mode a
//!   request carries an event in, the event read and checked (binary and
//!   structured mode), its attributes, variables and deduplication key.
//! - [`names`]: Kubernetes' name rules per kind.
//! - [`error`]: the kinds of failure ([`error::Code`]) every module's error
//!   names, and their HTTP statuses.
//! - [`cluster`]: the connection to the cluster ([`cluster::connect`]), kind
//!   discovery and its cache, the writes of a publish (create, server-side
//!   apply, deletes by uid), and Jobs: live status, phase, waiting on a
//!   shared watch per namespace.
//! - [`object`]: what gitfaas calls and labels an applied object:
//!   [`object::ObjectRef`] and the label and annotation names.
//! - [`uid`]: [`uid::RequestUid`], [`uid::FunctionUid`] and
//!   [`uid::IdempotencyKey`], made by gitfaas or parsed at the HTTP edge.
//! - [`store`]: requests, responses, callbacks and idempotency keys with expiry:
//!   the facade in `store/mod.rs`, a file per concern (`records`, `clock`,
//!   `history`, `idempotency`, `outbox`, `slots`) and per backend
//!   (`embedded.rs`: redb; `redis.rs`: Redis).
//! - [`run`]: a run after its publish, one concept per file, none importing
//!   [`publish`]: its state machine (`run/state.rs`), the ledger of its
//!   records (`run/lifecycle.rs`), its view and waits (`run/view.rs`), its
//!   callbacks and the outbox (`run/callbacks.rs`), the trackers of running
//!   runs, cancel and trees (`run/runs.rs`), the outputs kept after its pods
//!   (`run/outputs.rs`), the slots and queues of limited topics
//!   (`run/dispatch.rs`), what every apply ends with (`run/outcome.rs`) and
//!   the rollbacks in progress (`run/rollbacks.rs`).
//! - [`schedule`]: topics that run by themselves: cron expressions in a
//!   time zone (`schedule/cron.rs`), the Lease that elects the replica
//!   firing them (`schedule/lease.rs`), and the firing, once per tick
//!   (`schedule/ticker.rs`).
//! - [`services`]: the application's parts, built once and owned in one
//!   place, with the background work they run.
//! - [`callback`]: where an `X-Callback-Url` may point, and the client that keeps to it.
//! - [`auth`]: API bearer tokens and webhook signatures.
//! - [`identity`]: callers known to Kubernetes: TokenReview, SubjectAccessReview,
//!   their caches.
//! - [`http`]: actix-web: the route table (`http/routes.rs`, from which the
//!   OpenAPI document comes too), the handlers, the request span, the
//!   client-gone check, and errors as JSON bodies.
//! - [`metrics`]: Prometheus metrics.
//! - [`tasks`]: background work and its shutdown: a cancellation token, a
//!   task tracker, cancelled and drained tasks, "every N until stopped".
//! - [`telemetry`]: logging setup.
//! - [`cli`]: the `validate`, `render` and `publish` subcommands.
//! - `fixtures` (unit tests only): a scripted, mocked API server for the
//!   tests of `cluster` and `publish`.
//!
//! Data flows one way: `http` → `publish` → `catalog`/`template`/`policy` →
//! `run` → `cluster`/`store`; [`services`] wires them.

pub mod auth;
pub mod callback;
pub mod catalog;
pub mod cli;
pub mod cloudevent;
pub mod cluster;
pub mod error;
pub mod filter;
#[cfg(test)]
mod fixtures;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod names;
pub mod object;
pub mod policy;
pub mod publish;
pub mod run;
pub mod schedule;
pub mod services;
pub mod settings;
pub mod source;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod template;
pub mod uid;

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::ApplyError;
use crate::services::{Background, Services};
use crate::settings::Settings;
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
    services: Arc<Services>,
    /// How often the background loops run.
    background: Background,
    /// How long shutdown waits for the in-flight requests and the
    /// background work together.
    shutdown_timeout: Duration,
}

impl Application {
    /// Binds the listener, reads the credentials, builds the parts, takes
    /// over what a previous process left and runs the first sync (a failure
    /// is logged, not fatal: publishes answer 503 until a sync succeeds),
    /// then starts the HTTP server. The port and the credentials come
    /// first, so a gitfaas that cannot serve fails at once, not after its
    /// first sync.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
        let listen = |source| StartError::Listen {
            addr: settings.listen.to_string(),
            source,
        };
        let listener = http::bind(settings.listen).map_err(listen)?;
        let bound = listener.local_addr().ok();
        let port = bound.map_or(0, |a| a.port());
        // A public URL derived from `--listen 127.0.0.1:0` would say port 0:
        // derive it again from the address the kernel bound.
        let public_url = match bound {
            Some(addr) if settings.public_url_from_listen => settings::derived_public_url(addr),
            _ => settings.public_url.clone(),
        };
        let services = Arc::new(Services::build(&settings, public_url.clone()).await?);
        let access = http::Access::load(&settings, services.applier().home_namespace())
            .map_err(StartError::Auth)?;
        services.recover().await;
        let server =
            http::serve(listener, Arc::clone(&services), access, &settings).map_err(listen)?;
        tracing::info!(port, public_url, "listening");
        Ok(Application {
            port,
            server,
            services,
            background: Background::of(&settings),
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
        self.services.tasks()
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
        self.services.spawn_background(self.background);
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
        self.services.stop(bound).await;
        tracing::info!("stopped");
        served
    }
}
