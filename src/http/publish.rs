//! `POST /publish/{topic}`: reads the body (bounded) and the query, then runs
//! `publish::prepare` / `execute`, recording the request in the store before
//! anything is applied. Query parameters `dryRun` and `wait` are consumed
//! here; every other one is a template variable. Headers: `Idempotency-Key`
//! (a retried publish returns the first one's answer and creates nothing),
//! `X-Callback-Url` (POSTed the request's view when its Jobs have finished).

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::report_status;
use super::{read_body, ApiError, AppState, Authenticated};
use crate::publish::{self, Context, Request};
use crate::store::{CallbackState, Claim, Durability, Fingerprint, StoredFunction};

/// The longest `?wait=` honoured; longer values are capped.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

struct Controls {
    dry_run: bool,
    wait: Option<Duration>,
    params: Vec<(String, String)>,
}

fn controls(query: &str, limits: &crate::settings::Limits) -> Result<Controls, ApiError> {
    let query = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?
        .into_inner();
    if query.len() > limits.max_query_params {
        return Err(ApiError::BadRequest(format!(
            "{} query parameters; at most {} are accepted (--max-query-params): send bulk data in the body",
            query.len(),
            limits.max_query_params
        )));
    }
    if let Some((k, v)) = query.iter().find(|(_, v)| v.len() > limits.max_param_bytes) {
        return Err(ApiError::BadRequest(format!(
            "query parameter `{k}` is {} bytes; at most {} are accepted (--max-param-bytes): send bulk data in the body",
            v.len(),
            limits.max_param_bytes
        )));
    }
    let mut c = Controls {
        dry_run: false,
        wait: None,
        params: Vec::with_capacity(query.len()),
    };
    for (k, v) in query {
        match k.as_str() {
            "dryRun" => {
                c.dry_run = match v.as_str() {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "dryRun={other}: use dryRun=true or dryRun=false"
                        )))
                    }
                }
            }
            "wait" => {
                let d = humantime::parse_duration(&v).map_err(|e| {
                    ApiError::BadRequest(format!("wait={v}: {e} (use e.g. wait=30s or wait=2m)"))
                })?;
                c.wait = Some(d.min(MAX_WAIT));
            }
            _ => c.params.push((k, v)),
        }
    }
    Ok(c)
}

fn header_value(req: &HttpRequest, name: &str) -> Result<Option<String>, ApiError> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim().to_string()))
            .map_err(|_| ApiError::BadRequest(format!("header {name} must be visible ASCII"))),
    }
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let key = header_value(req, "Idempotency-Key")?;
    if let Some(k) = &key {
        if k.is_empty() || k.len() > 255 {
            return Err(ApiError::BadRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good choice)".into(),
            ));
        }
    }
    Ok(key)
}

