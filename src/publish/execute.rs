//! Applying a prepared publish, all or nothing: the payload Secret, then
//! every object, and on a failure the rollback of what this publish
//! created, by uid.

use std::sync::Arc;

use serde_json::Value;

use super::render::Rendered;
use super::{payload_secret_name, ApplyEntry, Prepared, Report, PAYLOAD_SECRET_KEY};
use crate::cluster::{Applier, ApplyError, Owner, Put, PutError, Target};
use crate::object::{
    ObjectRef, ANNOTATION_COMMIT, LABEL_MANAGED_BY, LABEL_REQUEST_UID, LABEL_TOPIC,
};
use crate::tasks::Tasks;
use crate::uid::RequestUid;

/// Applies a prepared publish (or, for a dry-run request, returns the
/// rendered objects). The payload Secret, when a manifest uses one, is
/// created first and owned by the applied objects afterwards. If an apply
/// fails (the dry run passed, so the API server went away or a race), what
/// this publish created is deleted again — only that, by uid, never an
/// object that existed before it: a topic never stays half-created; the
/// deletion is retried in the background until it succeeds.
#[tracing::instrument(skip_all, fields(topic = prepared.report.topic, request_uid = prepared.report.request_uid.as_str()))]
pub async fn execute(
    applier: &Arc<Applier>,
    tasks: &Tasks,
    rollbacks: &Arc<crate::run::rollbacks::Rollbacks>,
    prepared: Prepared,
) -> Report {
    let Prepared {
        mut report,
        ready,
        payload,
        result: _,
        limit: _,
        params: _,
        retry: _,
    } = prepared;
    if report.dry_run {
        for r in &ready {
            let objects = r.objects.iter().map(|(doc, _)| doc.clone()).collect();
            report.applies.push(entry(
                r,
                false,
                "dry run: the API server accepted it; nothing was persisted".into(),
                Some(objects),
            ));
        }
        return report;
    }

    let owner_description = owner_description(&report.topic);
    let owner_labels = owner_labels(&report.topic);
    let owner = Owner {
        labels: &owner_labels,
        description: &owner_description,
    };
    // (target, what the apply did, whether its manifest uses the payload Secret)
    let mut applied: Vec<(Target, Put, bool)> = Vec::new();
    let mut failure: Option<(String, ApplyError)> = None;
    // A create that got no answer: it may have been written.
    let mut uncertain: Option<Target> = None;
    let secrets = payload_secrets(&ready, &report, &payload);
    for (target, secret) in &secrets {
        match applier.put(target, secret, &owner, false).await {
            Ok(put) => applied.push((target.clone(), put, false)),
            Err(PutError {
                error,
                maybe_created,
            }) => {
                uncertain = maybe_created.then(|| target.clone());
                failure = Some(("(payload Secret)".into(), error));
                break;
            }
        }
    }
    let mut done = 0;
    if failure.is_none() {
        'manifests: for r in &ready {
            for (doc, target) in &r.objects {
                match applier.put(target, doc, &owner, false).await {
                    Ok(put) => applied.push((target.clone(), put, r.uses_payload_secret)),
                    Err(PutError {
                        error,
                        maybe_created,
                    }) => {
                        tracing::warn!(path = r.path, object = target.describe(), error = %error, "apply failed");
                        uncertain = maybe_created.then(|| target.clone());
                        failure = Some((r.path.clone(), error));
                        break 'manifests;
                    }
                }
            }
            done += 1;
        }
    }
    if failure.is_none() && !secrets.is_empty() {
        if let Err(e) = own_payload_secrets(applier, &secrets, &applied).await {
            failure = Some(("(payload Secret)".into(), e));
        }
    }
    match failure {
        None => {
            for r in &ready {
                let names: Vec<String> = r.objects.iter().map(|(_, t)| t.describe()).collect();
                report.applies.push(entry(
                    r,
                    false,
                    format!("applied {}", names.join(", ")),
                    None,
                ));
            }
        }
        Some((failed_path, e)) => {
            let undo: Vec<Undo> = applied
                .into_iter()
                .filter_map(|(target, put, _)| match put {
                    Put::Created { uid: Some(uid) } => Some(Undo::Created { target, uid }),
                    // It existed before this publish: never deleted by it.
                    Put::Created { uid: None } | Put::Updated { .. } => None,
                })
                .chain(uncertain.map(|target| Undo::MaybeCreated { target }))
                .collect();
            let created = undo.len();
            for (i, r) in ready.iter().enumerate() {
                let message = if r.path == failed_path && i == done {
                    format!("apply failed: {e}")
                } else if i < done {
                    "rolled back: a later manifest of the topic failed (objects that existed before this publish are kept)".to_string()
                } else {
                    format!("not applied: {failed_path} failed")
                };
                report.applies.push(entry(r, true, message, None));
            }
            report.error = true;
            report.failure = Some(e.kind());
            report.message = Some(if created == 0 {
                format!("{failed_path}: {e}; nothing was created")
            } else {
                format!("{failed_path}: {e}; the object(s) this publish created are being deleted")
            });
            rollback(
                Arc::clone(applier),
                tasks,
                rollbacks,
                report.request_uid.clone(),
                undo,
            )
            .await;
        }
    }
    tracing::info!(
        request_uid = report.request_uid.as_str(),
        manifests = report.applies.len(),
        error = report.error,
        "published"
    );
    report
}

