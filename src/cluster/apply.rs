//! The writes of a publish, with field manager [`FIELD_MANAGER`]: a create
//! for a new object (one call, refused by the API server if the name is
//! taken), a server-side apply naming the uid for an object that is its
//! owner's ([`Applier::put`]), and deletes by uid precondition only
//! ([`Applier::delete_created`]). Names reach request paths
//! percent-encoded, bodies are JSON that a YAML 1.1 reader cannot read
//! differently ([`body`]).

use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::Value;

use super::{Applier, ApplyError, Target};

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "gitfaas";

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

    /// Deletes the object by that name if this publish created it — it
    /// carries `label` (a value unique to the publish, such as its request
    /// uid) — by its uid, and leaves anything else alone: for an object
    /// whose create got no answer (timeout, broken connection), and for a
    /// cancel. Whether it was this publish's (and so deleted).
    pub async fn delete_if_created(
        &self,
        target: &Target,
        label: (&str, &str),
    ) -> Result<bool, ApplyError> {
        let Some(live) = self.live(target).await? else {
            return Ok(false);
        };
        if live.labels.get(label.0).map(String::as_str) == Some(label.1) {
            self.delete_created(target, &live.uid).await?;
            Ok(true)
        } else {
            tracing::info!(
                object = target.describe(),
                "not deleted: the object of that name was not created by this publish"
            );
            Ok(false)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::{configmap, CMS, JOBS};
    use crate::error::Code;
    use crate::fixtures::{mock_api, stored, Exchange};
    use k8s_openapi::api::batch::v1::Job;
    use kube::discovery::ApiResource;
    use serde_json::json;

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
    async fn a_create_the_server_failed_may_have_created_the_object_one_it_rejected_did_not() {
        for (code, reason, maybe) in [(504, "Timeout", true), (422, "Invalid", false)] {
            let (object, target) = configmap("a");
            let (client, api) = mock_api(vec![Exchange::post(&format!(
                "{CMS}?&fieldManager=gitfaas"
            ))
            .refuses(code, reason)]);
            let applier = Applier::from_client(client, "ns");
            let err = applier
                .put(&target, &object, &owner(), false)
                .await
                .expect_err("refused");
            drop(applier);
            api.done().await;
            assert!(
                matches!(err.error, ApplyError::Rejected { code: c, .. } if c == code),
                "{err:?}"
            );
            assert_eq!(err.maybe_created, maybe, "{code}");
        }
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
}
