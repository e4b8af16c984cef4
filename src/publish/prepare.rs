//! A publish made ready to apply: rendered, checked against the policy,
//! its kinds resolved and (for several objects, or a dry-run request) dry-run
//! applied whole. Nothing is applied yet.

use serde_json::Value;

use super::execute::{entry, object_refs, owner_description, owner_labels};
use super::queued::QueuedFunction;
use super::render::{render_on_blocking_pool, Rendered, RENDER_ON_BLOCKING_POOL_BYTES};
use super::{
    lean, render_topic, Context, Limit, PublishError, QueuedRun, RenderedManifest, Report, Request,
};
use crate::cluster::{Applier, ApplyError, Owner};
use crate::object::ObjectRef;
use crate::uid::{FunctionUid, RequestUid};

/// A publish that passed every check and (for several objects, or a dry-run
/// request) the server-side dry run: nothing is applied yet.
pub struct Prepared {
    pub(super) report: Report,
    pub(super) ready: Vec<Rendered>,
    pub(super) payload: String,
    /// The query parameters that were template variables.
    pub(super) params: Vec<(String, String)>,
    /// Where the topic's responses come from.
    pub(super) result: crate::catalog::ResultSource,
    /// The topic's `maxConcurrent`, when it has one.
    pub(super) limit: Option<Limit>,
    /// The topic's `retry`, when it has one.
    pub(super) retry: Option<crate::catalog::Retry>,
}

impl Prepared {
    /// The request uid.
    pub fn request_uid(&self) -> &RequestUid {
        &self.report.request_uid
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.report.topic
    }

    /// The commit the manifests came from.
    pub fn commit(&self) -> &str {
        &self.report.commit
    }

    /// Where the topic's responses come from (its `result`).
    pub fn result(&self) -> crate::catalog::ResultSource {
        self.result
    }

    /// Whether this is a dry-run request.
    pub fn dry_run(&self) -> bool {
        self.report.dry_run
    }

    /// The topic's `retry`, when it has one.
    pub fn retry(&self) -> Option<crate::catalog::Retry> {
        self.retry
    }

    /// The topic's `maxConcurrent`, when it has one (not for a dry run).
    pub fn limit(&self) -> Option<&Limit> {
        self.limit.as_ref()
    }

    /// The query parameters that were template variables, taken out (a
    /// copy the queue keeps is made before, by [`Self::queued`]).
    pub fn take_params(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.params)
    }

    /// What the topic's queue keeps of it.
    pub fn queued(&self) -> QueuedRun {
        QueuedRun {
            request_uid: self.report.request_uid.clone(),
            topic: self.report.topic.clone(),
            commit: self.report.commit.clone(),
            payload: self.payload.clone(),
            params: self.params.clone(),
            result_from_stdout: self.result == crate::catalog::ResultSource::Stdout,
            functions: self
                .ready
                .iter()
                .map(|r| {
                    let objects: Vec<Value> =
                        r.objects.iter().map(|(doc, _)| doc.clone()).collect();
                    let lean = lean::strip(&objects, &self.payload);
                    QueuedFunction {
                        path: r.path.clone(),
                        function_uid: r.function_uid.clone(),
                        objects: if lean.is_some() { Vec::new() } else { objects },
                        lean,
                        uses_payload_secret: r.uses_payload_secret,
                    }
                })
                .collect(),
        }
    }

    /// The answer of a publish that waits in its topic's queue.
    pub fn queued_report(&self, position: Option<u64>) -> Report {
        let mut report = self.report.clone();
        report.applies = self
            .ready
            .iter()
            .map(|r| {
                entry(
                    r,
                    false,
                    "queued: applied when a slot of the topic's maxConcurrent frees".into(),
                    None,
                )
            })
            .collect();
        report.phase = Some("Queued");
        report.position = position;
        report
    }

    /// Each manifest's function uid, path and objects, in order.
    pub fn functions(&self) -> Vec<(FunctionUid, String, Vec<ObjectRef>)> {
        self.ready
            .iter()
            .map(|r| (r.function_uid.clone(), r.path.clone(), object_refs(r)))
            .collect()
    }
}