/// The labels an existing object must carry for a publish of `topic` to
/// change it.
pub(super) fn owner_labels(topic: &str) -> [(&'static str, &str); 2] {
    [(LABEL_MANAGED_BY, "gitfaas"), (LABEL_TOPIC, topic)]
}

pub(super) fn owner_description(topic: &str) -> String {
    format!("gitfaas for topic `{topic}`")
}

/// The payload Secrets a publish needs: one per namespace that a manifest
/// using `{{PAYLOAD_SECRET}}` applies to.
fn payload_secrets(ready: &[Rendered], report: &Report, payload: &str) -> Vec<(Target, Value)> {
    let namespaces: std::collections::BTreeSet<String> = ready
        .iter()
        .filter(|r| r.uses_payload_secret)
        .flat_map(|r| r.objects.iter().filter_map(|(_, t)| t.namespace.clone()))
        .collect();
    let name = payload_secret_name(report.request_uid.as_str());
    namespaces
        .into_iter()
        .map(|ns| {
            let secret = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": {
                        LABEL_MANAGED_BY: "gitfaas",
                        LABEL_TOPIC: report.topic,
                        LABEL_REQUEST_UID: report.request_uid,
                    },
                    "annotations": {ANNOTATION_COMMIT: report.commit},
                },
                "type": "Opaque",
                "data": {PAYLOAD_SECRET_KEY: payload},
            });
            let target = Target {
                resource: kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(
                    &(),
                ),
                namespace: Some(ns),
                name: name.clone(),
            };
            (target, secret)
        })
        .collect()
}

/// Makes every applied object of the manifests using the payload Secret an
/// owner of the Secret in its namespace, so Kubernetes' garbage collector
/// deletes the Secret with them.
async fn own_payload_secrets(
    applier: &Applier,
    secrets: &[(Target, Value)],
    applied: &[(Target, Put, bool)],
) -> Result<(), ApplyError> {
    for (target, secret) in secrets {
        let owners: Vec<Value> = applied
            .iter()
            .filter(|(t, put, uses)| {
                *uses && put.uid().is_some() && t.namespace == target.namespace
            })
            .map(|(t, put, _)| {
                serde_json::json!({
                    "apiVersion": t.resource.api_version,
                    "kind": t.resource.kind,
                    "name": t.name,
                    "uid": put.uid(),
                })
            })
            .collect();
        let secret_uid = applied
            .iter()
            .find(|(t, _, _)| t.name == target.name && t.namespace == target.namespace)
            .and_then(|(_, put, _)| put.uid());
        let (false, Some(secret_uid)) = (owners.is_empty(), secret_uid) else {
            continue;
        };
        let mut owned = secret.clone();
        if let Some(meta) = owned.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("ownerReferences".into(), Value::Array(owners));
        }
        applier
            .server_side_apply(target, &owned, Some(secret_uid), false)
            .await?;
    }
    Ok(())
}

