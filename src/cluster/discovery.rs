//! Kind resolution: an object's apiVersion and kind to its API resource and
//! scope, and so its [`Target`], through a per-group-version discovery call.
//! Only successes are cached (for the applier's life), so a kind that was
//! missing is looked up again on its next use: a CRD installed after start
//! works without a restart.

use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

use super::{Applier, ApplyError};

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

impl Applier {
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

    /// The API resource and capabilities of a kind, from the discovery cache or,
    /// on a miss, from the API server.
    pub(super) async fn resolve(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mock_api, resources, Exchange};
    use serde_json::json;

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
}
