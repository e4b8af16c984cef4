//! One publish, from request to report: variables → render every manifest
//! of the topic → structure check → gitfaas labels → name rules → policy →
//! resolve kinds → (dry run when the topic has several objects) → create, or
//! update the topic's own objects.
//!
//! All or nothing per publish: every manifest is rendered and checked, and
//! every kind resolved, before anything is applied; a topic of several objects
//! is dry-run applied whole first (with the ownership rules, so an object that
//! exists and is not the topic's is found before anything is applied). If an
//! apply still fails, the objects this publish created — and only those, by
//! uid — are deleted again. This module is HTTP-agnostic.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use rand::Rng;
use serde::Serialize;
use serde_json::{Map, Value};

mod claim;
pub mod dispatch;
mod lean;
mod outcome;
pub mod rollbacks;
pub mod workflow;

use crate::catalog::Snapshot;
use crate::cluster::{Applier, ApplyError, Owner, Put, PutError, Target};
use crate::error::Code;
use crate::object::{
    ObjectRef, ANNOTATION_COMMIT, ANNOTATION_FUNCTION_UID, LABEL_MANAGED_BY, LABEL_REQUEST_UID,
    LABEL_TOPIC,
};
use crate::policy::{Policy, Violation};
use crate::tasks::Tasks;
use crate::template::{is_variable_name, TemplateError};

/// Built-in variables; a query parameter cannot override them.
pub const RESERVED: &[&str] = &[
    "PAYLOAD",
    "MESSAGE",
    "FUNCTION_UID",
    "REQUEST_UID",
    "REQUEST_UUID",
    "RANDOM",
    "TOPIC",
    "GITFAAS_URL",
    "PAYLOAD_SECRET",
    "TRACEPARENT",
];

/// `{{TRACEPARENT}}`: a W3C traceparent for a function of the run, its trace
/// id the caller's (or one made of the request uid's hex digits) and its
/// span id the function uid's first 16, so a function forwards the trace to
/// the next step.
pub fn traceparent(trace_id: Option<&str>, request_uid: &str, function_uid: &str) -> String {
    let hex = |s: &str, n: usize| -> String {
        let digits: String = s.chars().filter(char::is_ascii_hexdigit).take(n).collect();
        format!("{digits:0>n$}")
    };
    let trace = match trace_id {
        Some(t) => t.to_string(),
        None => hex(request_uid.trim_start_matches("r-"), 32),
    };
    let span = hex(function_uid.trim_start_matches("f-"), 16);
    format!("00-{trace}-{span}-01")
}

/// The key of the body in a `{{PAYLOAD_SECRET}}` Secret.
pub const PAYLOAD_SECRET_KEY: &str = "payload";

pub use crate::object::payload_secret_name;

