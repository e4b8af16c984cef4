//! Rendering a topic: the built-in variables, the query parameters that
//! become variables, the fields of a JSON body (`{{body.…}}`, see `fields`),
//! every manifest rendered, structure-checked and marked
//! with gitfaas' labels. No cluster is involved: `gitfaas render` prints
//! exactly this.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use rand::Rng;
use serde_json::{Map, Value};

use super::PublishError;
use crate::catalog::Snapshot;
use crate::cloudevent::Attributes;
use crate::cluster::{Applier, Target};
use crate::object::{
    ANNOTATION_COMMIT, ANNOTATION_FUNCTION_UID, LABEL_MANAGED_BY, LABEL_REQUEST_UID, LABEL_TOPIC,
};
use crate::policy::Policy;
use crate::template::{is_body_path, is_variable_name, BODY_PREFIX};
use crate::uid::{FunctionUid, RequestUid};

pub use crate::template::{RESERVED, SCHEDULED_TIME};

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
    /// The CloudEvent the body is the data of: its attributes fill
    /// `{{CE_ID}}` and the others. None for a plain publish, whose topic
    /// then may not use them.
    pub cloudevent: Option<&'a Attributes>,
    /// `{{SCHEDULED_TIME}}`: the tick a schedule fires the run for (RFC
    /// 3339, UTC); None for any other publish, and then a topic whose
    /// manifests use it is refused as a missing variable.
    pub scheduled_time: Option<&'a str>,
}

/// One rendered manifest, ready to apply.
pub(super) struct Rendered {
    pub(super) path: String,
    pub(super) function_uid: FunctionUid,
    pub(super) objects: Vec<(Value, Target)>,
    pub(super) uses_payload_secret: bool,
}

/// A fresh request uid, `r-<uuid>`.
pub fn new_request_uid() -> RequestUid {
    RequestUid::new()
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
        if k.starts_with(BODY_PREFIX) {
            return Err(PublishError::BadParameter(format!(
                "query parameter `{k}` names a field of the body: {{{{{k}}}}} is filled from a JSON body, not from the query; send the field in the body"
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
    pub function_uid: FunctionUid,
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
    request_uid: &RequestUid,
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

    // Missing variables across every manifest, reported together; a
    // CloudEvent's attributes first, which no query parameter can give;
    // fields of the body are the body's (below).
    let mut missing: Vec<String> = Vec::new();
    let mut not_an_event: Vec<String> = Vec::new();
    for m in &topic.manifests {
        for v in m.template.variables() {
            if req.cloudevent.is_none() && Attributes::is_variable(v) {
                if !not_an_event.contains(v) {
                    not_an_event.push(v.clone());
                }
                continue;
            }
            let given = match v.as_str() {
                SCHEDULED_TIME => req.scheduled_time.is_some(),
                name => RESERVED.contains(&name) || is_body_path(name) || params.contains_key(v),
            };
            if !given && !missing.contains(v) {
                missing.push(v.clone());
            }
        }
    }
    if !not_an_event.is_empty() {
        return Err(PublishError::NotACloudEvent {
            names: not_an_event,
        });
    }
    if !missing.is_empty() {
        return Err(PublishError::Missing { names: missing });
    }
    let fields = super::fields::resolve(
        req.body,
        topic
            .manifests
            .iter()
            .flat_map(|m| m.template.variables())
            .map(String::as_str)
            .filter(|v| is_body_path(v)),
    )
    .map_err(PublishError::BodyField)?;

    let mut rendered = Vec::with_capacity(topic.manifests.len());
    for manifest in &topic.manifests {
        let path = manifest.path.to_string();
        let function_uid = FunctionUid::new(request_uid);
        let random = random_suffix();
        let secret = payload_secret_name(request_uid.as_str());
        let trace = traceparent(req.trace_id, request_uid.as_str(), function_uid.as_str());
        let lookup = |name: &str| -> Option<&str> {
            match name {
                "PAYLOAD" | "MESSAGE" => Some(payload.as_str()),
                "FUNCTION_UID" => Some(function_uid.as_str()),
                "REQUEST_UID" | "REQUEST_UUID" => Some(request_uid.as_str()),
                "RANDOM" => Some(random.as_str()),
                "TOPIC" => Some(topic.name.as_ref()),
                "GITFAAS_URL" => Some(public_url),
                "PAYLOAD_SECRET" => Some(secret.as_str()),
                "TRACEPARENT" => Some(trace.as_str()),
                other if is_body_path(other) => fields.get(other).map(String::as_str),
                SCHEDULED_TIME => req.scheduled_time,
                other => match req.cloudevent.and_then(|e| e.variable(other)) {
                    Some(value) => Some(value),
                    None => params.get(other).map(String::as_str),
                },
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
                request_uid.as_str(),
                function_uid.as_str(),
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
pub(super) const RENDER_ON_BLOCKING_POOL_BYTES: usize = 64 * 1024;

/// [`render_topic`] on the blocking pool, with owned copies of its inputs.
pub(super) async fn render_on_blocking_pool(
    ctx: &Context<'_>,
    req: &Request<'_>,
    request_uid: &RequestUid,
) -> Result<RenderedTopic, PublishError> {
    let snapshot = Arc::clone(&ctx.snapshot);
    let policy = ctx.policy.clone();
    let public_url = ctx.public_url.to_string();
    let topic = req.topic.to_string();
    let body = req.body.to_vec();
    let params = req.params.clone();
    let dry_run = req.dry_run;
    let trace_id = req.trace_id.map(str::to_string);
    let cloudevent = req.cloudevent.cloned();
    let scheduled_time = req.scheduled_time.map(str::to_string);
    let request_uid = request_uid.clone();
    tokio::task::spawn_blocking(move || {
        let req = Request {
            topic: &topic,
            body: &body,
            params,
            dry_run,
            trace_id: trace_id.as_deref(),
            cloudevent: cloudevent.as_ref(),
            scheduled_time: scheduled_time.as_deref(),
        };
        render_topic(&snapshot, &policy, &public_url, &req, &request_uid)
    })
    .await
    .map_err(|e| PublishError::Internal(format!("rendering stopped: {e}")))?
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