/// The callback URL, refused here when the rules can tell without a lookup
/// (scheme, IP literal, metadata name); a host name is checked on the
/// addresses it resolves to, when the callback is delivered.
fn callback_url(
    req: &HttpRequest,
    targets: &crate::callback::Targets,
) -> Result<Option<String>, ApiError> {
    let url = header_value(req, "X-Callback-Url")?;
    if let Some(u) = &url {
        targets
            .check(u)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    Ok(url)
}

fn location(request_uid: &str) -> (header::HeaderName, String) {
    (header::LOCATION, format!("/requests/{request_uid}"))
}

pub async fn publish(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    use tracing::Instrument;
    let topic = path.into_inner();
    // The uid exists from the first line, so every log line of the publish carries it.
    let request_uid = publish::new_request_uid();
    let span = tracing::info_span!("publish", topic, request_uid);
    // The metric's dry run is the one the publish made: decided by the same
    // parse of the query (`dryRun=false` contains "dryRun" and is not one).
    let dry_run = controls(req.query_string(), &state.limits).is_ok_and(|c| c.dry_run);
    let result = publish_inner(
        req,
        auth.caller,
        topic.clone(),
        request_uid,
        payload,
        state.clone(),
    )
    .instrument(span.clone())
    .await
    .map_err(|e| {
        span.in_scope(|| e.log());
        ApiError::Logged(Box::new(e))
    });
    let outcome = match &result {
        Ok(r) if r.headers().contains_key("idempotent-replayed") => "replayed",
        Ok(_) if dry_run => "dry_run",
        Ok(_) => "applied",
        Err(ApiError::Logged(e)) if matches!(**e, ApiError::PartialApply(_)) => "failed",
        Err(e) if actix_web::ResponseError::status_code(e).is_client_error() => "refused",
        Err(_) => "failed",
    };
    let known = state
        .syncer
        .snapshot()
        .is_some_and(|s| s.topic(&topic).is_some());
    crate::metrics::get().publish(if known { &topic } else { "unknown" }, outcome);
    result
}

async fn publish_inner(
    req: HttpRequest,
    caller: String,
    topic: String,
    request_uid: String,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Backpressure: beyond the limit, refuse at once rather than queue.
    let permit = state
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooMany {
            message: format!(
                "{} publishes are already in flight (--max-in-flight): retry shortly",
                state.limits.max_in_flight
            ),
            retry_after: 1,
        })?;
    let (body, _) = read_body(&req, payload, state.max_payload_bytes).await?;
    let controls = controls(req.query_string(), &state.limits)?;
    // Waits are bounded before anything is applied, so a 429 is safe to retry.
    let _waiter = match controls.wait {
        Some(_) => Some(state.waiters.clone().try_acquire_owned().map_err(|_| {
            ApiError::TooMany {
                message: format!(
                    "{} publishes are already waiting (--max-waiters); nothing was applied: retry, or publish without ?wait= and follow /requests/{{requestUid}}",
                    state.limits.max_waiters
                ),
                retry_after: 1,
            }
        })?),
        None => None,
    };
    // A key is the caller's own (IETF idempotency draft): two callers'
    // equal keys are two keys.
    let idempotency = idempotency_key(&req)?.map(|k| format!("{caller}/{k}"));
    let callback = callback_url(&req, state.lifecycle.callback_targets())?;
    let store = &state.lifecycle.store;

    let snapshot = state.syncer.snapshot().ok_or_else(|| {
        let why = state
            .syncer
            .status()
            .last_error
            .map(|e| e.message)
            .unwrap_or_else(|| "it is still running".into());
        publish::PublishError::NoSnapshot(why)
    })?;

    let fingerprint = Fingerprint::of(&controls.params, &body);
    let claimed = match (&idempotency, controls.dry_run) {
        (Some(key), false) => match store
            .claim_idempotency(
                key,
                &topic,
                &fingerprint,
                &request_uid,
                state.limits.idempotency_lease,
            )
            .await?
        {
            Claim::Fresh => Some(key.clone()),
            Claim::Existing {
                request_uid: first,
                topic: first_topic,
                fingerprint: first_fingerprint,
            } => {
                let asked = Asked {
                    topic: &topic,
                    fingerprint: &fingerprint,
                };
                let first = First {
                    uid: &first,
                    topic: &first_topic,
                    fingerprint: &first_fingerprint,
                };
                return replay(&state, shown_key(key), asked, first).await;
            }
        },
        _ => None,
    };
    let release = |state: web::Data<AppState>, key: Option<String>, uid: String| async move {
        if let Some(key) = key {
            if let Err(e) = state.lifecycle.store.release_idempotency(&key, &uid).await {
                tracing::warn!(error = %e, "releasing the idempotency key failed");
            }
        }
    };

    let ctx = Context {
        locks: &state.topic_locks,
        snapshot,
        policy: &state.policy,
        applier: &state.applier,
        public_url: &state.public_url,
    };
    let prepared = match publish::prepare(
        &ctx,
        Request {
            topic: &topic,
            body: &body,
            params: controls.params,
            dry_run: controls.dry_run,
        },
        request_uid.clone(),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            release(state.clone(), claimed, request_uid).await;
            return Err(e.into());
        }
    };
    if prepared.dry_run() {
        let report = publish::execute(&ctx, prepared).await;
        return Ok(HttpResponse::Ok().json(report));
    }

    // Recorded before the first apply: a function may answer as soon as its pod runs.
    let mut record = store.new_request(prepared.request_uid(), prepared.topic(), prepared.commit());
    record.functions = prepared
        .functions()
        .into_iter()
        .map(|(function_uid, path, objects)| StoredFunction {
            function_uid,
            path,
            objects,
        })
        .collect();
    record.callback = callback.map(|url| CallbackState {
        url,
        delivered: false,
        abandoned: false,
        attempts: Vec::new(),
    });
    // Not yet durable: the group commit covers it within milliseconds, and a
    // publish does not wait for a disk flush (see `store`).
    if let Err(e) = state.lifecycle.record(&record, Durability::Soon).await {
        if claimed.is_some() {
            // Idempotency cannot be promised without the store: apply nothing.
            release(state.clone(), claimed, request_uid).await;
            return Err(e.into());
        }
        // Without a key the publish goes on; the record waits in memory.
    }

    let report = publish::execute(&ctx, prepared).await;
    let status = report_status(&report);
    record.report = serde_json::to_value(&report).ok();
    record.status = Some(status.as_u16());
    // On failure the record is kept in memory and written when the store is
    // back. A keyed publish promises its answer across a restart: on disk first.
    let durability = if claimed.is_some() {
        Durability::Now
    } else {
        Durability::Soon
    };
    let _ = state.lifecycle.record(&record, durability).await;
    if let Some(key) = &claimed {
        // Done: the claim now holds for the expiration time, past its lease.
        if let Err(e) = store.complete_idempotency(key, &record.request_uid).await {
            tracing::warn!(error = %e, "completing the idempotency claim failed; it lapses with its lease");
        }
    }
    if report.error {
        return Err(ApiError::PartialApply(Box::new(report)));
    }
    if record.callback.is_some() {
        state.lifecycle.spawn_callback(record.request_uid.clone());
    }
    // Applied: the in-flight permit bounds work, not waiting.
    drop(permit);
    if let Some(wait) = controls.wait {
        let deadline = tokio::time::Instant::now() + wait;
        let finished = tokio::select! {
            finished = state.lifecycle.wait(&record, deadline) => finished?,
            // Nobody to answer: the waiter slot and the watch are let go.
            () = crate::http::client::gone(&req) => {
                tracing::debug!("the client of a waiting publish went away");
                return Ok(HttpResponse::build(StatusCode::ACCEPTED).finish());
            }
        };
        let view = state.lifecycle.view_of(&record).await?;
        let code = if finished && view.done {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        return Ok(HttpResponse::build(code)
            .insert_header(location(&record.request_uid))
            .json(view));
    }
    Ok(HttpResponse::build(status)
        .insert_header(location(&record.request_uid))
        .json(report))
}