/// Errors that fail a publish before anything is applied.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No snapshot has been loaded yet.
    #[error("no functions loaded yet: the first sync of the repository has not succeeded ({0}); see GET /status")]
    NoSnapshot(String),
    /// The topic is not in the live config.
    #[error("unknown topic `{topic}`: the repository's config (commit {commit}) has no such topic{}; known topics: {known}", did_you_mean(.topic))]
    UnknownTopic {
        /// The requested topic.
        topic: String,
        /// The commit serving.
        commit: String,
        /// Some known topic names.
        known: String,
    },
    /// A query parameter is not usable.
    #[error("{0}")]
    BadParameter(String),
    /// Variables used by the topic's manifests have no value.
    #[error("{}", missing_message(.names))]
    Missing {
        /// Every missing name.
        names: Vec<String>,
    },
    /// A value broke a manifest.
    #[error("{path}: {source}")]
    Template {
        /// The manifest.
        path: String,
        /// What is wrong.
        #[source]
        source: TemplateError,
    },
    /// A rendered name breaks Kubernetes' rules for it.
    #[error("{path}: {source}")]
    Name {
        /// The manifest.
        path: String,
        /// Which field and rule.
        #[source]
        source: crate::names::NameError,
    },
    /// Policy refuses an object.
    #[error("{path}: {source}")]
    Policy {
        /// The manifest.
        path: String,
        /// The violation.
        #[source]
        source: Violation,
    },
    /// A kind or namespace could not be resolved, or the cluster is unreachable.
    #[error("{path}: {source}")]
    Cluster {
        /// The manifest.
        path: String,
        /// What failed.
        #[source]
        source: ApplyError,
    },
    /// The topic has as many active Jobs as its `maxConcurrent`.
    #[error("topic `{topic}` already has {active} unfinished run(s), its maxConcurrent is {max}: retry when one has finished")]
    Busy {
        /// The topic.
        topic: String,
        /// Unfinished runs (or active Jobs counted, when more).
        active: u64,
        /// The limit.
        max: u32,
    },
    /// The topic's queue is full (`maxQueued`).
    #[error("topic `{topic}` has {active} unfinished run(s), its maxConcurrent is {max}, and {queued} waiting, as many as its maxQueued allows: retry when one has started, or raise the topic's maxQueued in config.json (at most 100000)")]
    QueueFull {
        /// The topic.
        topic: String,
        /// Slots held.
        active: u64,
        /// The limit.
        max: u32,
        /// Runs waiting.
        queued: u64,
    },
    /// The run does not fit in what the topic's queue may hold (`maxQueuedBytes`).
    #[error("topic `{topic}` has {active} unfinished run(s), its maxConcurrent is {max}, and {queued} waiting that take {queued_bytes} bytes: this run ({run_bytes} bytes, its manifests and its body) would pass the topic's maxQueuedBytes ({max_bytes}): retry when one has started, send a smaller body, or raise maxQueuedBytes in config.json (at most 1073741824, 1 GiB)")]
    QueueFullOfBytes {
        /// The topic.
        topic: String,
        /// Slots held.
        active: u64,
        /// The limit.
        max: u32,
        /// Runs waiting.
        queued: u64,
        /// What they take.
        queued_bytes: u64,
        /// What this one would.
        run_bytes: u64,
        /// `maxQueuedBytes`.
        max_bytes: u64,
    },
    /// A fault of gitfaas itself.
    #[error("{0}")]
    Internal(String),
    /// The server-side dry run of the topic failed: nothing was applied.
    #[error("nothing was applied: the dry run of {path} failed: {source}")]
    DryRun {
        /// The manifest that failed.
        path: String,
        /// Why.
        #[source]
        source: ApplyError,
        /// The report, every entry marked.
        report: Box<Report>,
    },
}

impl PublishError {
    /// What kind of failure this is; a cluster failure or a failed dry run
    /// is its apply error's kind.
    pub fn kind(&self) -> Code {
        match self {
            PublishError::NoSnapshot(_) => Code::NotReady,
            PublishError::UnknownTopic { .. } => Code::UnknownTopic,
            PublishError::BadParameter(_) => Code::BadParameter,
            PublishError::Missing { .. } => Code::MissingVariable,
            PublishError::Template { .. } => Code::InvalidValue,
            PublishError::Name { .. } => Code::InvalidName,
            PublishError::Policy { .. } => Code::PolicyViolation,
            PublishError::Busy { .. }
            | PublishError::QueueFull { .. }
            | PublishError::QueueFullOfBytes { .. } => Code::TopicBusy,
            PublishError::Internal(_) => Code::Internal,
            PublishError::Cluster { source, .. } | PublishError::DryRun { source, .. } => {
                source.kind()
            }
        }
    }

    /// Every code [`kind`](Self::kind) can give: what the route table
    /// (`http::routes`) checks each route's documented errors against. The
    /// match has no wildcard, like kind's: a new variant does not compile
    /// until its codes are listed here too.
    pub fn codes() -> Vec<Code> {
        let _every_variant_is_listed = |e: &Self| match e {
            PublishError::NoSnapshot(_)
            | PublishError::UnknownTopic { .. }
            | PublishError::BadParameter(_)
            | PublishError::Missing { .. }
            | PublishError::Template { .. }
            | PublishError::Name { .. }
            | PublishError::Policy { .. }
            | PublishError::Busy { .. }
            | PublishError::QueueFull { .. }
            | PublishError::QueueFullOfBytes { .. }
            | PublishError::Internal(_)
            | PublishError::Cluster { .. }
            | PublishError::DryRun { .. } => (),
        };
        [
            vec![
                Code::NotReady,
                Code::UnknownTopic,
                Code::BadParameter,
                Code::MissingVariable,
                Code::InvalidValue,
                Code::InvalidName,
                Code::PolicyViolation,
                Code::TopicBusy,
                Code::Internal,
            ],
            crate::cluster::ApplyError::codes(),
        ]
        .concat()
    }
}

