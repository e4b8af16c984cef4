//! The cluster side: one long-lived kube client, a discovery cache, and
//! server-side apply of dynamic objects with field manager `gitfaas`.
//!
//! Kinds are resolved with a per-group-version discovery call and cached;
//! only successes are cached, so a kind that was missing is looked up again
//! on its next use (a CRD installed after start works without a restart).
//! Every call is bounded by the API timeout, so an unreachable API server
//! turns into [`ApplyError::Unreachable`] quickly instead of a hung publish.
//! This module knows nothing of templates, policy or HTTP.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "gitfaas";

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
}

/// An applied object, as reports and the store name it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// apiVersion.
    pub api_version: String,
    /// kind.
    pub kind: String,
    /// namespace, for namespaced kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// name.
    pub name: String,
}

impl ObjectRef {
    fn is_job(&self) -> bool {
        self.kind == "Job" && self.api_version.starts_with("batch/")
    }
}

/// Where an object goes: its API resource and, when namespaced, its namespace.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resolved API resource.
    pub resource: ApiResource,
    /// The namespace, or None for a cluster-scoped kind.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl Target {
    /// Whether it is a batch Job.
    pub fn is_job(&self) -> bool {
        self.resource.kind == "Job" && self.resource.group == "batch"
    }

    /// `group/version Kind namespace/name`, for messages.
    pub fn describe(&self) -> String {
        let api = &self.resource.api_version;
        match &self.namespace {
            Some(ns) => format!("{api} {} {ns}/{}", self.resource.kind, self.name),
            None => format!("{api} {} {}", self.resource.kind, self.name),
        }
    }
}

thread_local! {
    /// Call clients built on this thread, by applier id.
    static THREAD_CLIENTS: std::cell::RefCell<Vec<(u64, kube::Client)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Applies objects to one cluster.
pub struct Applier {
    /// Tells this applier's clients apart in [`THREAD_CLIENTS`].
    id: u64,
    client: kube::Client,
    calls_config: kube::Config,
    watch_client: kube::Client,
    server: String,
    default_namespace: String,
    timeout: Duration,
    // std Mutex: lookups and inserts only, never held across .await.
    kinds: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
    calls: tokio::sync::Semaphore,
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
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| ApplyError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| ApplyError::Config(format!("{}: {e}", path.display())))?
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
    let calls =
        kube::Client::try_from(config.clone()).map_err(|e| ApplyError::Config(e.to_string()))?;
    Ok((
        Clients {
            calls,
            watch,
            calls_config: config.clone(),
        },
        config,
    ))
}

/// The two clients of one cluster: one for calls, bounded by the API
/// timeout, and one for watches.
#[derive(Clone)]
pub struct Clients {
    /// For requests that answer at once.
    pub calls: kube::Client,
    /// For watches.
    pub watch: kube::Client,
    /// What `calls` was built from: each thread that calls builds its own.
    pub calls_config: kube::Config,
}

/// What gitfaas keeps of an applied object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The object's uid (None on a dry run of a new object).
    pub uid: Option<String>,
}

/// The part of the API server's answer that is read; serde skips the rest.
#[derive(serde::Deserialize)]
struct AppliedObject {
    #[serde(default)]
    metadata: AppliedMeta,
}

