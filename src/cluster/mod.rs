//! The cluster side: one long-lived kube client, a discovery cache, and the
//! writes of a publish with field manager `gitfaas`: a create for a new
//! object (one call, refused by the API server if the name is taken), a
//! server-side apply naming the uid for an object that is its owner's
//! ([`Applier::put`]), and deletes by uid precondition only
//! ([`Applier::delete_created`]). Names reach request paths percent-encoded,
//! bodies are JSON that a YAML 1.1 reader cannot read differently ([`body`]).
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

use crate::error::Code;

pub mod jobwatch;

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
}

/// Who may change an existing object: the labels it must carry.
pub struct Owner<'a> {
    /// Every one of them, with its value.
    pub labels: &'a [(&'a str, &'a str)],
    /// The owner in words, e.g. "gitfaas for topic `collect`".
    pub description: &'a str,
}

/// What [`Applier::put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// The object is new: created (None on a dry run).
    Created {
        /// Its uid, from the API server's answer to the create.
        uid: Option<String>,
    },
    /// The object existed and was its owner's: updated.
    Updated {
        /// Its uid.
        uid: String,
    },
}

impl Put {
    /// The object's uid, when known.
    pub fn uid(&self) -> Option<&str> {
        match self {
            Put::Created { uid } => uid.as_deref(),
            Put::Updated { uid } => Some(uid),
        }
    }
}

/// A failed [`Applier::put`].
#[derive(Debug)]
pub struct PutError {
    /// Why.
    pub error: ApplyError,
    /// The create got no answer: the API server may have written the object.
    pub maybe_created: bool,
}

impl PutError {
    fn existed(error: ApplyError) -> Self {
        PutError {
            error,
            maybe_created: false,
        }
    }
}

enum CreateError {
    Exists,
    Failed(ApplyError),
}

/// What is read of an existing object.
struct Live {
    uid: String,
    labels: std::collections::BTreeMap<String, String>,
    /// The index of the fields gitfaas' create recorded (operation Update),
    /// when gitfaas has no apply entry yet.
    created_fields: Option<usize>,
}

/// A name or namespace as one URL path segment: refused if it is empty,
/// `.` or `..` (a collection, or another path), percent-encoded otherwise,
/// so no value reaches the query string or another segment. Names are also
/// checked against Kubernetes' rules before any call (`names`); this holds
/// whatever reaches it.
fn segment(s: &str) -> Result<String, ApplyError> {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    if s.is_empty() || s == "." || s == ".." {
        return Err(ApplyError::Invalid(format!(
            "{s:?} cannot be an object's name or namespace"
        )));
    }
    Ok(percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
}

/// The object with its namespace set to the target's.
fn with_namespace(object: &Value, target: &Target) -> Value {
    let mut object = object.clone();
    if let (Some(ns), Some(meta)) = (
        &target.namespace,
        object.get_mut("metadata").and_then(Value::as_object_mut),
    ) {
        meta.insert("namespace".into(), Value::String(ns.clone()));
    }
    object
}

/// The request body for an object: JSON, with every character that a YAML
/// 1.1 parser would not read back as itself written as a `\uXXXX` escape.
///
/// The API server reads an apply body (`application/apply-patch+yaml`) with
/// a YAML 1.1 parser, for which NEL (U+0085), LINE SEPARATOR and PARAGRAPH
/// SEPARATOR are line breaks (folded inside a quoted string: `a\u{85}b` was
/// stored as `a b`), and which refuses DEL, the C1 controls, U+FFFE and
/// U+FFFF. serde_json leaves all of them raw. Escaped, they are the same
/// string to a JSON and to a YAML parser, so the API server stores exactly
/// the value the structure check read. Every such character is in the Basic
/// Multilingual Plane, so no escape is a surrogate pair (which YAML refuses).
pub fn body(object: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, YamlSafe);
    // Serializing a Value into a Vec cannot fail (string keys, no I/O).
    let _ = serde::Serialize::serialize(object, &mut ser);
    out
}

/// serde_json's compact output, with [`body`]'s extra escapes.
struct YamlSafe;

