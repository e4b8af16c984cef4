//! `GET /requests/{requestUid}`: every object the publish applied with its
//! live status, each function's response, and callback attempts.
//! `GET /requests`: the history of runs, newest first, in pages.
//! `DELETE /requests/{requestUid}`: cancels a run.
//! `GET /requests/{requestUid}/tree`: the pipeline run it belongs to.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::identity::Permission;

use super::{ApiError, AppState, Authenticated};
use crate::error::Code;
use crate::run::runs::Cancel;
use crate::store::{Cursor, RunQuery, RunState, Trigger};

#[utoipa::path(
    get,
    path = "/requests/{requestUid}",
    operation_id = "getRequest",
    tag = "requests",
    summary = "What became of a publish",
    description = "Every object the publish applied with its live status (a Job's phase, pods, conditions, times), each function's response, the publish report and the callback's attempts; `done` and `succeeded` summarize.",
    params(("requestUid" = String, Path, min_length = 1, description = "The requestUid a publish returned")),
    responses(
        (status = 200, body = crate::run::view::RunDetail, description = "The run"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn get(
    auth: Authenticated,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth.may(&state, Permission::read_run()).await?;
    match state.services.runs().view(&super::run_uid(&path)?).await? {
        Some(view) => Ok(HttpResponse::Ok().json(view)),
        None => Err(ApiError::unknown_run(path.as_str())),
    }
}

/// The default and the largest page of `GET /requests`.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// The query of `GET /requests`; every value arrives as text, so each can
/// be refused with a message naming it.
#[derive(Deserialize)]
pub struct ListQuery {
    topic: Option<String>,
    status: Option<String>,
    trigger: Option<String>,
    since: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn bad(name: &str, why: String) -> ApiError {
    ApiError::refused(Code::BadParameter, format!("{name}: {why}"))
}

impl ListQuery {
    fn parse(self) -> Result<RunQuery, ApiError> {
        let state = match self.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(RunState::parse(s).ok_or_else(|| {
                let names: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
                bad(
                    "status",
                    format!("`{s}` is not a run status: use one of {}", names.join(", ")),
                )
            })?),
        };
        let trigger = match self.trigger.as_deref() {
            None | Some("") => None,
            Some(t) => Some(Trigger::parse(t).ok_or_else(|| {
                let names: Vec<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
                bad(
                    "trigger",
                    format!("`{t}` is not a trigger: use one of {}", names.join(", ")),
                )
            })?),
        };
        let since = match self.since.as_deref() {
            None | Some("") => None,
            Some(s) => Some(parse_since(s).ok_or_else(|| {
                bad(
                    "since",
                    format!(
                        "`{s}` is not a time: use RFC 3339 (2026-12-01T00:00:00Z) or Unix seconds"
                    ),
                )
            })?),
        };
        let limit = match self.limit.as_deref() {
            None | Some("") => DEFAULT_LIMIT,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    bad(
                        "limit",
                        format!("`{s}` is not a page size: use 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        let cursor = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(s) => Some(Cursor::decode(s).map_err(|e| bad("cursor", e.to_string()))?),
        };
        let topic = match self.topic {
            Some(t) if t.is_empty() => None,
            Some(t) => match crate::catalog::TopicName::parse(&t) {
                Ok(_) => Some(t),
                Err(why) => return Err(bad("topic", why)),
            },
            None => None,
        };
        Ok(RunQuery {
            topic,
            state,
            trigger,
            since,
            limit,
            cursor,
        })
    }
}

/// RFC 3339, or Unix seconds.
fn parse_since(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let at = humantime::parse_rfc3339_weak(s).ok()?;
    at.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[utoipa::path(
    get,
    path = "/requests",
    operation_id = "listRequests",
    tag = "requests",
    summary = "The history of runs",
    description = "Runs newest first, within the expiration time, each with its status as last recorded (Pending, Queued, Running, Succeeded, Failed, Cancelled) — a run's own `/requests/{requestUid}` reads its objects live. Pages follow `next`; a page may hold fewer runs than `limit` and still have a `next` (it stops after looking at 5,000 entries).",
    params(
        ("topic" = Option<String>, Query, description = "Only this topic's runs"),
        ("status" = Option<String>, Query, description = "Only runs in this status (any case): Pending, Queued, Running, Succeeded, Failed, Cancelled"),
        ("trigger" = Option<String>, Query, description = "Only runs started by this trigger: http (a publish, a retry), schedule (a tick of the topic's schedule), cloudevent"),
        ("since" = Option<String>, Query, description = "Only runs created at or after this time: RFC 3339 or Unix seconds"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "At most this many runs (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next` of the previous page"),
    ),
    responses(
        (status = 200, body = crate::run::runs::Page, description = "A page of runs"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn list(
    auth: Authenticated,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth.may(&state, Permission::list_runs()).await?;
    let query = query.into_inner().parse()?;
    Ok(HttpResponse::Ok().json(state.services.runs().page(&query).await?))
}

#[utoipa::path(
    delete,
    path = "/requests/{requestUid}",
    operation_id = "cancelRequest",
    tag = "requests",
    summary = "Cancel a run",
    description = "Deletes the Jobs the run created — only those, by uid, with their pods in the background — and records it Cancelled; its callback then goes out with that outcome. Cancelling a cancelled run answers the same again; a finished run, or one still being applied, answers 409 `run_not_cancellable`.",
    params(("requestUid" = String, Path, min_length = 1, description = "The requestUid a publish returned")),
    responses(
        (status = 200, body = crate::run::view::RunDetail, description = "The cancelled run"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn cancel(
    auth: Authenticated,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth.may(&state, Permission::cancel_run()).await?;
    state
        .access
        .callers
        .record(&auth.user, "cancel", &crate::telemetry::access_path(&path));
    match state
        .services
        .runs()
        .cancel(&super::run_uid(&path)?)
        .await?
    {
        Some(Cancel::Cancelled(view)) => Ok(HttpResponse::Ok().json(view)),
        Some(Cancel::NotCancellable(RunState::Pending)) => Err(ApiError::refused(
            Code::RunNotCancellable,
            format!(
                "run `{}` is being applied: retry the cancel in a moment",
                path.as_str()
            ),
        )),
        Some(Cancel::NotCancellable(s)) => Err(ApiError::refused(
            Code::RunNotCancellable,
            format!(
                "run `{}` has finished ({}): there is nothing left to cancel",
                path.as_str(),
                s.as_str()
            ),
        )),
        None => Err(ApiError::unknown_run(path.as_str())),
    }
}

#[utoipa::path(
    get,
    path = "/requests/{requestUid}/tree",
    operation_id = "getRequestTree",
    tag = "requests",
    summary = "The pipeline run a run belongs to",
    description = "Up the run's parents (`Gitfaas-Parent`) to the top-most one still stored, then down every child, each with its status as recorded: a whole pipeline run. At most 1,000 runs and 32 levels (`truncated` says when it was cut).",
    params(("requestUid" = String, Path, min_length = 1, description = "The requestUid of any run of the pipeline")),
    responses(
        (status = 200, body = crate::run::runs::Tree, description = "The tree"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn tree(
    auth: Authenticated,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth.may(&state, Permission::read_run()).await?;
    match state.services.runs().tree(&super::run_uid(&path)?).await? {
        Some(tree) => Ok(HttpResponse::Ok().json(tree)),
        None => Err(ApiError::unknown_run(path.as_str())),
    }
}

#[utoipa::path(
    post,
    path = "/requests/{requestUid}/retry",
    operation_id = "retryRequest",
    tag = "requests",
    summary = "Re-run a failed run",
    description = "Publishes a dead letter again — a run whose apply failed (`GET /requests?status=failed`; a queued run that failed every attempt of its topic's `retry`, a refused apply) — as a new run with the same topic, body, query parameters, parent and callback, rendered from the live commit; the new run's `/requests` view names the old one in `retryOf`. Answers as a publish does. A run that did not fail in its apply answers 409 `run_not_retryable`.",
    params(("requestUid" = String, Path, min_length = 1, description = "The requestUid of the failed run")),
    responses(
        (status = 202, body = crate::publish::Report, description = "The new run (applied, or queued)"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn retry(
    auth: Authenticated,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    use tracing::Instrument;
    auth.may(&state, Permission::retry_run()).await?;
    let publisher = &state.services.publisher();
    let admission = publisher.admit()?;
    let failed = super::run_uid(&path)?;
    let request_uid = crate::publish::new_request_uid();
    let span = tracing::info_span!("retry", request_uid = request_uid.as_str());
    let outcome = publisher
        .retry_run(admission, auth.caller, &failed, request_uid)
        .instrument(span)
        .await?;
    Ok(super::publish::respond(&outcome))
}