/// What a failed publish deletes again.
enum Undo {
    /// It created this object: the API server's answer gave its uid.
    Created { target: Target, uid: String },
    /// Its create got no answer: deleted if the object of that name carries
    /// this publish's request uid (only its create can have written that).
    MaybeCreated { target: Target },
}

impl Undo {
    fn target(&self) -> &Target {
        match self {
            Undo::Created { target, .. } | Undo::MaybeCreated { target } => target,
        }
    }

    async fn run(&self, applier: &Applier, request_uid: &str) -> Result<(), ApplyError> {
        match self {
            Undo::Created { target, uid } => applier.delete_created(target, uid).await,
            Undo::MaybeCreated { target } => applier
                .delete_if_created(target, (LABEL_REQUEST_UID, request_uid))
                .await
                .map(|_| ()),
        }
    }
}

/// Deletes what a failed publish created. Tried at once; whatever could not
/// be deleted (the API server is away) is retried in the background with
/// backoff until it is gone.
async fn rollback(
    applier: Arc<Applier>,
    tasks: &Tasks,
    rollbacks: &Arc<crate::run::rollbacks::Rollbacks>,
    request_uid: RequestUid,
    mut undo: Vec<Undo>,
) {
    undo.reverse();
    let mut left = Vec::new();
    for u in undo {
        if let Err(e) = u.run(&applier, request_uid.as_str()).await {
            tracing::info!(object = u.target().describe(), error = %e, "rollback will be retried");
            left.push(u);
        }
    }
    if left.is_empty() {
        return;
    }
    // Stopped at shutdown (what is left is logged by the task report); the
    // objects keep their request-uid label for a later cleanup.
    let name = crate::tasks::TaskName::new("rollback retry").about(request_uid.to_string());
    let pending = rollbacks.start(&request_uid);
    tasks.spawn_cancellable(name, async move {
        let _pending = pending;
        let mut delay = std::time::Duration::from_secs(1);
        // Every 10 s at most, so the topic is whole again soon after the API
        // server is back; bounded: after about an hour, give up and say so.
        for _ in 0..360 {
            tokio::time::sleep(delay).await;
            let mut still = Vec::new();
            for u in left {
                match u.run(&applier, request_uid.as_str()).await {
                    Ok(()) => tracing::info!(object = u.target().describe(), "rolled back"),
                    Err(_) => still.push(u),
                }
            }
            left = still;
            if left.is_empty() {
                return;
            }
            delay = (delay * 2).min(std::time::Duration::from_secs(10));
        }
        for u in left {
            tracing::error!(
                object = u.target().describe(),
                "rollback abandoned: delete it by hand"
            );
        }
    });
}

pub(super) fn object_refs(r: &Rendered) -> Vec<ObjectRef> {
    r.objects
        .iter()
        .map(|(_, t)| ObjectRef {
            api_version: t.resource.api_version.clone(),
            kind: t.resource.kind.clone(),
            namespace: t.namespace.clone(),
            name: t.name.clone(),
        })
        .collect()
}

pub(super) fn entry(
    r: &Rendered,
    error: bool,
    message: String,
    rendered: Option<Vec<Value>>,
) -> ApplyEntry {
    ApplyEntry {
        error,
        path: r.path.clone(),
        message,
        function_uid: r.function_uid.clone(),
        objects: object_refs(r),
        rendered,
    }
}
