//! The names gitfaas gives what it applies, shared by every module that
//! writes, stores or follows an applied object: [`ObjectRef`] and the label
//! and annotation names. A module of its own so that `store` and
//! `lifecycle` need neither `publish` nor `cluster` for them.

use serde::{Deserialize, Serialize};

/// Label set on every applied object (and a Job's pods).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label holding the topic.
pub const LABEL_TOPIC: &str = "gitfaas.io/topic";
/// Label holding the request uid.
pub const LABEL_REQUEST_UID: &str = "gitfaas.io/request-uid";
/// Annotation holding the function uid (too long for a label value).
pub const ANNOTATION_FUNCTION_UID: &str = "gitfaas.io/function-uid";
/// Annotation holding the commit that produced the object.
pub const ANNOTATION_COMMIT: &str = "gitfaas.io/commit";

/// What the name of every payload Secret starts with.
pub const PAYLOAD_SECRET_PREFIX: &str = "gitfaas-payload-";

/// The name of the Secret holding a request's body (`{{PAYLOAD_SECRET}}`).
/// Here, not in `publish`, because the policy needs it too: a manifest may
/// read its own request's payload Secret and no other.
pub fn payload_secret_name(request_uid: &str) -> String {
    format!(
        "{PAYLOAD_SECRET_PREFIX}{}",
        request_uid.trim_start_matches("r-")
    )
}

/// An applied object, as reports and the store name it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
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
    pub(crate) fn is_job(&self) -> bool {
        self.kind == "Job" && self.api_version.starts_with("batch/")
    }
}