impl serde_json::ser::Formatter for YamlSafe {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if needs_escape(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
    )
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

/// Applies objects to one cluster.
pub struct Applier {
    client: kube::Client,
    watch_client: kube::Client,
    server: String,
    default_namespace: String,
    timeout: Duration,
    // std Mutex: lookups and inserts only, never held across .await.
    kinds: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
    calls: tokio::sync::Semaphore,
    job_watches: jobwatch::JobWatches,
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
    let calls =
        kube::Client::try_from(calls_config).map_err(|e| ApplyError::Config(e.to_string()))?;
    Ok((Clients { calls, watch }, config))
}

/// The two clients of one cluster: one for calls, bounded by the API
/// timeout, and one for watches.
#[derive(Clone)]
pub struct Clients {
    /// For requests that answer at once.
    pub calls: kube::Client,
    /// For watches.
    pub watch: kube::Client,
}

/// The part of the API server's answer that is read; serde skips the rest.
#[derive(serde::Deserialize)]
struct AppliedObject {
    #[serde(default)]
    metadata: AppliedMeta,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AppliedMeta {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    managed_fields: Vec<ManagedFieldsEntry>,
}

#[derive(serde::Deserialize, Default)]
struct ManagedFieldsEntry {
    #[serde(default)]
    manager: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    subresource: String,
}

impl Applier {
    /// An applier using `client`; objects without a namespace go to `default_namespace`.
    pub fn new(
        clients: Clients,
        server: String,
        default_namespace: String,
        timeout: Duration,
    ) -> Self {
        Applier {
            client: clients.calls,
            watch_client: clients.watch.clone(),
            server,
            default_namespace,
            timeout,
            kinds: Mutex::new(HashMap::new()),
            calls: tokio::sync::Semaphore::new(MAX_CONCURRENT_CALLS),
            job_watches: jobwatch::JobWatches::new(clients.watch),
        }
    }