/// The key as the caller sent it (without the caller's scope).
fn shown_key(scoped: &str) -> &str {
    scoped.split_once('/').map_or(scoped, |(_, k)| k)
}

/// The publish asked now, for [`replay`].
struct Asked<'a> {
    topic: &'a str,
    fingerprint: &'a Fingerprint,
}

/// The publish that holds the key, for [`replay`].
struct First<'a> {
    uid: &'a str,
    topic: &'a str,
    fingerprint: &'a Fingerprint,
}

/// Answers a publish whose Idempotency-Key an earlier publish holds: its
/// answer if it is the same request, 422 naming what differs if not.
async fn replay(
    state: &AppState,
    key: &str,
    asked: Asked<'_>,
    first: First<'_>,
) -> Result<HttpResponse, ApiError> {
    let differs = if first.topic != asked.topic {
        Some(format!(
            "the topic (`{}`, now `{}`)",
            first.topic, asked.topic
        ))
    } else if *first.fingerprint == Fingerprint::default() {
        // A claim stored before fingerprints were kept: the topic is all it says.
        None
    } else if first.fingerprint.params != asked.fingerprint.params {
        Some("the query parameters".to_string())
    } else if first.fingerprint.body != asked.fingerprint.body {
        Some("the body".to_string())
    } else {
        None
    };
    if let Some(what) = differs {
        return Err(ApiError::Unprocessable(format!(
            "Idempotency-Key `{key}` was used for another request ({what} differ): a retry must repeat the same request; use a new key for a different publish"
        )));
    }
    let first = first.uid;
    let record = state.lifecycle.store.request(first).await?;
    match record.and_then(|r| Some((r.report?, r.status?))) {
        Some((report, status)) => {
            tracing::info!(request_uid = first, "idempotent replay");
            Ok(HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED))
                .insert_header(location(first))
                .insert_header(("Idempotent-Replayed", "true"))
                .json(report))
        }
        None => Err(ApiError::Conflict(format!(
            "a publish with Idempotency-Key `{key}` ({first}) is still in progress: retry in a moment (if that publish died, the key is free again after --idempotency-lease, {}s)",
            state.limits.idempotency_lease.as_secs()
        ))),
    }
}