#[derive(serde::Deserialize, Default)]
struct AppliedMeta {
    #[serde(default)]
    uid: Option<String>,
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
            watch_client: clients.watch,
            server,
            default_namespace,
            timeout,
            kinds: Mutex::new(HashMap::new()),
            calls: tokio::sync::Semaphore::new(MAX_CONCURRENT_CALLS),
        }
    }

    /// The namespace for objects that name none.
    pub fn default_namespace(&self) -> &str {
        &self.default_namespace
    }

    /// The client, for callers that read status.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The client for a call from this thread. A kube client runs its
    /// connections on the runtime it was built on; one built on the main
    /// thread would make every call from an HTTP worker hop to the main
    /// thread and back (two cross-thread wakeups a call). So each thread
    /// that calls builds its own, on its own runtime, once.
    fn calls_client(&self) -> kube::Client {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.client.clone();
        }
        THREAD_CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            if let Some((_, c)) = clients.iter().find(|(id, _)| *id == self.id) {
                return c.clone();
            }
            match kube::Client::try_from(self.calls_config.clone()) {
                Ok(c) => {
                    clients.push((self.id, c.clone()));
                    c
                }
                // The shared client still works, across threads.
                Err(_) => self.client.clone(),
            }
        })
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

    /// Resolves an object's kind and namespace.
    pub async fn target(&self, object: &Value) -> Result<Target, ApplyError> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let metadata = object.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApplyError::Invalid(format!(
                    "{kind} has no metadata.name (server-side apply needs one; use e.g. name: job-{{{{RANDOM}}}})"
                ))
            })?
            .to_string();
        let (resource, caps) = self.resolve(api_version, kind).await?;
        let namespace = match caps.scope {
            Scope::Namespaced => Some(
                metadata
                    .and_then(|m| m.get("namespace"))
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .unwrap_or(&self.default_namespace)
                    .to_string(),
            ),
            Scope::Cluster => None,
        };
        Ok(Target {
            resource,
            namespace,
            name,
        })
    }

    /// Deletes an object (its dependents in the background); an object that is
    /// already gone counts as deleted.
    pub async fn delete(&self, target: &Target) -> Result<(), ApplyError> {
        let api: Api<DynamicObject> = match &target.namespace {
            Some(ns) => Api::namespaced_with(self.calls_client(), ns, &target.resource),
            None => Api::all_with(self.calls_client(), &target.resource),
        };
        match self
            .bounded(api.delete(&target.name, &kube::api::DeleteParams::background()))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(self.classify(e, &format!("deleting {}", target.describe()))),
        }
    }

    /// How many Jobs matching `selector` in `namespaces` have not finished.
    pub async fn count_active_jobs(
        &self,
        namespaces: &std::collections::BTreeSet<String>,
        selector: &str,
    ) -> Result<usize, ApplyError> {
        let mut active = 0;
        let defaults = std::collections::BTreeSet::from([self.default_namespace.clone()]);
        let namespaces = if namespaces.is_empty() {
            &defaults
        } else {
            namespaces
        };
        for ns in namespaces {
            let api: Api<Job> = Api::namespaced(self.calls_client(), ns);
            let list = self
                .bounded(api.list(&ListParams::default().labels(selector)))
                .await
                .map_err(|e| self.classify(e, &format!("listing Jobs in {ns}")))?;
            active += list.items.iter().filter(|j| !job_finished(j)).count();
        }
        Ok(active)
    }

    /// The API resource and capabilities of a kind, from the discovery cache or,
    /// on a miss, from the API server.
    async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), ApplyError> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        if let Some(found) = self.kinds.lock().ok().and_then(|k| k.get(&gvk).cloned()) {
            return Ok(found);
        }
        let found = self
            .bounded(kube::discovery::pinned_kind(&self.calls_client(), &gvk))
            .await
            .map_err(|e| match e {
                kube::Error::Discovery(_) => ApplyError::UnknownKind {
                    api_version: api_version.into(),
                    kind: kind.into(),
                },
                kube::Error::Api(s) if s.code == 404 => ApplyError::UnknownKind {
                    api_version: api_version.into(),
                    kind: kind.into(),
                },
                other => self.classify(other, &format!("discovery of {api_version} {kind}")),
            })?;
        if let Ok(mut k) = self.kinds.lock() {
            k.insert(gvk, found.clone());
        }
        Ok(found)
    }

    /// Server-side applies `object` to `target`; with `dry_run` the API server
    /// validates and admits it but persists nothing.
    pub async fn apply(
        &self,
        target: &Target,
        object: &Value,
        dry_run: bool,
    ) -> Result<Applied, ApplyError> {
        // A raw request rather than `Api::patch`: the answer is the whole
        // object (managedFields included) and only its uid is needed, so it
        // is not built into a `DynamicObject`.
        let url = <DynamicObject as kube::Resource>::url_path(
            &target.resource,
            target.namespace.as_deref(),
        );
        let request = kube::core::Request::new(url);
        let mut object = object.clone();
        if let (Some(ns), Some(meta)) = (
            &target.namespace,
            object.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        // force: the repository is the source of truth for the fields it sets;
        // an object re-applied after someone edited it with kubectl takes the
        // repository's values instead of failing with a conflict.
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = dry_run;
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let result = loop {
            let call = request
                .patch(&target.name, &params, &Patch::Apply(&object))
                .map_err(kube::Error::BuildRequest);
            let answer = match call {
                Ok(call) => {
                    self.bounded(self.calls_client().request::<AppliedObject>(call))
                        .await
                }
                Err(e) => Err(e),
            };
            match answer.map(|o| Applied {
                uid: o.metadata.uid,
            }) {
                // The API server sheds load with 429 (max-requests-inflight):
                // a short wait usually gets the request through.
                Err(kube::Error::Api(s)) if s.code == 429 && attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                other => break other.map_err(|e| self.classify(e, &target.describe())),
            }
        };
        crate::metrics::get().applied(started.elapsed());
        result
    }

    /// The live status of a request's objects, in order. Jobs are found by
    /// `selector` (the request's label) in their namespaces; other objects by
    /// name. An object that no longer exists is [`Phase::Gone`].
    pub async fn status_of(
        &self,
        objects: &[ObjectRef],
        selector: &str,
    ) -> Result<Vec<ObjectStatus>, ApplyError> {
        let mut jobs: HashMap<(String, String), Job> = HashMap::new();
        let mut listed: Vec<&str> = Vec::new();
        for o in objects.iter().filter(|o| o.is_job()) {
            let ns = o.namespace.as_deref().unwrap_or(&self.default_namespace);
            if listed.contains(&ns) {
                continue;
            }
            listed.push(ns);
            let api: Api<Job> = Api::namespaced(self.calls_client(), ns);
            let list = self
                .bounded(api.list(&ListParams::default().labels(selector)))
                .await
                .map_err(|e| self.classify(e, &format!("listing Jobs in {ns}")))?;
            for job in list.items {
                let name = job.metadata.name.clone().unwrap_or_default();
                jobs.insert((ns.to_string(), name), job);
            }
        }
        let mut out = Vec::with_capacity(objects.len());
        for o in objects {
            let ns = o
                .namespace
                .clone()
                .unwrap_or_else(|| self.default_namespace.clone());
            if o.is_job() {
                out.push(match jobs.get(&(ns, o.name.clone())) {
                    Some(job) => job_status(job),
                    None => ObjectStatus::phase(Phase::Gone),
                });
                continue;
            }
            let (resource, caps) = self.resolve(&o.api_version, &o.kind).await?;
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => Api::namespaced_with(self.calls_client(), &ns, &resource),
                Scope::Cluster => Api::all_with(self.calls_client(), &resource),
            };
            let found = self
                .bounded(api.get_opt(&o.name))
                .await
                .map_err(|e| self.classify(e, &format!("reading {} {}", o.kind, o.name)))?;
            out.push(ObjectStatus::phase(if found.is_some() {
                Phase::Applied
            } else {
                Phase::Gone
            }));
        }
        Ok(out)
    }

    /// Waits until every Job among `objects` has finished (Complete or Failed,
    /// or deleted), watching the API rather than polling. Returns whether they
    /// all finished before `deadline`.
    pub async fn wait_finished(
        &self,
        objects: &[ObjectRef],
        selector: &str,
        deadline: tokio::time::Instant,
    ) -> Result<bool, ApplyError> {
        let mut by_namespace: HashMap<String, Vec<String>> = HashMap::new();
        for o in objects.iter().filter(|o| o.is_job()) {
            let ns = o
                .namespace
                .clone()
                .unwrap_or_else(|| self.default_namespace.clone());
            by_namespace.entry(ns).or_default().push(o.name.clone());
        }
        for (ns, names) in by_namespace {
            if !self.wait_namespace(&ns, names, selector, deadline).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn wait_namespace(
        &self,
        ns: &str,
        names: Vec<String>,
        selector: &str,
        deadline: tokio::time::Instant,
    ) -> Result<bool, ApplyError> {
        use futures::StreamExt;
        let api: Api<Job> = Api::namespaced(self.calls_client(), ns);
        let watch_api: Api<Job> = Api::namespaced(self.watch_client.clone(), ns);
        loop {
            let list = self
                .bounded(api.list(&ListParams::default().labels(selector)))
                .await
                .map_err(|e| self.classify(e, &format!("listing Jobs in {ns}")))?;
            let mut pending: std::collections::HashSet<String> = names.iter().cloned().collect();
            for job in &list.items {
                if job_finished(job) {
                    pending.remove(job.metadata.name.as_deref().unwrap_or_default());
                }
            }
            // A Job missing from the list was deleted (ttlSecondsAfterFinished): finished.
            pending.retain(|n| {
                list.items
                    .iter()
                    .any(|j| j.metadata.name.as_deref() == Some(n))
            });
            if pending.is_empty() {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let seconds = (deadline - now).as_secs().clamp(1, 290) as u32;
            let version = list
                .metadata
                .resource_version
                .clone()
                .unwrap_or_else(|| "0".into());
            let params = WatchParams::default().labels(selector).timeout(seconds);
            let stream =
                match tokio::time::timeout_at(deadline, watch_api.watch(&params, &version)).await {
                    Err(_) => return Ok(false),
                    Ok(r) => r.map_err(|e| self.classify(e, &format!("watching Jobs in {ns}")))?,
                };
            let mut stream = std::pin::pin!(stream);
            loop {
                let event = match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) => return Ok(false),
                    Ok(None) => break,
                    Ok(Some(Err(_))) => break,
                    Ok(Some(Ok(e))) => e,
                };
                match event {
                    WatchEvent::Added(job) | WatchEvent::Modified(job) if job_finished(&job) => {
                        pending.remove(job.metadata.name.as_deref().unwrap_or_default());
                    }
                    WatchEvent::Deleted(job) => {
                        pending.remove(job.metadata.name.as_deref().unwrap_or_default());
                    }
                    // Expired resource version and the like: list again.
                    WatchEvent::Error(_) => break,
                    _ => {}
                }
                if pending.is_empty() {
                    return Ok(true);
                }
            }
        }
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

/// Where an applied object is in its life.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum Phase {
    /// A Job whose pods have not started.
    Pending,
    /// A Job with active pods.
    Running,
    /// A Job that completed.
    Succeeded,
    /// A Job that failed (backoffLimit reached, deadline exceeded…).
    Failed,
    /// Any other kind: it exists.
    Applied,
    /// It no longer exists (deleted, or removed by ttlSecondsAfterFinished).
    Gone,
}

impl Phase {
    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        !matches!(self, Phase::Pending | Phase::Running)
    }
}