/// The message of [`PublishError::Missing`]; total, an empty list included
/// (indexing `names[0]` in the format string panicked on one).
fn missing_message(names: &[String]) -> String {
    let (plural, pronoun) = match names.len() {
        1 => ("", "it"),
        _ => ("s", "them"),
    };
    let listed = match names.len() {
        0 => String::new(),
        _ => format!(": {}", names.join(", ")),
    };
    let example = names.first().map_or("name", String::as_str);
    format!(
        "missing template variable{plural}{listed}; pass {pronoun} as query parameter{plural} (e.g. ?{example}=value)"
    )
}

/// For a topic written with `&` where `?` was meant (the Python README's
/// `/publish/mytopic&replicas=2`): the URL that was meant.
fn did_you_mean(topic: &str) -> String {
    match topic.split_once('&') {
        Some((name, query)) if !name.is_empty() && query.contains('=') => {
            format!("; did you mean `/publish/{name}?{query}` (query parameters start with `?`)")
        }
        _ => String::new(),
    }
}

/// One manifest's outcome; `error`, `path` and `message` are the Python version's fields.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyEntry {
    /// Whether this manifest failed.
    pub error: bool,
    /// The manifest's path in the repository.
    pub path: String,
    /// What happened.
    pub message: String,
    /// The function uid given to this manifest.
    pub function_uid: String,
    /// The objects it rendered to.
    pub objects: Vec<ObjectRef>,
    /// With `dryRun`: the rendered objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered: Option<Vec<Value>>,
}

/// A publish's answer, compatible with the Python version's
/// `{"requestUid", "applies", "error"}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The request uid.
    pub request_uid: String,
    /// One entry per manifest.
    pub applies: Vec<ApplyEntry>,
    /// Whether any manifest failed.
    pub error: bool,
    /// A summary when something failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The topic.
    pub topic: String,
    /// The commit the manifests came from.
    pub commit: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// `Queued` when the run waits in its topic's queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// A queued run's place in the queue (1 is next), as it was answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// The kind of the first apply failure, for the HTTP status.
    #[serde(skip)]
    pub failure: Option<Code>,
}

impl Report {
    /// The HTTP status this report answers with.
    pub fn status(&self) -> u16 {
        if self.error {
            self.failure.unwrap_or(Code::Internal).status()
        } else if self.dry_run {
            200
        } else {
            202
        }
    }
}

/// What a publish needs besides the request.
pub struct Context<'a> {
    /// The snapshot the whole publish uses.
    pub snapshot: Arc<Snapshot>,
    /// What may be applied.
    pub policy: &'a Policy,
    /// The cluster.
    pub applier: &'a Arc<Applier>,
    /// {{GITFAAS_URL}}.
    pub public_url: &'a str,
}

/// A publish request, already read from HTTP (or the CLI).
pub struct Request<'a> {
    /// The topic as requested.
    pub topic: &'a str,
    /// The body.
    pub body: &'a [u8],
    /// Query parameters that are template variables.
    pub params: Vec<(String, String)>,
    /// Apply with server-side dry run and return the rendered objects.
    pub dry_run: bool,
    /// The W3C trace id the run continues; None starts one (the request
    /// uid's hex digits).
    pub trace_id: Option<&'a str>,
}

/// One rendered manifest, ready to apply.
struct Rendered {
    path: String,
    function_uid: String,
    objects: Vec<(Value, Target)>,
    uses_payload_secret: bool,
}

/// A fresh request uid, `r-<uuid>`.
pub fn new_request_uid() -> String {
    format!("r-{}", uuid::Uuid::new_v4())
}

/// A random suffix safe in a Kubernetes object name: 10 lowercase letters and
/// digits, starting with a letter.
pub fn random_suffix() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut s = String::with_capacity(10);
    s.push(LETTERS[rng.random_range(0..LETTERS.len())] as char);
    for _ in 0..9 {
        s.push(ALNUM[rng.random_range(0..ALNUM.len())] as char);
    }
    s
}

