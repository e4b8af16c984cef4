//! `POST /publish/{topic}`: parses the request — the body (bounded), or the
//! CloudEvent it is (`crate::cloudevent` reads it), the query (`dryRun`,
//! `wait`; every other parameter is a template variable), the headers
//! `Idempotency-Key` and `X-Callback-Url` — into a
//! [`publish::workflow::Order`], hands it to the [`Publisher`], and writes
//! its outcome.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::openapi::{PublishAnswer, StructuredCloudEvent, TemplateVariables};
use super::{read_any, read_body, ApiError, AppState, Authenticated};
use crate::cloudevent::{self, Attributes};
use crate::publish::workflow::{Order, Outcome, Publisher, MAX_WAIT};
use crate::publish::{self};
use crate::store::Trigger;
use crate::uid::{FunctionUid, IdempotencyKey, RequestUid};

struct Controls {
    dry_run: bool,
    wait: Option<Duration>,
    params: Vec<(String, String)>,
}

fn controls(query: &str, limits: &crate::settings::Limits) -> Result<Controls, ApiError> {
    let query = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?
        .into_inner();
    if query.len() > limits.max_query_params {
        return Err(ApiError::bad_request(format!(
            "{} query parameters; at most {} are accepted (--max-query-params): send bulk data in the body",
            query.len(),
            limits.max_query_params
        )));
    }
    if let Some((k, v)) = query.iter().find(|(_, v)| v.len() > limits.max_param_bytes) {
        return Err(ApiError::bad_request(format!(
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
                        return Err(ApiError::bad_request(format!(
                            "dryRun={other}: use dryRun=true or dryRun=false"
                        )))
                    }
                }
            }
            "wait" => {
                let d = humantime::parse_duration(&v).map_err(|e| {
                    ApiError::bad_request(format!("wait={v}: {e} (use e.g. wait=30s or wait=2m)"))
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
            .map_err(|_| ApiError::bad_request(format!("header {name} must be visible ASCII"))),
    }
}

/// `Idempotency-Key`, parsed once, here.
fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    header_value(req, "Idempotency-Key")?
        .map(|k| {
            IdempotencyKey::parse(&k).map_err(|_| {
                ApiError::bad_request(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good choice)",
                )
            })
        })
        .transpose()
}

/// `Gitfaas-Parent`: the function uid of the run that publishes this one
/// (a step of a pipeline sends its own `{{FUNCTION_UID}}`). A request uid is
/// refused: every reader of runs sees it, so it vouches for nothing, and
/// anyone could crowd a run's children with it.
fn parent(req: &HttpRequest) -> Result<Option<FunctionUid>, ApiError> {
    let Some(p) = header_value(req, "Gitfaas-Parent")? else {
        return Ok(None);
    };
    if p.starts_with("r-") {
        return Err(ApiError::bad_request(
            "Gitfaas-Parent takes the function uid of the publishing step, not a request uid: send {{FUNCTION_UID}} (f-…), which only the run's own functions hold; a request uid is visible to every reader and cannot vouch for the link",
        ));
    }
    match FunctionUid::parse(&p) {
        Ok(uid) if uid.is_well_formed() => Ok(Some(uid)),
        _ => Err(ApiError::bad_request(format!(
            "Gitfaas-Parent `{}` is not a function uid: send the function uid of the step that publishes this one (f-<uuid>-r-<uuid>; a function gets its own as {{{{FUNCTION_UID}}}})",
            crate::telemetry::uid_prefix(&p.escape_debug().to_string())
        ))),
    }
}

/// W3C `traceparent`: its trace id, which the run's `{{TRACEPARENT}}`
/// carries on. An invalid one is ignored, as the Trace Context
/// specification asks of a receiver (the run starts a trace of its own).
fn trace_id(req: &HttpRequest) -> Option<String> {
    parse_traceparent(req.headers().get("traceparent")?.to_str().ok()?)
}

/// The trace id of a valid `traceparent` value.
fn parse_traceparent(value: &str) -> Option<String> {
    let value = value.trim();
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(span, 16)
        && span.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    valid.then(|| trace.to_string())
}

/// Reads and drops what is left of a refused request's body, within the
/// body limit and a second. Answering before the body is read and closing
/// the connection with it unread makes the kernel reset the connection, and
/// a client still sending then sees "connection reset" instead of the 429.
async fn drain(mut payload: web::Payload, limit: usize) {
    use futures::StreamExt;
    let mut left = limit;
    let read = async {
        while let Some(Ok(chunk)) = payload.next().await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
}

/// The headers a topic's filter sees: lower-cased names (as actix keeps
/// them), a repeated header's values joined with `, `, without those that
/// carry credentials ([`crate::filter::hidden_header`]) and those whose
/// value is not text.
fn filter_headers(req: &HttpRequest) -> std::collections::BTreeMap<String, String> {
    let mut headers = std::collections::BTreeMap::<String, String>::new();
    for (name, value) in req.headers().iter() {
        let name = name.as_str();
        let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
            continue;
        };
        if crate::filter::hidden_header(name) {
            continue;
        }
        headers
            .entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
    headers
}

fn location(request_uid: &RequestUid) -> (header::HeaderName, String) {
    (header::LOCATION, format!("/requests/{request_uid}"))
}

/// Publish a message to a topic
///
/// Renders every manifest of the topic with the body (`{{PAYLOAD}}`, base64)
/// and the query parameters, checks the result against the policy, and
/// server-side applies it. Bodies may be JSON (validated), text,
/// octet-stream, form-urlencoded (taken as the raw bytes) or have no
/// content type, up to `--max-payload-bytes`. Beyond the topic's
/// `maxConcurrent`: 429 `topic_busy`, or with `"overflow": "queue"` 202
/// `Queued` until its queue holds `maxQueued` runs or would pass
/// `maxQueuedBytes` (the 429's message names the bound met). A JSON body's
/// fields fill `{{body.…}}` variables (400 `body_field` when one is
/// missing, null, an object or a list, or the body is not JSON). A topic
/// with a `filter` whose expression is false for the request answers 200
/// `{"filtered": true}`: nothing applied, no run recorded; one that cannot
/// be evaluated on it is 400 `filter_failed`.
///
/// A CloudEvent 1.0 is taken in binary mode (any `ce-` header makes the
/// request one: `ce-specversion: 1.0`, `ce-id`, `ce-source`, `ce-type`, the
/// optional `ce-subject`, `ce-time`, extensions, each percent-encoded as
/// the HTTP binding says; the body, of any content type, is its data) or
/// structured mode (`application/cloudevents+json`); batch mode is 415.
/// Its data is `{{PAYLOAD}}`, its attributes `{{CE_ID}}`, `{{CE_SOURCE}}`,
/// `{{CE_TYPE}}`, `{{CE_SUBJECT}}`, `{{CE_TIME}}`; its `source` and `id`
/// deduplicate it on the topic as an Idempotency-Key would. A bad event
/// is 400 `bad_cloudevent` naming the attribute.
#[utoipa::path(
    post,
    path = "/publish/{topic}",
    operation_id = "publish",
    tag = "publish",
    params(
        ("topic" = String, Path, min_length = 1, description = "The topic, as config.json names it"),
        ("dryRun" = Option<String>, Query, pattern = "^(true|1|false|0)?$",
            description = "`true` (or empty, or `1`): a server-side dry run that persists nothing and returns the rendered objects"),
        ("wait" = Option<String>, Query, example = "30s", pattern = "^[0-9]{1,6} ?(ms|s|m|h)( ?[0-9]{1,6} ?(ms|s|m|h))*$",
            description = "A duration (`30s`, `2m`, `1m 30s`; capped at 10 min; humantime's other spellings work too): answer when every applied Job has finished, with the `/requests` body"),
        ("variables" = Option<TemplateVariables>, Query, style = Form, explode,
            description = "Every other query parameter fills the template variable of its name (letters, digits, `_` and `-`, at most 128; not a name gitfaas sets itself)"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255,
            description = "The same key for the same request within the expiration time answers the first publish's answer and creates nothing"),
        ("X-Callback-Url" = Option<String>, Header, format = "uri",
            description = "Where to POST the `/requests` body once the run's Jobs have finished (https, no internal address; see the README)"),
        ("Gitfaas-Parent" = Option<String>, Header, pattern = "^f-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-r-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            description = "The function uid of the step that publishes this one (a pipeline step sends its own `{{FUNCTION_UID}}`, the capability only its run's functions hold): the run's `parent` is that function's run, and this run one of its `children`. It must be a live function uid; a request uid is refused (400)"),
        ("traceparent" = Option<String>, Header,
            description = "W3C Trace Context: the run carries its trace id on in `{{TRACEPARENT}}`; an invalid one is ignored"),
    ),
    request_body(
        description = "The message: `{{PAYLOAD}}` (and `{{MESSAGE}}`) in the manifests, base64-encoded; a CloudEvent's data. A CloudEvent in structured mode is `application/cloudevents+json`; batch mode (`application/cloudevents-batch+json`) is refused with 415",
        content(
            (Option<serde_json::Value> = "application/json"),
            (Option<String> = "text/plain"),
            (Option<std::collections::HashMap<String, String>> = "application/x-www-form-urlencoded"),
            ("application/octet-stream"),
            (StructuredCloudEvent = "application/cloudevents+json"),
        )
    ),
    responses(
        (status = 200, body = PublishAnswer,
            description = "A dry run (the report with the rendered objects), or a waited publish whose Jobs all finished (the `/requests` body); or an idempotent replay of one; or a publish the topic's filter skipped (`filtered`: nothing applied, no run recorded, no `Location`)",
            headers(
                ("Location" = String, description = "`/requests/{requestUid}` (not on a dry run, nor when filtered)"),
                ("Idempotent-Replayed" = String, description = "`true` when this is the answer of an earlier publish with the same Idempotency-Key"),
            ),
            links(
                ("getRequest" = (operation_id = "getRequest", parameters(("requestUid" = "$response.body#/requestUid")),
                    description = "What became of it")),
                ("getResponses" = (operation_id = "getResponses", parameters(("uid" = "$response.body#/requestUid")),
                    description = "Its functions' responses")),
            ),
        ),
        (status = 202, body = PublishAnswer,
            description = "Applied (the report), or a waited publish at its deadline (the `/requests` body so far); or an idempotent replay of one",
            headers(
                ("Location" = String, description = "`/requests/{requestUid}`"),
                ("Idempotent-Replayed" = String, description = "`true` when this is the answer of an earlier publish with the same Idempotency-Key"),
            ),
            links(
                ("getRequest" = (operation_id = "getRequest", parameters(("requestUid" = "$response.body#/requestUid")),
                    description = "What became of it")),
                ("getResponses" = (operation_id = "getResponses", parameters(("uid" = "$response.body#/requestUid")),
                    description = "Its functions' responses")),
                ("postResponse" = (operation_id = "postResponse", parameters(("uid" = "$response.body#/applies/0/functionUid")),
                    description = "Its first function answering (from a report: a waited publish at its deadline answers the `/requests` body, which lists the function uids under `functions`)")),
            ),
        ),
    ),
    security(("bearer" = []), ()),
)]
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
    super::span::record_publish(&topic, &request_uid);
    auth.may(&state, crate::identity::Permission::publish(&topic))
        .await?;
    state.access.callers.record(&auth.user, "publish", &topic);
    let span = tracing::info_span!("publish", topic, request_uid = request_uid.as_str());
    let publisher = &state.services.publisher();
    let result = handle(
        &req,
        auth.caller,
        topic.clone(),
        request_uid,
        payload,
        publisher,
    )
    .instrument(span)
    .await;
    let outcome = match &result {
        Ok((Outcome::Replayed { .. }, _)) => "replayed",
        Ok((Outcome::DryRun(_), _)) => "dry_run",
        Ok((Outcome::Filtered(_), _)) => "filtered",
        Ok(_) => "applied",
        Err(ApiError::Workflow(publish::workflow::WorkflowError::Failed(_))) => "failed",
        Err(e) if actix_web::ResponseError::status_code(e).is_client_error() => "refused",
        Err(_) => "failed",
    };
    let known = publisher.knows(&topic);
    crate::metrics::get().publish(if known { &topic } else { "unknown" }, outcome);
    result.map(|(_, response)| response)
}

/// Parses, publishes, answers; the outcome is kept for the metrics.
async fn handle(
    req: &HttpRequest,
    caller: String,
    topic: String,
    request_uid: RequestUid,
    payload: web::Payload,
    publisher: &Publisher,
) -> Result<(Outcome, HttpResponse), ApiError> {
    let admission = match publisher.admit() {
        Ok(admission) => admission,
        Err(refused) => {
            drain(payload, publisher.max_payload_bytes()).await;
            return Err(refused.into());
        }
    };
    let (body, cloudevent) = message(req, payload, publisher).await?;
    let controls = controls(req.query_string(), publisher.limits())?;
    let filter = crate::filter::Envelope {
        headers: filter_headers(req),
        // In binary mode the attributes are `ce-` headers too; the filter
        // reads them decoded, as `ce`.
        ce: cloudevent
            .as_ref()
            .map(|event| event.as_map().clone())
            .unwrap_or_default(),
    };
    let order = Order {
        request_uid,
        topic,
        caller,
        trigger: match cloudevent {
            Some(_) => Trigger::CloudEvent,
            None => Trigger::Http,
        },
        cloudevent,
        body,
        params: controls.params,
        dry_run: controls.dry_run,
        wait: controls.wait,
        idempotency_key: idempotency_key(req)?,
        callback: header_value(req, "X-Callback-Url")?,
        parent: None,
        parent_function: parent(req)?,
        trace_id: trace_id(req),
        retry_of: None,
        scheduled_time: None,
        filter: Some(filter),
    };
    let outcome = publisher
        .publish(admission, order, super::client::gone(req))
        .await?;
    let response = respond(&outcome);
    Ok((outcome, response))
}

/// The message a publish carries: its body, or the data of the CloudEvent
/// it is (binary or structured mode; `crate::cloudevent` reads it) with the
/// event's attributes.
async fn message(
    req: &HttpRequest,
    payload: web::Payload,
    publisher: &Publisher,
) -> Result<(bytes::Bytes, Option<Attributes>), ApiError> {
    let headers = req.headers();
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    let limit = publisher.max_payload_bytes();
    let Some(mode) = cloudevent::Mode::of(content_type, headers.keys().map(|n| n.as_str()))? else {
        return Ok((read_body(req, payload, limit).await?.0, None));
    };
    // Any content type: an event's data may be of any media type.
    let body = read_any(req, payload, limit).await?.freeze();
    let limits = cloudevent::Limits {
        max_value_bytes: publisher.limits().max_param_bytes,
    };
    let event = match mode {
        cloudevent::Mode::Structured => cloudevent::structured(&body, limits)?,
        cloudevent::Mode::Binary => {
            let fields: Vec<(&str, &[u8])> = headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes()))
                .collect();
            cloudevent::binary(&fields, content_type, body, limits)?
        }
    };
    Ok((event.data, Some(event.attributes)))
}

