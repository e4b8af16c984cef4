//! `GET /healthz` (alive), `GET /readyz` (a snapshot is loaded and the API
//! server answers) and `GET /status` (what is serving and how the sync goes).

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::{ApiError, AppState};

/// The body of `GET /healthz` and `GET /alive`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Alive {
    /// Always false: this is not an error.
    pub error: bool,
    /// Always `ok`.
    pub status: &'static str,
}

/// The body of `GET /readyz` when ready.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// Always false: this is not an error.
    pub error: bool,
    /// The commit serving.
    pub commit: String,
    /// The API server's version (its `gitVersion`).
    pub kubernetes: String,
}

/// One topic of the serving snapshot, as `GET /status` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: crate::catalog::TopicName,
    /// Its manifests' paths in the repository, in order.
    pub configs: Vec<String>,
    /// When it runs by itself, if it has a schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleInfo>,
}

/// A topic's schedule, as `GET /status` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleInfo {
    /// The cron expression, as written.
    pub cron: String,
    /// The IANA time zone of its ticks.
    pub timezone: String,
    /// Its next tick (RFC 3339, UTC) after now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_tick: Option<String>,
    /// How late a missed tick may still fire, in seconds.
    pub starting_deadline_seconds: u64,
}

/// The body of `GET /status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// Always false: this is not an error.
    pub error: bool,
    /// Where the functions come from (the remote and branch, or the directory).
    pub source: String,
    /// The commit serving, if any.
    pub commit: Option<String>,
    /// How the sync goes.
    pub sync: crate::source::SyncStatus,
    /// The serving snapshot's topics (none before the first sync).
    pub topics: Vec<TopicInfo>,
    /// The namespace of objects whose manifest names none.
    pub namespace: String,
    /// Whether this replica fires the topics' schedules (holds the Lease).
    pub scheduler: crate::schedule::SchedulerStatus,
    /// The last publishes and cancels let through, and who made them
    /// (usernames, never tokens), newest last.
    pub callers: Vec<crate::identity::CallerSeen>,
}

/// Liveness
///
/// Always 200 while the server runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, body = Alive, description = "Alive"))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Alive {
        error: false,
        status: "ok",
    })
}

/// Liveness, at the Python gitfaas' path
///
/// `/healthz` at the path the Python gitfaas' chart probes.
#[utoipa::path(
    get,
    path = "/alive",
    tag = "operations",
    responses((status = 200, body = Alive, description = "Alive"))
)]
pub async fn alive() -> HttpResponse {
    healthz().await
}

/// Readiness
///
/// Ready once a snapshot of the functions is loaded and the API server answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, body = Ready, description = "Ready"),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(snapshot) = state.services.syncer().snapshot() else {
        let status = state.services.syncer().status();
        let why = status
            .last_error
            .map(|e| e.message)
            .unwrap_or_else(|| "the first sync has not finished".into());
        return Err(ApiError::not_ready(format!(
            "not ready: no functions loaded yet ({why})"
        )));
    };
    let version = state
        .services
        .applier()
        .probe()
        .await
        .map_err(|e| ApiError::not_ready(format!("not ready: {e}")))?;
    Ok(HttpResponse::Ok().json(Ready {
        error: false,
        commit: snapshot.commit.clone(),
        kubernetes: version,
    }))
}

/// What is serving
///
/// The source, the serving commit, how the sync goes (when a sync last
/// ended and last succeeded, the last error, the last rejected commit with
/// its problems kept through later failures of other kinds, failures in a
/// row), the
/// topics (with each schedule's next tick), the default namespace, and
/// whether this replica fires the schedules.
#[utoipa::path(
    get,
    path = "/status",
    tag = "operations",
    responses(
        (status = 200, body = Status, description = "The status"),
    )
)]
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let sync = state.services.syncer().status();
    let snapshot = state.services.syncer().snapshot();
    let topics = snapshot
        .as_ref()
        .map(|s| {
            s.topics
                .values()
                .map(|t| TopicInfo {
                    name: t.name.clone(),
                    configs: t.manifests.iter().map(|m| m.path.to_string()).collect(),
                    schedule: t.schedule.as_ref().map(|s| ScheduleInfo {
                        cron: s.cron.expression().to_string(),
                        timezone: s.cron.timezone().to_string(),
                        next_tick: s
                            .cron
                            .next_after(jiff::Timestamp::now())
                            .map(crate::schedule::cron::rfc3339),
                        starting_deadline_seconds: s.starting_deadline.as_secs(),
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    HttpResponse::Ok().json(Status {
        error: false,
        source: state.services.syncer().describe(),
        commit: snapshot.as_ref().map(|s| s.commit.clone()),
        sync,
        topics,
        namespace: state.services.applier().default_namespace().to_string(),
        scheduler: state.services.scheduler(),
        callers: state.access.callers.recent(),
    })
}
