//! The cluster side: everything gitfaas asks of the API server, through one
//! long-lived pair of kube clients. This module owns the connection
//! ([`connect`], which the server and the CLI share, and [`client`]: a
//! client for calls, bounded by the API timeout, and one for watches), the
//! [`Applier`] that holds them with the bound on calls in flight, and
//! [`ApplyError`], what a failed call becomes. Every call is bounded by the
//! API timeout, so an unreachable API server turns into
//! [`ApplyError::Unreachable`] quickly instead of a hung publish.
//!
//! - `discovery`: an object's kind to its API resource and namespace
//!   ([`Target`]), with a cache of the kinds found.
//! - `apply`: the writes of a publish with field manager `gitfaas`: a
//!   create for a new object, a server-side apply naming the uid for an
//!   object that is its owner's ([`Applier::put`]), and deletes by uid
//!   precondition only ([`Applier::delete_created`]).
//! - `jobs`: the live status of applied objects ([`ObjectStatus`], a Job's
//!   [`Phase`]) and waiting until a request's Jobs have finished.
//! - [`jobwatch`]: the one shared watch of gitfaas' Jobs per namespace
//!   that the waiting follows, and who waits on which Job (an event wakes
//!   the waiters of its Job only).
//! - `logs`: the logs of a request's pods through `pods/log`, read or
//!   followed ([`Applier::logs`]).
//!
//! What an applied object is called and labelled is [`crate::object`]'s.
//! This module knows nothing of templates, policy or HTTP.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource};

use crate::error::Code;

mod apply;
mod discovery;
mod jobs;
pub mod jobwatch;
mod logs;

pub use apply::{body, Owner, Put, PutError, FIELD_MANAGER};
pub use discovery::Target;
pub use jobs::{JobCondition, JobsEnd, ObjectStatus, Phase};
pub use logs::{
    ContainerTail, LogError, LogOptions, Logs, RunStatus, MAX_FOLLOWED, MAX_LOG_STREAMS,
};

/// Errors of talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The API server did not answer.
    #[error("the Kubernetes API server at {server} is unreachable ({cause}); check that it is running and that gitfaas' kubeconfig points at it")]
    Unreachable {
        /// The API server's URL.
        server: String,
        /// What failed.
        cause: String,
    },
    /// The cluster does not serve this kind.
    #[error("kind {kind} of apiVersion {api_version} is not served by the cluster: install its CRD or fix the manifest")]
    UnknownKind {
        /// The object's apiVersion.
        api_version: String,
        /// The object's kind.
        kind: String,
    },
    /// The API server refused the request.
    #[error("the API server refused {object}: {message} ({code} {reason})")]
    Rejected {
        /// Which object.
        object: String,
        /// HTTP status from the API server.
        code: u16,
        /// Kubernetes' reason (Invalid, Forbidden, Conflict…).
        reason: String,
        /// Kubernetes' message.
        message: String,
    },
    /// The object cannot be applied as written.
    #[error("{0}")]
    Invalid(String),
    /// The client could not be configured.
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(String),
    /// The object exists and is not the publishing topic's own.
    #[error("{object} already exists and was not created by {owner} (it lacks {missing}); gitfaas changes only objects that are new or its topic's own: rename the object in the manifest (e.g. name: x-{{{{RANDOM}}}}) or delete the existing one")]
    NotOwned {
        /// Which object.
        object: String,
        /// Who may change it, in words.
        owner: String,
        /// The labels it lacks.
        missing: String,
    },
    /// A Job of that name exists: a Job is one run and cannot be changed.
    #[error("{object} already exists (an earlier publish of this topic created it) and a Job cannot be changed once created: give the Job a new name per publish (name: x-{{{{RANDOM}}}}), or delete the old Job first")]
    JobExists {
        /// Which Job.
        object: String,
    },
}

impl ApplyError {
    /// What kind of failure this is ([`crate::error`]). The API server's own
    /// refusals keep their meaning: 403 is gitfaas' RBAC, 429 asks to slow
    /// down, another 4xx rejects the object, 5xx is the server's fault.
    pub fn kind(&self) -> Code {
        match self {
            ApplyError::Unreachable { .. } => Code::ClusterUnreachable,
            ApplyError::UnknownKind { .. } => Code::UnknownKind,
            ApplyError::Invalid(_) => Code::InvalidObject,
            ApplyError::Rejected { code: 403, .. } => Code::ClusterForbidden,
            ApplyError::Rejected { code: 429, .. } => Code::ClusterThrottled,
            ApplyError::Rejected { code, .. } if (400..500).contains(code) => Code::ObjectRejected,
            ApplyError::Rejected { .. } => Code::ClusterError,
            ApplyError::Config(_) => Code::Internal,
            ApplyError::NotOwned { .. } => Code::NotOwned,
            ApplyError::JobExists { .. } => Code::JobExists,
        }
    }