/// Checks query parameters: valid names, no reserved name, no duplicate.
pub fn check_params(params: &[(String, String)]) -> Result<BTreeMap<String, String>, PublishError> {
    let mut out = BTreeMap::new();
    for (k, v) in params {
        if RESERVED.contains(&k.as_str()) {
            return Err(PublishError::BadParameter(format!(
                "query parameter `{k}` is reserved: gitfaas sets {{{{{k}}}}} itself; rename the variable in your manifest"
            )));
        }
        if !is_variable_name(k) {
            return Err(PublishError::BadParameter(format!(
                "query parameter `{k}` is not a valid variable name: use letters, digits, `_` and `-` (at most 128)"
            )));
        }
        if out.insert(k.clone(), v.clone()).is_some() {
            return Err(PublishError::BadParameter(format!(
                "query parameter `{k}` is given twice: give it once"
            )));
        }
    }
    Ok(out)
}

/// A publish that passed every check and (for several objects, or a dry-run
/// request) the server-side dry run: nothing is applied yet.
pub struct Prepared {
    report: Report,
    ready: Vec<Rendered>,
    payload: String,
    /// The query parameters that were template variables.
    params: Vec<(String, String)>,
    /// Where the topic's responses come from.
    result: crate::catalog::ResultSource,
    /// The topic's `maxConcurrent`, when it has one.
    limit: Option<Limit>,
    /// The topic's `retry`, when it has one.
    retry: Option<crate::catalog::Retry>,
}

/// A topic's `maxConcurrent` as one publish meets it.
#[derive(Debug, Clone)]
pub struct Limit {
    /// `maxConcurrent`.
    pub max: u32,
    /// What a publish beyond it gets.
    pub overflow: crate::catalog::Overflow,
    /// Where its active Jobs are counted.
    pub namespaces: std::collections::BTreeSet<String>,
}

/// A prepared publish as its topic's queue keeps it: the rendered objects
/// (their kinds are resolved again when it is dispatched), so the run
/// applies what its publish answered — the same function uids and names —
/// whatever the repository says by then. The body is kept once: in
/// `payload`, and taken out of the objects' strings ([`lean`]).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedRun {
    request_uid: String,
    topic: String,
    commit: String,
    payload: String,
    #[serde(default)]
    params: Vec<(String, String)>,
    result_from_stdout: bool,
    functions: Vec<QueuedFunction>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueuedFunction {
    path: String,
    function_uid: String,
    /// The objects whole, when none holds the payload; left out otherwise,
    /// so that a gitfaas that predates `lean` cannot read the run (and
    /// drops it) rather than apply it without its payload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    objects: Vec<Value>,
    /// The objects with the payload taken out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lean: Option<lean::Lean>,
    uses_payload_secret: bool,
}

