//! A prepared publish as its topic's queue keeps it, and read back to
//! apply later.

use serde::Serialize;
use serde_json::Value;

use super::lean;
use super::render::Rendered;
use super::{Prepared, PublishError, Report};
use crate::cluster::Applier;
use crate::policy::Policy;
use crate::uid::{FunctionUid, RequestUid};

/// A prepared publish as its topic's queue keeps it: the rendered objects
/// (their kinds are resolved again when it is dispatched), so the run
/// applies what its publish answered — the same function uids and names —
/// whatever the repository says by then. The body is kept once: in
/// `payload`, and taken out of the objects' strings ([`lean`]).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedRun {
    pub(super) request_uid: RequestUid,
    pub(super) topic: String,
    pub(super) commit: String,
    pub(super) payload: String,
    #[serde(default)]
    pub(super) params: Vec<(String, String)>,
    pub(super) result_from_stdout: bool,
    pub(super) functions: Vec<QueuedFunction>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct QueuedFunction {
    pub(super) path: String,
    pub(super) function_uid: FunctionUid,
    /// The objects whole, when none holds the payload; left out otherwise,
    /// so that a gitfaas that predates `lean` cannot read the run (and
    /// drops it) rather than apply it without its payload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) objects: Vec<Value>,
    /// The objects with the payload taken out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) lean: Option<lean::Lean>,
    pub(super) uses_payload_secret: bool,
}

impl QueuedFunction {
    /// The objects as they were rendered.
    pub(super) fn objects(self, payload: &str) -> Result<(String, Vec<Value>), PublishError> {
        match self.lean {
            None => Ok((self.path, self.objects)),
            Some(lean) => match lean::restore(lean, payload) {
                Ok(objects) => Ok((self.path, objects)),
                Err(e) => Err(PublishError::Internal(format!(
                    "{}: the queued run cannot be read back ({e})",
                    self.path
                ))),
            },
        }
    }
}

impl QueuedRun {
    /// The run.
    pub fn request_uid(&self) -> &RequestUid {
        &self.request_uid
    }

    /// Its topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The commit its manifests came from.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// What was published, to publish it again.
    pub fn inputs(&self, callback: Option<String>) -> crate::store::RunInputs {
        crate::store::RunInputs {
            body: self.payload.clone(),
            params: self.params.clone(),
            callback,
        }
    }

    /// Ready to apply again: every object checked against the name rules
    /// and the policy of now (of this process, which may not be the one
    /// that accepted it), its kind and namespace resolved.
    pub async fn prepare(
        self,
        applier: &Applier,
        policy: &Policy,
    ) -> Result<Prepared, PublishError> {
        let mut ready = Vec::with_capacity(self.functions.len());
        for f in self.functions {
            let function_uid = f.function_uid.clone();
            let uses_payload_secret = f.uses_payload_secret;
            let (path, docs) = f.objects(&self.payload)?;
            let mut f = Rendered {
                path,
                function_uid,
                objects: Vec::with_capacity(docs.len()),
                uses_payload_secret,
            };
            for doc in docs {
                crate::names::check_object(&doc).map_err(|source| PublishError::Name {
                    path: f.path.clone(),
                    source,
                })?;
                policy
                    .check_content(&doc)
                    .map_err(|source| PublishError::Policy {
                        path: f.path.clone(),
                        source,
                    })?;
                let target =
                    applier
                        .target(&doc)
                        .await
                        .map_err(|source| PublishError::Cluster {
                            path: f.path.clone(),
                            source,
                        })?;
                policy
                    .check_namespace(target.namespace.as_deref())
                    .map_err(|source| PublishError::Policy {
                        path: f.path.clone(),
                        source,
                    })?;
                f.objects.push((doc, target));
            }
            ready.push(f);
        }
        Ok(Prepared {
            report: Report {
                request_uid: self.request_uid,
                applies: Vec::with_capacity(ready.len()),
                error: false,
                message: None,
                topic: self.topic,
                commit: self.commit,
                dry_run: false,
                failure: None,
                phase: None,
                position: None,
            },
            ready,
            payload: self.payload,
            params: self.params,
            result: if self.result_from_stdout {
                crate::catalog::ResultSource::Stdout
            } else {
                crate::catalog::ResultSource::Posted
            },
            limit: None,
            retry: None,
        })
    }
}