    /// Every code [`kind`](Self::kind) can give: what the route table
    /// (`http::routes`) checks each route's documented errors against. The
    /// match has no wildcard, like kind's: a new variant does not compile
    /// until its codes are listed here too.
    pub fn codes() -> Vec<Code> {
        let _every_variant_is_listed = |e: &Self| match e {
            ApplyError::Unreachable { .. }
            | ApplyError::UnknownKind { .. }
            | ApplyError::Invalid(_)
            | ApplyError::Rejected { .. }
            | ApplyError::Config(_)
            | ApplyError::NotOwned { .. }
            | ApplyError::JobExists { .. } => (),
        };
        vec![
            Code::ClusterUnreachable,
            Code::UnknownKind,
            Code::InvalidObject,
            Code::ClusterForbidden,
            Code::ClusterThrottled,
            Code::ObjectRejected,
            Code::ClusterError,
            Code::Internal,
            Code::NotOwned,
            Code::JobExists,
        ]
    }
}

/// Applies objects to one cluster.
pub struct Applier {
    /// Tells this applier's worker clients ([`WorkerCalls`]) from another's.
    id: u64,
    client: kube::Client,
    calls_config: Option<kube::Config>,
    server: String,
    default_namespace: String,
    /// The namespace gitfaas runs in: its pod's (in a cluster), else the
    /// kubeconfig context's; where its own objects (the scheduler's Lease)
    /// go, never functions.
    home_namespace: String,
    timeout: Duration,
    // std Mutex: lookups and inserts only, never held across .await.
    kinds: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
    calls: tokio::sync::Semaphore,
    job_watches: jobwatch::JobWatches,
    log_streams: logs::LogStreams,
}

/// Calls to the API server in flight at once from one gitfaas; well under
/// kube-apiserver's default --max-mutating-requests-inflight (200).
pub const MAX_CONCURRENT_CALLS: usize = 64;

/// Builds a client from `kubeconfig`, else KUBECONFIG / in-cluster / ~/.kube/config,
/// with every call bounded by `timeout`.
pub async fn client(
    kubeconfig: Option<&Path>,
    timeout: Duration,
) -> Result<(Clients, kube::Config), ApplyError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let unusable = |e: &dyn std::fmt::Display| {
                ApplyError::Config(format!(
                    "{}: {e} (check the file --kubeconfig names)",
                    path.display()
                ))
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| unusable(&e))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| unusable(&e))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            ApplyError::Config(format!("{e} (set KUBECONFIG or pass --kubeconfig)"))
        })?,
    };
    // A stopped API server refuses connections at once; a slow handshake on a
    // loaded machine deserves the whole call timeout.
    config.connect_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // Watches stay open for minutes without a byte: their client has no read
    // timeout; the watch's own timeoutSeconds and our deadline bound them.
    let watch =
        kube::Client::try_from(config.clone()).map_err(|e| ApplyError::Config(e.to_string()))?;
    config.read_timeout = Some(timeout);
    // kube's own retry of 429/503/504 would repeat a create the API server
    // may have written (a 504 after the write): the repeat's AlreadyExists
    // would make gitfaas take its own new object for an existing one. gitfaas
    // retries 429 itself, and treats a create without a clear answer as one
    // that may have been written (see `put`).
    let mut calls_config = config.clone();
    calls_config.default_retry = false;
    let calls = kube::Client::try_from(calls_config.clone())
        .map_err(|e| ApplyError::Config(e.to_string()))?;
    Ok((
        Clients {
            calls,
            watch,
            calls_config: Some(calls_config),
        },
        config,
    ))
}

/// Connects to the cluster: gitfaas' clients ([`client`]) and an applier
/// over them whose objects without a namespace go to `namespace`, else to
/// the kubeconfig's default namespace. The server and the CLI both connect
/// here, so they reach the cluster the same way.
pub async fn connect(
    kubeconfig: Option<&Path>,
    namespace: Option<&str>,
    timeout: Duration,
) -> Result<Applier, ApplyError> {
    let (clients, config) = client(kubeconfig, timeout).await?;
    let namespace = namespace.map_or_else(|| config.default_namespace.clone(), str::to_string);
    let mut applier = Applier::new(clients, config.cluster_url.to_string(), namespace, timeout);
    // kube's in-cluster config reads the pod's namespace from its service
    // account; outside a cluster this is the kubeconfig context's.
    applier.home_namespace = config.default_namespace;
    Ok(applier)
}

/// The two clients of one cluster: one for calls, bounded by the API
/// timeout, and one for watches.
#[derive(Clone)]
pub struct Clients {
    /// For requests that answer at once.
    pub calls: kube::Client,
    /// For watches.
    pub watch: kube::Client,
    /// What `calls` was built from: each HTTP worker builds its own from
    /// it ([`Applier::worker_calls`]); None makes every call through
    /// `calls` (a mocked API server).
    pub calls_config: Option<kube::Config>,
}