impl QueuedFunction {
    /// The objects as they were rendered.
    fn objects(self, payload: &str) -> Result<(String, Vec<Value>), PublishError> {
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
    pub fn request_uid(&self) -> &str {
        &self.request_uid
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
                status: None,
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

impl Prepared {
    /// The request uid.
    pub fn request_uid(&self) -> &str {
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
        report.status = Some("Queued");
        report.position = position;
        report
    }

    /// Each manifest's function uid, path and objects, in order.
    pub fn functions(&self) -> Vec<(String, String, Vec<ObjectRef>)> {
        self.ready
            .iter()
            .map(|r| (r.function_uid.clone(), r.path.clone(), object_refs(r)))
            .collect()
    }
}

/// A topic rendered for one request: every manifest's function uid and its
/// objects, structure-checked, marked with gitfaas' labels, and policy-checked.
/// No cluster is involved: `gitfaas render` prints exactly this.
pub struct RenderedTopic {
    /// The topic's name.
    pub topic: String,
    /// (path, function uid, objects) per manifest, in config order.
    pub manifests: Vec<RenderedManifest>,
    /// The body, base64-encoded.
    pub payload: String,
}

/// One manifest rendered for a request.
pub struct RenderedManifest {
    /// Its path in the repository.
    pub path: String,
    /// Its function uid.
    pub function_uid: String,
    /// Its objects.
    pub objects: Vec<Value>,
    /// Whether it refers to the request's payload Secret.
    pub uses_payload_secret: bool,
}

/// Renders every manifest of `req.topic` from `snapshot`.
pub fn render_topic(
    snapshot: &Snapshot,
    policy: &Policy,
    public_url: &str,
    req: &Request<'_>,
    request_uid: &str,
) -> Result<RenderedTopic, PublishError> {
    let topic = snapshot.topic(req.topic).ok_or_else(|| {
        let known: Vec<&str> = snapshot
            .topics
            .keys()
            .take(10)
            .map(|t| t.as_ref())
            .collect();
        PublishError::UnknownTopic {
            topic: req.topic.to_string(),
            commit: snapshot.commit.clone(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        }
    })?;
    let params = check_params(&req.params)?;
    let payload = base64::engine::general_purpose::STANDARD.encode(req.body);

    // Missing variables across every manifest, reported together.
    let mut missing: Vec<String> = Vec::new();
    for m in &topic.manifests {
        for v in m.template.variables() {
            if !RESERVED.contains(&v.as_str()) && !params.contains_key(v) && !missing.contains(v) {
                missing.push(v.clone());
            }
        }
    }
    if !missing.is_empty() {
        return Err(PublishError::Missing { names: missing });
    }

    let mut rendered = Vec::with_capacity(topic.manifests.len());
    for manifest in &topic.manifests {
        let path = manifest.path.to_string();
        let function_uid = format!("f-{}-{}", uuid::Uuid::new_v4(), request_uid);
        let random = random_suffix();
        let secret = payload_secret_name(request_uid);
        let trace = traceparent(req.trace_id, request_uid, &function_uid);
        let lookup = |name: &str| -> Option<&str> {
            match name {
                "PAYLOAD" | "MESSAGE" => Some(payload.as_str()),
                "FUNCTION_UID" => Some(function_uid.as_str()),
                "REQUEST_UID" | "REQUEST_UUID" => Some(request_uid),
                "RANDOM" => Some(random.as_str()),
                "TOPIC" => Some(topic.name.as_ref()),
                "GITFAAS_URL" => Some(public_url),
                "PAYLOAD_SECRET" => Some(secret.as_str()),
                "TRACEPARENT" => Some(trace.as_str()),
                other => params.get(other).map(String::as_str),
            }
        };
        let docs =
            manifest
                .template
                .render_checked(lookup)
                .map_err(|source| PublishError::Template {
                    path: path.clone(),
                    source,
                })?;
        let mut objects = Vec::with_capacity(docs.len());
        for mut doc in docs {
            mark(
                &mut doc,
                topic.name.as_ref(),
                request_uid,
                &function_uid,
                &snapshot.commit,
            );
            crate::names::check_object(&doc).map_err(|source| PublishError::Name {
                path: path.clone(),
                source,
            })?;
            policy
                .check_content(&doc)
                .map_err(|source| PublishError::Policy {
                    path: path.clone(),
                    source,
                })?;
            objects.push(doc);
        }
        rendered.push(RenderedManifest {
            path,
            function_uid,
            objects,
            uses_payload_secret: manifest.template.variables().contains("PAYLOAD_SECRET"),
        });
    }

    Ok(RenderedTopic {
        topic: topic.name.to_string(),
        manifests: rendered,
        payload,
    })
}

/// From this body size on, rendering runs on tokio's blocking pool.
/// Encoding and parsing grow with the body (about 10 ms for 1 MiB in a
/// debug build), and on an HTTP worker's thread that time would stall every
/// other request of the worker; below it, the copy the pool needs costs
/// more than it saves.
const RENDER_ON_BLOCKING_POOL_BYTES: usize = 64 * 1024;

/// [`render_topic`] on the blocking pool, with owned copies of its inputs.
async fn render_on_blocking_pool(
    ctx: &Context<'_>,
    req: &Request<'_>,
    request_uid: &str,
) -> Result<RenderedTopic, PublishError> {
    let snapshot = Arc::clone(&ctx.snapshot);
    let policy = ctx.policy.clone();
    let public_url = ctx.public_url.to_string();
    let topic = req.topic.to_string();
    let body = req.body.to_vec();
    let params = req.params.clone();
    let dry_run = req.dry_run;
    let request_uid = request_uid.to_string();
    tokio::task::spawn_blocking(move || {
        let req = Request {
            topic: &topic,
            body: &body,
            params,
            dry_run,
            trace_id: None,
        };
        render_topic(&snapshot, &policy, &public_url, &req, &request_uid)
    })
    .await
    .map_err(|e| PublishError::Internal(format!("rendering stopped: {e}")))?
}

/// Renders, checks and resolves every manifest of the topic, and dry-runs
/// them when the topic has several objects or the request asked for a dry run.
#[tracing::instrument(skip_all, fields(topic = req.topic, request_uid = request_uid.as_str()))]
pub async fn prepare(
    ctx: &Context<'_>,
    req: Request<'_>,
    request_uid: String,
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
        status: None,
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

/// Applies a prepared publish (or, for a dry-run request, returns the
/// rendered objects). The payload Secret, when a manifest uses one, is
/// created first and owned by the applied objects afterwards. If an apply
/// fails (the dry run passed, so the API server went away or a race), what
/// this publish created is deleted again — only that, by uid, never an
/// object that existed before it: a topic never stays half-created; the
/// deletion is retried in the background until it succeeds.
#[tracing::instrument(skip_all, fields(topic = prepared.report.topic, request_uid = prepared.report.request_uid))]
pub async fn execute(
    applier: &Arc<Applier>,
    tasks: &Tasks,
    rollbacks: &Arc<rollbacks::Rollbacks>,
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
        request_uid = report.request_uid,
        manifests = report.applies.len(),
        error = report.error,
        "published"
    );
    report
}

/// The labels an existing object must carry for a publish of `topic` to
/// change it.
fn owner_labels(topic: &str) -> [(&'static str, &str); 2] {
    [(LABEL_MANAGED_BY, "gitfaas"), (LABEL_TOPIC, topic)]
}

fn owner_description(topic: &str) -> String {
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
    let name = payload_secret_name(&report.request_uid);
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
    rollbacks: &Arc<rollbacks::Rollbacks>,
    request_uid: String,
    mut undo: Vec<Undo>,
) {
    undo.reverse();
    let mut left = Vec::new();
    for u in undo {
        if let Err(e) = u.run(&applier, &request_uid).await {
            tracing::info!(object = u.target().describe(), error = %e, "rollback will be retried");
            left.push(u);
        }
    }
    if left.is_empty() {
        return;
    }
    // Stopped at shutdown (what is left is logged by the task report); the
    // objects keep their request-uid label for a later cleanup.
    let name = crate::tasks::TaskName::new("rollback retry").about(request_uid.clone());
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
                match u.run(&applier, &request_uid).await {
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

fn object_refs(r: &Rendered) -> Vec<ObjectRef> {
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

fn entry(r: &Rendered, error: bool, message: String, rendered: Option<Vec<Value>>) -> ApplyEntry {
    ApplyEntry {
        error,
        path: r.path.clone(),
        message,
        function_uid: r.function_uid.clone(),
        objects: object_refs(r),
        rendered,
    }
}

/// Sets gitfaas' labels and annotations on an object, and on the pod template
/// of a Job (and a CronJob's job template), so status, cleanup and metrics
/// can find everything a publish created.
pub fn mark(object: &mut Value, topic: &str, request_uid: &str, function_uid: &str, commit: &str) {
    let labels = [
        (LABEL_MANAGED_BY, "gitfaas"),
        (LABEL_TOPIC, topic),
        (LABEL_REQUEST_UID, request_uid),
    ];
    let annotations = [
        (ANNOTATION_FUNCTION_UID, function_uid),
        (ANNOTATION_COMMIT, commit),
    ];
    set_meta(object, &labels, &annotations);
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let batch = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with("batch/"));
    if !batch {
        return;
    }
    let pod_paths: &[&[&str]] = match kind.as_str() {
        "Job" => &[&["spec", "template"]],
        "CronJob" => &[
            &["spec", "jobTemplate"],
            &["spec", "jobTemplate", "spec", "template"],
        ],
        _ => &[],
    };
    for path in pod_paths {
        if let Some(t) = descend(object, path) {
            set_meta(t, &labels, &[(ANNOTATION_FUNCTION_UID, function_uid)]);
        }
    }
}

fn descend<'v>(mut v: &'v mut Value, path: &[&str]) -> Option<&'v mut Value> {
    for key in path {
        v = v.get_mut(*key)?;
    }
    v.is_object().then_some(v)
}

fn set_meta(object: &mut Value, labels: &[(&str, &str)], annotations: &[(&str, &str)]) {
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    for (field, pairs) in [("labels", labels), ("annotations", annotations)] {
        let map = meta
            .entry(field)
            .or_insert_with(|| Value::Object(Map::new()));
        if !map.is_object() {
            *map = Value::Object(Map::new());
        }
        if let Some(map) = map.as_object_mut() {
            for (k, v) in pairs {
                map.insert((*k).to_string(), Value::String((*v).to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
