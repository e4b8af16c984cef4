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

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
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
    server: String,
    default_namespace: String,
    timeout: Duration,
    // std Mutex: lookups and inserts only, never held across .await.
    kinds: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
}

/// Builds a client from `kubeconfig`, else KUBECONFIG / in-cluster / ~/.kube/config,
/// with every call bounded by `timeout`.
pub async fn client(
    kubeconfig: Option<&Path>,
    timeout: Duration,
) -> Result<(kube::Client, kube::Config), ApplyError> {
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
    config.connect_timeout = Some(timeout.min(Duration::from_secs(3)));
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    let client =
        kube::Client::try_from(config.clone()).map_err(|e| ApplyError::Config(e.to_string()))?;
    Ok((client, config))
}

impl Applier {
    /// An applier using `client`; objects without a namespace go to `default_namespace`.
    pub fn new(
        client: kube::Client,
        server: String,
        default_namespace: String,
        timeout: Duration,
    ) -> Self {
        Applier {
            client,
            server,
            default_namespace,
            timeout,
            kinds: Mutex::new(HashMap::new()),
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

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(kube::Error::Service(
                format!("no answer within {:?}", self.timeout).into(),
            )),
        }
    }

    /// Asks the API server for its version: the readiness probe.
    pub async fn probe(&self) -> Result<String, ApplyError> {
        self.bounded(self.client.apiserver_version())
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
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let cached = self.kinds.lock().ok().and_then(|k| k.get(&gvk).cloned());
        let (resource, caps) = match cached {
            Some(found) => found,
            None => {
                let found = self
                    .bounded(kube::discovery::pinned_kind(&self.client, &gvk))
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
                        other => {
                            self.classify(other, &format!("discovery of {api_version} {kind}"))
                        }
                    })?;
                if let Ok(mut k) = self.kinds.lock() {
                    k.insert(gvk, found.clone());
                }
                found
            }
        };
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

    /// Server-side applies `object` to `target`; with `dry_run` the API server
    /// validates and admits it but persists nothing.
    pub async fn apply(
        &self,
        target: &Target,
        object: &Value,
        dry_run: bool,
    ) -> Result<DynamicObject, ApplyError> {
        let api: Api<DynamicObject> = match &target.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &target.resource),
            None => Api::all_with(self.client.clone(), &target.resource),
        };
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
        self.bounded(api.patch(&target.name, &params, &Patch::Apply(&object)))
            .await
            .map_err(|e| self.classify(e, &target.describe()))
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