/// A calls client built on one HTTP worker's runtime, for the requests that
/// worker serves. A kube client runs its connections on the runtime it was
/// built on: a request's calls through a client of its own worker stay on
/// that worker, instead of crossing to the main runtime and back for each
/// call. (One client shared by the workers was tried: under 1,000
/// concurrent publishes beside another busy gitfaas, the server stopped
/// answering — `faults::a_thousand_concurrent_publishes…` run with
/// `lifecycle::two_hundred_waits…`.)
#[derive(Clone)]
pub struct WorkerCalls {
    applier: u64,
    client: kube::Client,
}

tokio::task_local! {
    /// The calls client of the worker serving the request being handled.
    static WORKER_CALLS: Option<WorkerCalls>;
}

/// Runs `fut` (a request's handling) with `calls` as the client for the
/// calls it makes through the applier that built them.
pub async fn with_worker_calls<F: std::future::Future>(
    calls: Option<WorkerCalls>,
    fut: F,
) -> F::Output {
    WORKER_CALLS.scope(calls, fut).await
}

impl Applier {
    /// An applier using `client`; objects without a namespace go to `default_namespace`.
    pub fn new(
        clients: Clients,
        server: String,
        default_namespace: String,
        timeout: Duration,
    ) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Applier {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            client: clients.calls,
            calls_config: clients.calls_config,
            server,
            home_namespace: default_namespace.clone(),
            default_namespace,
            timeout,
            kinds: Mutex::new(HashMap::new()),
            calls: tokio::sync::Semaphore::new(MAX_CONCURRENT_CALLS),
            job_watches: jobwatch::JobWatches::new(clients.watch),
            log_streams: logs::LogStreams::default(),
        }
    }

    /// The shared Job watches, for a test to feed one by hand.
    #[cfg(test)]
    pub(crate) fn job_watches(&self) -> &jobwatch::JobWatches {
        &self.job_watches
    }

    /// An applier making every call, watches included, through `client`:
    /// one over a mocked API server ([`crate::fixtures`]).
    #[cfg(test)]
    pub(crate) fn from_client(client: kube::Client, default_namespace: &str) -> Self {
        Applier::new(
            Clients {
                calls: client.clone(),
                watch: client,
                calls_config: None,
            },
            "the mocked API server".into(),
            default_namespace.into(),
            Duration::from_secs(10),
        )
    }

    /// The namespace for objects that name none.
    pub fn default_namespace(&self) -> &str {
        &self.default_namespace
    }

    /// The namespace gitfaas runs in (its pod's, else the kubeconfig
    /// context's), for its own objects.
    pub fn home_namespace(&self) -> &str {
        &self.home_namespace
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The client, for callers that read status.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The client for reviewing a caller (TokenReview, SubjectAccessReview):
    /// the request's worker's, as for every call a request makes.
    pub fn review_client(&self) -> kube::Client {
        self.calls_client()
    }

    /// A calls client built on the current runtime, for an HTTP worker
    /// (call it from `HttpServer::new`'s factory, which runs on each
    /// worker's runtime). None when this applier has no config to build
    /// one from (a mocked API server) or it fails: its requests then call
    /// through the shared client.
    pub fn worker_calls(&self) -> Option<WorkerCalls> {
        let config = self.calls_config.as_ref()?;
        let client = kube::Client::try_from(config.clone()).ok()?;
        Some(WorkerCalls {
            applier: self.id,
            client,
        })
    }

    /// The client for a call: the worker's ([`with_worker_calls`]) in a
    /// request's handling, else the shared one, built on the main runtime
    /// where the background work (applies, watches, callbacks) runs.
    fn calls_client(&self) -> kube::Client {
        WORKER_CALLS
            .try_with(|calls| match calls {
                Some(calls) if calls.applier == self.id => Some(calls.client.clone()),
                _ => None,
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| self.client.clone())
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        // A bounded number of calls at once: a burst of publishes queues here
        // instead of opening a TLS connection each to the API server.
        let _permit = self.calls.acquire().await;
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(kube::Error::Service(
                format!("no answer within {:?}", self.timeout).into(),
            )),
        }
    }

    /// Asks the API server for its version: the readiness probe.
    pub async fn probe(&self) -> Result<String, ApplyError> {
        self.bounded(self.calls_client().apiserver_version())
            .await
            .map(|v| v.git_version)
            .map_err(|e| self.classify(e, "the version probe"))
    }

    fn classify(&self, error: kube::Error, what: &str) -> ApplyError {
        match error {
            kube::Error::Api(status) => ApplyError::Rejected {
                object: what.to_string(),
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            other => ApplyError::Unreachable {
                server: self.server.clone(),
                cause: error_chain(&other),
            },
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// What the tests of the submodules share.
#[cfg(test)]
mod testing {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::discovery::ApiResource;
    use serde_json::{json, Value};

    use super::Target;

    pub(super) const CMS: &str = "/api/v1/namespaces/ns/configmaps";
    pub(super) const JOBS: &str = "/apis/batch/v1/namespaces/ns/jobs";

    pub(super) fn configmap(name: &str) -> (Value, Target) {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": name}, "data": {"k": "v"}});
        let target = Target {
            resource: ApiResource::erase::<ConfigMap>(&()),
            namespace: Some("ns".into()),
            name: name.into(),
        };
        (object, target)
    }
}