/// A condition of a Job.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCondition {
    /// Complete, Failed, SuccessCriteriaMet…
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False, Unknown.
    pub status: String,
    /// Machine-readable reason, e.g. BackoffLimitExceeded.
    pub reason: Option<String>,
    /// Human-readable message.
    pub message: Option<String>,
}

/// The live status of one applied object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// Summary.
    pub phase: Phase,
    /// Active pods (Jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<i32>,
    /// Succeeded pods (Jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<i32>,
    /// Failed pods (Jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<i32>,
    /// Conditions (Jobs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<JobCondition>,
    /// When the Job started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
}

impl ObjectStatus {
    fn phase(phase: Phase) -> Self {
        ObjectStatus {
            phase,
            active: None,
            succeeded: None,
            failed: None,
            conditions: Vec::new(),
            start_time: None,
            completion_time: None,
        }
    }
}

fn condition_true(job: &Job, kind: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

fn job_finished(job: &Job) -> bool {
    condition_true(job, "Complete") || condition_true(job, "Failed")
}

fn job_status(job: &Job) -> ObjectStatus {
    let status = job.status.clone().unwrap_or_default();
    let phase = if condition_true(job, "Complete") {
        Phase::Succeeded
    } else if condition_true(job, "Failed") {
        Phase::Failed
    } else if status.active.unwrap_or(0) > 0 {
        Phase::Running
    } else {
        Phase::Pending
    };
    ObjectStatus {
        phase,
        active: Some(status.active.unwrap_or(0)),
        succeeded: Some(status.succeeded.unwrap_or(0)),
        failed: Some(status.failed.unwrap_or(0)),
        conditions: status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .map(|c| JobCondition {
                type_: c.type_,
                status: c.status,
                reason: c.reason,
                message: c.message,
            })
            .collect(),
        start_time: status.start_time.map(|t| t.0.to_string()),
        completion_time: status.completion_time.map(|t| t.0.to_string()),
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