    /// An applier making every call, watches included, through `client`:
    /// one over a mocked API server ([`crate::fixtures`]).
    #[cfg(test)]
    pub(crate) fn from_client(client: kube::Client, default_namespace: &str) -> Self {
        Applier::new(
            Clients {
                calls: client.clone(),
                watch: client,
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

    /// The client, for callers that read status.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The client for calls: one, shared by every thread (its connections
    /// run on the main runtime; measured against a client per thread in
    /// BENCHMARKS.md).
    fn calls_client(&self) -> kube::Client {
        self.client.clone()
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

    /// Deletes the object this publish created — the one with `uid`, never
    /// another that took its name since (a uid precondition) — with its
    /// dependents in the background. Gone already, or replaced by someone
    /// else's object, counts as done: neither is this publish's to delete.
    pub async fn delete_created(&self, target: &Target, uid: &str) -> Result<(), ApplyError> {
        let params =
            kube::api::DeleteParams::background().preconditions(kube::api::Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            });
        let call = self
            .request(target)?
            .delete(&segment(&target.name)?, &params)
            .map_err(kube::Error::BuildRequest);
        let answer = match call {
            Ok(call) => {
                self.bounded(self.calls_client().request::<Value>(call))
                    .await
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::info!(
                    object = target.describe(),
                    "not deleted: the name now holds another object than the one this publish created"
                );
                Ok(())
            }
            Err(e) => Err(self.classify(e, &format!("deleting {}", target.describe()))),
        }
    }

    /// For an object whose create got no answer (timeout, broken
    /// connection): deletes it if that create did write it — the object by
    /// that name carries `label` (a value unique to the publish, such as its
    /// request uid) — and leaves anything else alone.
    pub async fn delete_if_created(
        &self,
        target: &Target,
        label: (&str, &str),
    ) -> Result<(), ApplyError> {
        let Some(live) = self.live(target).await? else {
            return Ok(());
        };
        if live.labels.get(label.0).map(String::as_str) == Some(label.1) {
            self.delete_created(target, &live.uid).await
        } else {
            tracing::info!(
                object = target.describe(),
                "not deleted: the object of that name was not created by this publish"
            );
            Ok(())
        }
    }

    /// The object's uid and labels as the API server has them, or None.
    async fn live(&self, target: &Target) -> Result<Option<Live>, ApplyError> {
        let call = self
            .request(target)?
            .get(&segment(&target.name)?, &kube::api::GetParams::default())
            .map_err(kube::Error::BuildRequest);
        let answer = match call {
            Ok(call) => {
                self.bounded(self.calls_client().request::<AppliedObject>(call))
                    .await
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(o) => {
                let fields = &o.metadata.managed_fields;
                let ours = |op: &str| {
                    fields.iter().position(|f| {
                        f.manager == FIELD_MANAGER && f.operation == op && f.subresource.is_empty()
                    })
                };
                let created_fields = ours("Update").filter(|_| ours("Apply").is_none());
                Ok(o.metadata.uid.map(|uid| Live {
                    uid,
                    labels: o.metadata.labels,
                    created_fields,
                }))
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(self.classify(e, &format!("reading {}", target.describe()))),
        }
    }

    /// The request builder for `target`'s collection.
    fn request(&self, target: &Target) -> Result<kube::core::Request, ApplyError> {
        let namespace = target.namespace.as_deref().map(segment).transpose()?;
        Ok(kube::core::Request::new(
            <DynamicObject as kube::Resource>::url_path(&target.resource, namespace.as_deref()),
        ))
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

    /// Creates `object`, or updates it if it exists and is `owner`'s own,
    /// with server-side dry run when `dry_run`.
    ///
    /// A new object is one call: a create, which the API server refuses if
    /// anything of that name exists, so nothing that existed is ever changed
    /// by it, and whose answer holds the new object's uid (what a rollback
    /// may delete). An existing object is read; it is updated only if it
    /// carries every label of `owner.labels` — by a server-side apply that
    /// names its uid, so an object that replaced it in between is refused,
    /// not changed. An existing Job is never updated (its pod template is
    /// immutable, and a Job is one run).
    pub async fn put(
        &self,
        target: &Target,
        object: &Value,
        owner: &Owner<'_>,
        dry_run: bool,
    ) -> Result<Put, PutError> {
        let started = std::time::Instant::now();
        let object = with_namespace(object, target);
        // Twice at most: an object deleted between our create and our read
        // is created again.
        let mut created = None;
        for _ in 0..2 {
            match self.create(target, &object, dry_run).await {
                Ok(uid) => {
                    created = Some(Put::Created {
                        uid: uid.filter(|_| !dry_run),
                    });
                    break;
                }
                Err(CreateError::Exists) => {}
                Err(CreateError::Failed(error)) => {
                    // No answer, or the server's own failure (a 504 after
                    // etcd took the write): the create may have been written.
                    let maybe_created = matches!(
                        error,
                        ApplyError::Unreachable { .. } | ApplyError::Rejected { code: 500.., .. }
                    );
                    return Err(PutError {
                        error,
                        maybe_created: maybe_created && !dry_run,
                    });
                }
            }
            let Some(live) = self.owned(target, owner, dry_run).await? else {
                continue;
            };
            let uid = self
                .server_side_apply(target, &object, Some(&live.uid), dry_run)
                .await
                .map_err(PutError::existed)?;
            created = Some(Put::Updated {
                uid: uid.unwrap_or(live.uid),
            });
            break;
        }
        crate::metrics::get().applied(started.elapsed());
        created.ok_or_else(|| {
            PutError::existed(ApplyError::Invalid(format!(
                "{} was deleted and recreated while this publish tried to create it: retry",
                target.describe()
            )))
        })
    }

    /// The existing object, if it is `owner`'s own (else the error that
    /// refuses the publish), with the fields its create set made its
    /// server-side apply's own. None when it vanished meanwhile.
    async fn owned(
        &self,
        target: &Target,
        owner: &Owner<'_>,
        dry_run: bool,
    ) -> Result<Option<Live>, PutError> {
        // A few tries: controllers write status (and managedFields) between
        // our read and our patch, which the patch's tests then refuse.
        for attempt in 0..3 {
            let Some(live) = self.live(target).await.map_err(PutError::existed)? else {
                return Ok(None);
            };
            let missing: Vec<String> = owner
                .labels
                .iter()
                .filter(|(k, v)| live.labels.get(*k).map(String::as_str) != Some(*v))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if !missing.is_empty() {
                return Err(PutError::existed(ApplyError::NotOwned {
                    object: target.describe(),
                    owner: owner.description.to_string(),
                    missing: missing.join(", "),
                }));
            }
            if target.is_job() {
                return Err(PutError::existed(ApplyError::JobExists {
                    object: target.describe(),
                }));
            }
            let (Some(index), false) = (live.created_fields, dry_run) else {
                return Ok(Some(live));
            };
            match self.adopt_created_fields(target, &live, index).await {
                Ok(()) => return Ok(Some(live)),
                Err(ApplyError::Rejected { code: 422, .. }) if attempt < 2 => {}
                Err(e) => return Err(PutError::existed(e)),
            }
        }
        Err(PutError::existed(ApplyError::Invalid(format!(
            "{} kept changing while gitfaas read it: retry",
            target.describe()
        ))))
    }

    async fn create(
        &self,
        target: &Target,
        object: &Value,
        dry_run: bool,
    ) -> Result<Option<String>, CreateError> {
        let params = kube::api::PostParams {
            dry_run,
            field_manager: Some(FIELD_MANAGER.to_string()),
        };
        let request = self.request(target).map_err(CreateError::Failed)?;
        let body = body(object);
        let answer = self
            .call_retrying(|| request.create(&params, body.clone()))
            .await;
        match answer {
            Ok(o) => Ok(o.metadata.uid),
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
                Err(CreateError::Exists)
            }
            Err(e) => Err(CreateError::Failed(self.classify(e, &target.describe()))),
        }
    }

    /// Makes the fields gitfaas' create set its server-side apply's own.
    ///
    /// A create records its fields as an `Update` by `gitfaas`; a later
    /// apply by `gitfaas` is another owner to the API server, which would
    /// then never remove a field the repository dropped since the create.
    /// Marking that entry `Apply` (a JSON patch of `managedFields` that tests
    /// the uid and the entry first) gives later applies the
    /// semantics of an object that was applied from the start — what
    /// `kubectl apply --server-side` does when it takes over from a
    /// client-side apply.
    async fn adopt_created_fields(
        &self,
        target: &Target,
        live: &Live,
        index: usize,
    ) -> Result<(), ApplyError> {
        let entry = format!("/metadata/managedFields/{index}");
        let patch = serde_json::json!([
            {"op": "test", "path": "/metadata/uid", "value": live.uid},
            {"op": "test", "path": format!("{entry}/manager"), "value": FIELD_MANAGER},
            {"op": "test", "path": format!("{entry}/operation"), "value": "Update"},
            {"op": "replace", "path": format!("{entry}/operation"), "value": "Apply"},
        ]);
        let request = self.request(target)?;
        let name = segment(&target.name)?;
        let body = body(&patch);
        self.call_retrying(|| {
            let mut call = request.patch(&name, &PatchParams::default(), &Patch::Merge(()))?;
            call.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json-patch+json"),
            );
            *call.body_mut() = body.clone();
            Ok(call)
        })
        .await
        .map(|_| ())
        .map_err(|e| {
            self.classify(
                e,
                &format!("taking over the fields of {}", target.describe()),
            )
        })
    }

    /// Server-side applies `object` to `target` and returns the uid; with
    /// `uid`, only to the object that has it (the API server refuses the
    /// apply if the object is gone or is another one); with `dry_run` the API
    /// server validates and admits it but persists nothing.
    pub async fn server_side_apply(
        &self,
        target: &Target,
        object: &Value,
        uid: Option<&str>,
        dry_run: bool,
    ) -> Result<Option<String>, ApplyError> {
        let mut object = with_namespace(object, target);
        if let (Some(uid), Some(meta)) = (
            uid,
            object.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            meta.insert("uid".into(), Value::String(uid.to_string()));
        }
        // force: the repository is the source of truth for the fields it sets;
        // an object re-applied after someone edited it with kubectl takes the
        // repository's values instead of failing with a conflict. Only the
        // topic's own objects get here (see `put`).
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = dry_run;
        let request = self.request(target)?;
        let name = segment(&target.name)?;
        let body = body(&object);
        self.call_retrying(|| {
            // The body is serialized here (see `body`), not by kube.
            let mut call = request.patch(&name, &params, &Patch::Apply(()))?;
            *call.body_mut() = body.clone();
            Ok(call)
        })
        .await
        .map(|o| o.metadata.uid)
        .map_err(|e| self.classify(e, &target.describe()))
    }

    /// Sends a request built by `build`, reading only the uid and labels of
    /// the answer (a `DynamicObject` with managedFields is not built); a 429
    /// is retried briefly.
    async fn call_retrying(
        &self,
        build: impl Fn() -> Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    ) -> Result<AppliedObject, kube::Error> {
        let mut attempt = 0;
        loop {
            let answer = match build() {
                Ok(call) => {
                    self.bounded(self.calls_client().request::<AppliedObject>(call))
                        .await
                }
                Err(e) => Err(kube::Error::BuildRequest(e)),
            };
            match answer {
                // The API server sheds load with 429 (max-requests-inflight):
                // a short wait usually gets the request through.
                Err(kube::Error::Api(s)) if s.code == 429 && attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                other => return other,
            }
        }
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

    fn jobs_by_namespace(&self, objects: &[ObjectRef]) -> HashMap<String, Vec<String>> {
        let mut by_namespace: HashMap<String, Vec<String>> = HashMap::new();
        for o in objects.iter().filter(|o| o.is_job()) {
            let ns = o
                .namespace
                .clone()
                .unwrap_or_else(|| self.default_namespace.clone());
            by_namespace.entry(ns).or_default().push(o.name.clone());
        }
        by_namespace
    }

    /// Of the Jobs `names` in `ns`, those not finished, and the list's
    /// resource version (to watch from).
    async fn unfinished(
        &self,
        ns: &str,
        names: &[String],
        selector: &str,
    ) -> Result<(std::collections::HashSet<String>, String), ApplyError> {
        let api: Api<Job> = Api::namespaced(self.calls_client(), ns);
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
        let version = list
            .metadata
            .resource_version
            .clone()
            .unwrap_or_else(|| "0".into());
        Ok((pending, version))
    }

    /// Waits until every Job among `objects` has finished (Complete or Failed,
    /// or deleted). Returns whether they all finished before `deadline`.
    /// Every waiter of a namespace shares one watch ([`jobwatch`]):
    /// a thousand waits are one API-server connection per namespace, not a
    /// thousand. Beyond the watched-namespace bound a wait watches alone.
    pub async fn wait_finished(
        &self,
        objects: &[ObjectRef],
        selector: &str,
        deadline: tokio::time::Instant,
    ) -> Result<bool, ApplyError> {
        for (ns, names) in self.jobs_by_namespace(objects) {
            let finished = match self.job_watches.namespace(&ns) {
                Some(watch) => self.wait_shared(&watch, &ns, &names, deadline).await?,
                None => self.wait_namespace(&ns, &names, selector, deadline).await?,
            };
            if !finished {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// [`Self::wait_finished`] for one namespace, on its shared watch. A Job
    /// the watch has shown and no longer has was deleted (ttlSecondsAfterFinished):
    /// finished. One it has never shown after a few seconds is looked up
    /// once: gone, it finished (and was deleted) before the watch saw it.
    async fn wait_shared(
        &self,
        watch: &jobwatch::NamespaceWatch,
        ns: &str,
        names: &[String],
        deadline: tokio::time::Instant,
    ) -> Result<bool, ApplyError> {
        let mut changes = watch.changes();
        match tokio::time::timeout_at(deadline, watch.ready()).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return Ok(false),
        }
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut gone: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let look_up_at = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut looked_up = false;
        loop {
            let mut unseen = Vec::new();
            let mut pending = 0;
            for name in names {
                match watch.job(ns, name) {
                    Some(job) => {
                        seen.insert(name);
                        if !job_finished(&job) {
                            pending += 1;
                        }
                    }
                    None if seen.contains(name.as_str()) || gone.contains(name.as_str()) => {}
                    None => {
                        unseen.push(name.as_str());
                        pending += 1;
                    }
                }
            }
            if pending == 0 {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            if !looked_up && now >= look_up_at && !unseen.is_empty() {
                looked_up = true;
                let api: Api<Job> = Api::namespaced(self.calls_client(), ns);
                for name in unseen {
                    let found = self
                        .bounded(api.get_opt(name))
                        .await
                        .map_err(|e| self.classify(e, &format!("reading Job {ns}/{name}")))?;
                    if found.is_none() {
                        gone.insert(name);
                    }
                }
                continue;
            }
            let wake = if looked_up {
                deadline
            } else {
                deadline.min(look_up_at)
            };
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The watch task stopped (shutdown).
                        return Ok(false);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn wait_namespace(
        &self,
        ns: &str,
        names: &[String],
        selector: &str,
        deadline: tokio::time::Instant,
    ) -> Result<bool, ApplyError> {
        use futures::StreamExt;
        let watch_api: Api<Job> = Api::namespaced(self.watch_client.clone(), ns);
        loop {
            let (mut pending, version) = self.unfinished(ns, names, selector).await?;
            if pending.is_empty() {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let seconds = (deadline - now).as_secs().clamp(1, 290) as u32;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mock_api, resources, stored, Exchange};
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    const CMS: &str = "/api/v1/namespaces/ns/configmaps";
    const JOBS: &str = "/apis/batch/v1/namespaces/ns/jobs";
    const OWNER_LABELS: [(&str, &str); 2] = [
        ("app.kubernetes.io/managed-by", "gitfaas"),
        ("gitfaas.io/topic", "t"),
    ];

    fn owner() -> Owner<'static> {
        Owner {
            labels: &OWNER_LABELS,
            description: "gitfaas for topic `t`",
        }
    }

    fn configmap(name: &str) -> (Value, Target) {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": name}, "data": {"k": "v"}});
        let target = Target {
            resource: ApiResource::erase::<ConfigMap>(&()),
            namespace: Some("ns".into()),
            name: name.into(),
        };
        (object, target)
    }

    fn job(name: &str) -> (Value, Target) {
        let object = json!({"apiVersion": "batch/v1", "kind": "Job",
                            "metadata": {"name": name}, "spec": {}});
        let target = Target {
            resource: ApiResource::erase::<Job>(&()),
            namespace: Some("ns".into()),
            name: name.into(),
        };
        (object, target)
    }

    /// The create of a new object: one POST, with the target's namespace set.
    fn create(name: &str, uid: &str) -> Exchange {
        let (object, _) = configmap(name);
        Exchange::post(&format!("{CMS}?&fieldManager=gitfaas"))
            .with_body(json!({"metadata": {"name": name, "namespace": "ns"}}))
            .answers(201, stored(&object, uid, &[]))
    }

    #[tokio::test]
    async fn a_new_object_is_created_with_one_post_and_its_uid_is_kept() {
        let (client, api) = mock_api(vec![create("a", "uid-a")]);
        let applier = Applier::from_client(client, "ns");
        let (object, target) = configmap("a");
        let put = applier.put(&target, &object, &owner(), false).await;
        drop(applier);
        let seen = api.done().await;
        assert_eq!(
            put.ok(),
            Some(Put::Created {
                uid: Some("uid-a".into())
            })
        );
        assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    }

    #[tokio::test]
    async fn a_dry_run_create_asks_for_dry_run_and_keeps_no_uid() {
        let (object, target) = configmap("a");
        let (client, api) = mock_api(vec![Exchange::post(&format!(
            "{CMS}?&dryRun=All&fieldManager=gitfaas"
        ))
        .answers(201, stored(&object, "uid-never-persisted", &[]))]);
        let applier = Applier::from_client(client, "ns");
        let put = applier.put(&target, &object, &owner(), true).await;
        drop(applier);
        api.done().await;
        assert_eq!(put.ok(), Some(Put::Created { uid: None }));
    }

    #[tokio::test]
    async fn an_existing_object_without_the_topics_labels_is_not_owned_and_nothing_is_written() {
        let (object, target) = configmap("taken");
        let (client, api) = mock_api(vec![
            Exchange::post(&format!("{CMS}?&fieldManager=gitfaas")).refuses(409, "AlreadyExists"),
            Exchange::get(&format!("{CMS}/taken")).answers(
                200,
                stored(
                    &object,
                    "uid-theirs",
                    &[("app.kubernetes.io/managed-by", "gitfaas")],
                ),
            ),
        ]);
        let applier = Applier::from_client(client, "ns");
        let err = applier
            .put(&target, &object, &owner(), false)
            .await
            .expect_err("not the topic's own");
        drop(applier);
        // The script ends after the read: no PATCH, no DELETE.
        api.done().await;
        assert!(!err.maybe_created);
        match &err.error {
            ApplyError::NotOwned { missing, .. } => assert_eq!(missing, "gitfaas.io/topic=t"),
            other => panic!("expected NotOwned, got {other:?}"),
        }
        assert_eq!(err.error.kind(), Code::NotOwned);
    }

    #[tokio::test]
    async fn an_existing_job_of_the_topic_is_never_changed() {
        let (object, target) = job("j");
        let (client, api) = mock_api(vec![
            Exchange::post(&format!("{JOBS}?&fieldManager=gitfaas")).refuses(409, "AlreadyExists"),
            Exchange::get(&format!("{JOBS}/j"))
                .answers(200, stored(&object, "uid-j", &OWNER_LABELS)),
        ]);
        let applier = Applier::from_client(client, "ns");
        let err = applier
            .put(&target, &object, &owner(), false)
            .await
            .expect_err("a Job is one run");
        drop(applier);
        api.done().await;
        assert!(matches!(err.error, ApplyError::JobExists { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn the_topics_own_object_is_server_side_applied_naming_its_uid() {
        let (object, target) = configmap("mine");
        let mut live = stored(&object, "uid-mine", &OWNER_LABELS);
        live["metadata"]["managedFields"] =
            json!([{"manager": "gitfaas", "operation": "Apply", "fieldsType": "FieldsV1"}]);
        let (client, api) = mock_api(vec![
            Exchange::post(&format!("{CMS}?&fieldManager=gitfaas")).refuses(409, "AlreadyExists"),
            Exchange::get(&format!("{CMS}/mine")).answers(200, live.clone()),
            Exchange::patch(&format!("{CMS}/mine?&force=true&fieldManager=gitfaas"))
                .with_body(
                    json!({"metadata": {"name": "mine", "namespace": "ns", "uid": "uid-mine"},
                                  "data": {"k": "v"}}),
                )
                .answers(200, live),
        ]);
        let applier = Applier::from_client(client, "ns");
        let put = applier.put(&target, &object, &owner(), false).await;
        drop(applier);
        let seen = api.done().await;
        assert_eq!(
            put.ok(),
            Some(Put::Updated {
                uid: "uid-mine".into()
            })
        );
        assert_eq!(
            seen[2].content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
    }

    #[tokio::test]
    async fn the_fields_of_gitfaas_create_become_its_applys_before_the_first_update() {
        let (object, target) = configmap("mine");
        let mut live = stored(&object, "uid-mine", &OWNER_LABELS);
        live["metadata"]["managedFields"] = json!([
            {"manager": "kube-controller-manager", "operation": "Update"},
            {"manager": "gitfaas", "operation": "Update"},
        ]);
        let (client, api) = mock_api(vec![
            Exchange::post(&format!("{CMS}?&fieldManager=gitfaas")).refuses(409, "AlreadyExists"),
            Exchange::get(&format!("{CMS}/mine")).answers(200, live.clone()),
            Exchange::patch(&format!("{CMS}/mine?"))
                .with_body(json!([
                    {"op": "test", "path": "/metadata/uid", "value": "uid-mine"},
                    {"op": "test", "path": "/metadata/managedFields/1/manager", "value": "gitfaas"},
                    {"op": "test", "path": "/metadata/managedFields/1/operation", "value": "Update"},
                    {"op": "replace", "path": "/metadata/managedFields/1/operation", "value": "Apply"},
                ]))
                .answers(200, live.clone()),
            Exchange::patch(&format!("{CMS}/mine?&force=true&fieldManager=gitfaas"))
                .answers(200, live),
        ]);
        let applier = Applier::from_client(client, "ns");
        let put = applier.put(&target, &object, &owner(), false).await;
        drop(applier);
        let seen = api.done().await;
        assert!(matches!(put, Ok(Put::Updated { .. })), "{put:?}");
        assert_eq!(
            seen[2].content_type.as_deref(),
            Some("application/json-patch+json")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_retried_after_a_doubling_wait_and_then_succeeds() {
        let (object, target) = configmap("a");
        let busy = || {
            Exchange::post(&format!("{CMS}?&fieldManager=gitfaas"))
                .refuses(429, "TooManyRequests")
                .header("Retry-After", "1")
        };
        let (client, api) = mock_api(vec![busy(), busy(), create("a", "uid-a")]);
        let applier = Applier::from_client(client, "ns");
        let started = tokio::time::Instant::now();
        let put = applier.put(&target, &object, &owner(), false).await;
        let waited = started.elapsed();
        drop(applier);
        api.done().await;
        assert_eq!(
            put.ok(),
            Some(Put::Created {
                uid: Some("uid-a".into())
            })
        );
        // 400 ms, then 800 ms: gitfaas' own backoff. (The Retry-After is
        // for kube's retry layer, which a config-built client has in front
        // of this loop and a client over the mock has not.)
        assert_eq!(waited, Duration::from_millis(1200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_given_up_after_five_retries_as_a_refusal() {
        let (object, target) = configmap("a");
        let script = (0..6)
            .map(|_| {
                Exchange::post(&format!("{CMS}?&fieldManager=gitfaas"))
                    .refuses(429, "TooManyRequests")
            })
            .collect();
        let (client, api) = mock_api(script);
        let applier = Applier::from_client(client, "ns");
        let err = applier
            .put(&target, &object, &owner(), false)
            .await
            .expect_err("the API server stays busy");
        drop(applier);
        api.done().await;
        assert!(
            matches!(err.error, ApplyError::Rejected { code: 429, .. }),
            "{err:?}"
        );
        assert!(
            !err.maybe_created,
            "a 429 is an answer: nothing was written"
        );
    }

    #[tokio::test]
    async fn a_create_without_an_answer_may_have_created_the_object() {
        let (object, target) = configmap("a");
        let (client, api) = mock_api(vec![Exchange::post(&format!(
            "{CMS}?&fieldManager=gitfaas"
        ))
        .breaks()]);
        let applier = Applier::from_client(client, "ns");
        let err = applier
            .put(&target, &object, &owner(), false)
            .await
            .expect_err("no answer");
        drop(applier);
        api.done().await;
        assert!(
            matches!(err.error, ApplyError::Unreachable { .. }),
            "{err:?}"
        );
        assert!(err.maybe_created);
    }

    #[tokio::test]
    async fn a_delete_names_the_uid_and_a_replaced_or_gone_object_counts_as_done() {
        let (_, target) = configmap("a");
        let delete = || {
            Exchange::delete(&format!("{CMS}/a?")).with_body(
                json!({"propagationPolicy": "Background", "preconditions": {"uid": "uid-a"}}),
            )
        };
        let (client, api) = mock_api(vec![
            delete().answers(200, json!({"kind": "Status", "status": "Success"})),
            delete().refuses(409, "Conflict"),
            delete().refuses(404, "NotFound"),
            delete().refuses(403, "Forbidden"),
        ]);
        let applier = Applier::from_client(client, "ns");
        let mut outcomes = Vec::new();
        for _ in 0..4 {
            outcomes.push(applier.delete_created(&target, "uid-a").await);
        }
        drop(applier);
        api.done().await;
        let cases = ["deleted", "another object took the name", "already gone"];
        for (case, outcome) in cases.iter().zip(&outcomes) {
            assert!(outcome.is_ok(), "{case}: {outcome:?}");
        }
        assert!(
            matches!(outcomes[3], Err(ApplyError::Rejected { code: 403, .. })),
            "{:?}",
            outcomes[3]
        );
    }

    #[tokio::test]
    async fn an_object_an_unanswered_create_may_have_written_is_deleted_only_if_it_is_the_requests()
    {
        let (object, target) = configmap("a");
        let label = ("gitfaas.io/request-uid", "r-1");
        let (client, api) = mock_api(vec![
            Exchange::get(&format!("{CMS}/a")).answers(
                200,
                stored(&object, "uid-other", &[("gitfaas.io/request-uid", "r-2")]),
            ),
            Exchange::get(&format!("{CMS}/a")).answers(200, stored(&object, "uid-a", &[label])),
            Exchange::delete(&format!("{CMS}/a?"))
                .with_body(json!({"preconditions": {"uid": "uid-a"}}))
                .answers(200, json!({})),
            Exchange::get(&format!("{CMS}/a")).refuses(404, "NotFound"),
        ]);
        let applier = Applier::from_client(client, "ns");
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            outcomes.push(applier.delete_if_created(&target, label).await);
        }
        drop(applier);
        // The script holds the one DELETE: of the object carrying r-1, by its uid.
        api.done().await;
        for (case, outcome) in ["another request's", "this request's", "none"]
            .iter()
            .zip(&outcomes)
        {
            assert!(outcome.is_ok(), "{case}: {outcome:?}");
        }
    }

    #[tokio::test]
    async fn a_kind_the_cluster_did_not_serve_is_looked_up_again_and_then_cached() {
        let crd =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        let (client, api) = mock_api(vec![
            Exchange::get("/apis/example.com/v1").refuses(404, "NotFound"),
            Exchange::get("/apis/example.com/v1")
                .answers(200, resources("example.com/v1", &[("widgets", "Widget")])),
        ]);
        let applier = Applier::from_client(client, "ns");
        let missing = applier.target(&crd).await;
        // The CRD is installed now: found, and the third use asks nothing.
        let found = [applier.target(&crd).await, applier.target(&crd).await];
        drop(applier);
        api.done().await;
        assert!(
            matches!(missing, Err(ApplyError::UnknownKind { .. })),
            "{missing:?}"
        );
        for target in found {
            let target = target.expect("served now");
            assert_eq!(target.resource.plural, "widgets");
            assert_eq!(target.namespace.as_deref(), Some("ns"));
        }
    }

    fn job_with(status: Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "status": status})).expect("a Job")
    }

    #[test]
    fn a_jobs_conditions_and_counts_map_to_its_phase() {
        let cases = [
            (json!({}), Phase::Pending, "no pod yet"),
            (json!({"active": 1}), Phase::Running, "a pod runs"),
            (
                json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
                Phase::Succeeded,
                "complete",
            ),
            (
                json!({"failed": 2, "conditions": [{"type": "Failed", "status": "True",
                        "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
                Phase::Failed,
                "failed",
            ),
            (
                json!({"active": 1, "conditions": [{"type": "Complete", "status": "False"}]}),
                Phase::Running,
                "a condition that is not True does not count",
            ),
        ];
        for (status, phase, case) in cases {
            let s = job_status(&job_with(status));
            assert_eq!(s.phase, phase, "{case}");
            assert_eq!(
                s.phase.is_final(),
                !matches!(phase, Phase::Pending | Phase::Running),
                "{case}"
            );
        }
        let failed = job_status(&job_with(json!({
            "failed": 2, "startTime": "2025-01-02T03:04:05Z",
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
        })));
        assert_eq!(
            serde_json::to_value(&failed).expect("JSON"),
            json!({"phase": "Failed", "active": 0, "succeeded": 0, "failed": 2,
                   "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": null}],
                   "startTime": "2025-01-02T03:04:05Z"})
        );
    }

    #[tokio::test]
    async fn status_lists_jobs_by_the_request_label_and_reads_other_objects_by_name() {
        let (object, _) = configmap("cm");
        let objects = [
            ObjectRef {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                namespace: None,
                name: "j1".into(),
            },
            ObjectRef {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                namespace: Some("ns".into()),
                name: "j2".into(),
            },
            ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: None,
                name: "cm".into(),
            },
            ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: None,
                name: "gone".into(),
            },
        ];
        let (client, api) = mock_api(vec![
            // One list for both Jobs of the namespace; j2 is not in it (ttl).
            Exchange::get(&format!(
                "{JOBS}?&labelSelector=gitfaas.io%2Frequest-uid%3Dr-1"
            ))
            .answers(
                200,
                json!({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {},
                       "items": [{"metadata": {"name": "j1"}, "status": {"active": 1}}]}),
            ),
            Exchange::get("/api/v1").answers(200, resources("v1", &[("configmaps", "ConfigMap")])),
            Exchange::get(&format!("{CMS}/cm")).answers(200, stored(&object, "uid-cm", &[])),
            Exchange::get(&format!("{CMS}/gone")).refuses(404, "NotFound"),
        ]);
        let applier = Applier::from_client(client, "ns");
        let status = applier
            .status_of(&objects, "gitfaas.io/request-uid=r-1")
            .await;
        drop(applier);
        api.done().await;
        let phases: Vec<Phase> = status.expect("status").iter().map(|s| s.phase).collect();
        assert_eq!(
            phases,
            [Phase::Running, Phase::Gone, Phase::Applied, Phase::Gone]
        );
    }
}