/// The answer to a publish's outcome.
pub(super) fn respond(outcome: &Outcome) -> HttpResponse {
    match outcome {
        // Nothing is recorded: no Location to follow.
        Outcome::Filtered(filtered) => HttpResponse::Ok().json(filtered),
        Outcome::DryRun(report) => HttpResponse::Ok().json(report),
        Outcome::Applied(report) | Outcome::Queued(report) => HttpResponse::Accepted()
            .insert_header(location(&report.request_uid))
            .json(report),
        Outcome::Waited { view, finished } => HttpResponse::build(if *finished {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        })
        .insert_header(location(&view.request_uid))
        .json(view),
        // Nobody reads it.
        Outcome::Abandoned { request_uid } => HttpResponse::Accepted()
            .insert_header(location(request_uid))
            .finish(),
        Outcome::Replayed {
            request_uid,
            http_status,
            report,
        } => {
            HttpResponse::build(StatusCode::from_u16(*http_status).unwrap_or(StatusCode::ACCEPTED))
                .insert_header(location(request_uid))
                .insert_header(("Idempotent-Replayed", "true"))
                .json(report)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_gives_its_trace_id_and_an_invalid_one_nothing() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            parse_traceparent(&format!("00-{trace}-00f067aa0ba902b7-01")).as_deref(),
            Some(trace)
        );
        assert_eq!(
            parse_traceparent(&format!(" 00-{trace}-00f067aa0ba902b7-00 ")).as_deref(),
            Some(trace),
            "surrounding spaces and an unsampled flag are fine"
        );
        // A later version may carry more fields; version 00 may not.
        assert_eq!(
            parse_traceparent(&format!("01-{trace}-00f067aa0ba902b7-01-extra")).as_deref(),
            Some(trace)
        );
        for bad in [
            String::new(),
            "garbage".to_string(),
            format!("00-{trace}-00f067aa0ba902b7-01-extra"),
            format!("ff-{trace}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{trace}-0000000000000000-01"),
            format!("00-{}-00f067aa0ba902b7-01", trace.to_uppercase()),
            format!("00-{}-00f067aa0ba902b7-01", &trace[1..]),
            format!("00-{trace}-00f067aa0ba902b-01"),
            format!("00-{trace}-00f067aa0ba902b7-1"),
            format!("0-{trace}-00f067aa0ba902b7-01"),
            format!("00-{trace}-00f067aa0ba902b7"),
            format!("00-{}z-00f067aa0ba902b7-01", &trace[1..]),
        ] {
            assert_eq!(parse_traceparent(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn traceparent_carries_the_callers_trace_or_one_of_the_request_uid() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let function = "f-0af7651916cd43dd8448eb211c80319c";
        assert_eq!(
            crate::publish::traceparent(Some(trace), "r-ignored", function),
            format!("00-{trace}-0af7651916cd43dd-01")
        );
        let made = crate::publish::traceparent(None, "r-1234abcd-ef", function);
        assert_eq!(
            made,
            format!("00-{}1234abcdef-0af7651916cd43dd-01", "0".repeat(22))
        );
        assert!(
            parse_traceparent(&made).is_some(),
            "what a run forwards is valid: {made}"
        );
    }
}