/// Renders, checks and resolves every manifest of the topic, and dry-runs
/// them when the topic has several objects or the request asked for a dry run.
#[tracing::instrument(skip_all, fields(topic = req.topic, request_uid = request_uid.as_str()))]
pub async fn prepare(
    ctx: &Context<'_>,
    req: Request<'_>,
    request_uid: RequestUid,
) -> Result<Prepared, PublishError> {
    let snapshot = &ctx.snapshot;
    let started = std::time::Instant::now();
    let rendered = if req.body.len() >= RENDER_ON_BLOCKING_POOL_BYTES {
        render_on_blocking_pool(ctx, &req, &request_uid).await?
    } else {
        render_topic(snapshot, ctx.policy, ctx.public_url, &req, &request_uid)?
    };
    crate::metrics::get().rendered(started.elapsed());
    // Kept for a queued run and a failed one (to publish it again).
    let params = req.params;
    let topic_name = rendered.topic.clone();
    let payload = rendered.payload;
    let rendered = rendered.manifests;

    // Kinds and namespaces, still before any apply.
    let mut ready: Vec<Rendered> = Vec::with_capacity(rendered.len());
    for RenderedManifest {
        path,
        function_uid,
        objects,
        uses_payload_secret,
    } in rendered
    {
        let mut with_targets = Vec::with_capacity(objects.len());
        for doc in objects {
            let target =
                ctx.applier
                    .target(&doc)
                    .await
                    .map_err(|source| PublishError::Cluster {
                        path: path.clone(),
                        source,
                    })?;
            ctx.policy
                .check_namespace(target.namespace.as_deref())
                .map_err(|source| PublishError::Policy {
                    path: path.clone(),
                    source,
                })?;
            with_targets.push((doc, target));
        }
        ready.push(Rendered {
            path,
            function_uid,
            objects: with_targets,
            uses_payload_secret,
        });
    }

    let topic = snapshot.topic(&topic_name);
    let result = topic.map(|t| t.result).unwrap_or_default();
    let retry = topic.and_then(|t| t.retry);
    let limit = match topic.and_then(|t| t.max_concurrent.map(|m| (m, t.overflow))) {
        Some((max, overflow)) if !req.dry_run => {
            // Every namespace a publish of the topic may reach, not only this
            // one's: with --allowed-namespaces, spreading Jobs over namespaces
            // (`?ns=`) cannot overshoot the limit. (A cluster-wide count would
            // also count another gitfaas' topic of the same name.)
            let mut namespaces: std::collections::BTreeSet<String> = ready
                .iter()
                .flat_map(|r| r.objects.iter())
                .filter(|(_, t)| t.is_job())
                .filter_map(|(_, t)| t.namespace.clone())
                .collect();
            if let Some(allowed) = ctx.policy.allowed_namespaces() {
                namespaces.extend(allowed.iter().cloned());
            }
            namespaces.insert(ctx.applier.default_namespace().to_string());
            Some(Limit {
                max,
                overflow,
                namespaces,
            })
        }
        _ => None,
    };

    let mut report = Report {
        request_uid,
        applies: Vec::with_capacity(ready.len()),
        error: false,
        message: None,
        topic: topic_name,
        commit: snapshot.commit.clone(),
        dry_run: req.dry_run,
        failure: None,
        phase: None,
        position: None,
    };
    let object_count: usize = ready.iter().map(|r| r.objects.len()).sum();

    if req.dry_run || object_count > 1 {
        if let Some((failed_path, error)) = dry_run_all(ctx.applier, &report.topic, &ready).await {
            for r in &ready {
                report.applies.push(entry(
                    r,
                    true,
                    if r.path == failed_path {
                        format!("dry run failed: {error}")
                    } else {
                        format!("not applied: the dry run of {failed_path} failed")
                    },
                    None,
                ));
            }
            report.error = true;
            report.failure = Some(error.kind());
            report.message = Some(format!(
                "nothing was applied: the dry run of {failed_path} failed: {error}"
            ));
            return Err(PublishError::DryRun {
                path: failed_path,
                source: error,
                report: Box::new(report),
            });
        }
    }
    Ok(Prepared {
        report,
        ready,
        payload,
        params,
        result,
        limit,
        retry,
    })
}

/// The server-side dry run of every object, with the rules of a real
/// publish: an object that exists and is not the topic's is found here,
/// before anything is applied.
async fn dry_run_all(
    applier: &Applier,
    topic: &str,
    ready: &[Rendered],
) -> Option<(String, ApplyError)> {
    let description = owner_description(topic);
    let labels = owner_labels(topic);
    let owner = Owner {
        labels: &labels,
        description: &description,
    };
    for r in ready {
        for (doc, target) in &r.objects {
            if let Err(e) = applier.put(target, doc, &owner, true).await {
                return Some((r.path.clone(), e.error));
            }
        }
    }
    None
}
