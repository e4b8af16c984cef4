//! `POST /webhook/git`: a push webhook (GitHub `X-Hub-Signature-256`,
//! GitLab `X-Gitlab-Token`, or a generic `X-Gitfaas-Signature-256` HMAC),
//! verified against the configured secret, then a sync started at once.
//! Unsigned or badly signed calls are refused and start nothing; so are
//! replays: a delivery id seen before (`X-GitHub-Delivery`,
//! `X-Gitlab-Event-UUID`), a generic signature seen before (remembered like
//! a delivery id), or one whose signed `X-Gitfaas-Timestamp` (required) is
//! more than five minutes off. The sync runs as a drained background task
//! (`tasks`): shutdown waits for it.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::{ApiError, AppState};

/// The body of an accepted webhook.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncStarted {
    /// Always false: this is not an error.
    pub error: bool,
    /// Always `sync started`.
    pub message: &'static str,
    /// The event the git server named (`X-GitHub-Event`, `X-Gitlab-Event`),
    /// `push` when it named none.
    pub event: String,
}

/// Webhook bodies are push events: a few hundred KiB at most.
const MAX_WEBHOOK_BYTES: usize = 5 * 1024 * 1024;

/// A git server's push webhook
///
/// Verified against `--webhook-secret-file` (GitHub's, GitLab's or a generic
/// HMAC signature of `<timestamp>.<body>`), then a sync starts at once; a
/// delivery id or generic signature seen before starts nothing.
#[utoipa::path(
    post,
    path = "/webhook/git",
    operation_id = "gitWebhook",
    tag = "sync",
    params(
        ("X-Hub-Signature-256" = Option<String>, Header, description = "GitHub: `sha256=<hex HMAC-SHA256 of the body>`"),
        ("X-Gitlab-Token" = Option<String>, Header, description = "GitLab: the secret itself"),
        ("X-Gitfaas-Signature-256" = Option<String>, Header, description = "Generic: `sha256=<hex HMAC-SHA256 of <timestamp>.<body>>`, sent with X-Gitfaas-Timestamp (a signature of the body alone is refused); a signature seen before is refused"),
        ("X-Gitfaas-Timestamp" = Option<String>, Header, pattern = "^[0-9]+$", description = "Generic: unix seconds, signed with the body as `<timestamp>.<body>`; required with X-Gitfaas-Signature-256; more than 5 minutes from the server's clock is refused"),
        ("X-GitHub-Delivery" = Option<String>, Header, min_length = 1, max_length = 128, description = "GitHub's delivery id: a delivery seen before is refused"),
        ("X-Gitlab-Event-UUID" = Option<String>, Header, min_length = 1, max_length = 128, description = "GitLab's delivery id: a delivery seen before is refused"),
        ("X-GitHub-Event" = Option<String>, Header, description = "GitHub's event name, echoed in the answer"),
        ("X-Gitlab-Event" = Option<String>, Header, description = "GitLab's event name, echoed in the answer"),
    ),
    request_body(
        description = "The push event, as the git server sends it (at most 5 MiB)",
        content((Option<serde_json::Value> = "application/json"), ("application/octet-stream")),
    ),
    responses(
        (status = 202, body = SyncStarted, description = "Verified; the sync has started"),
    )
)]
pub async fn git(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(secret) = &state.access.webhook else {
        return Err(ApiError::not_found(
            "the git webhook is not enabled: start gitfaas with --webhook-secret-file",
        ));
    };
    let body = super::read_limited(payload, MAX_WEBHOOK_BYTES, 0).await?;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let verified = secret
        .verify(header, &body, now)
        .map_err(|r| ApiError::unauthorized(r.to_string()))?;
    // A generic call's signature is its delivery id: the signed timestamp
    // bounds a replay to five minutes, and this refuses it within them.
    if let Some(key) = verified.replay_key() {
        if !state
            .services
            .lifecycle()
            .store
            .remember_delivery(key)
            .await?
        {
            return Err(ApiError::refused(crate::error::Code::DeliveryReplayed,
                "this signed webhook call was already received: a replayed call starts nothing (sign each delivery anew, with its own X-Gitfaas-Timestamp)",
            ));
        }
    }
    // A signed delivery captured once must not trigger again: GitHub and
    // GitLab give each delivery an id, remembered for the expiration time.
    if let Some(id) = header("x-github-delivery").or_else(|| header("x-gitlab-event-uuid")) {
        if id.is_empty() || id.len() > 128 {
            return Err(ApiError::bad_request(
                "the delivery id header must be 1 to 128 characters",
            ));
        }
        if !state
            .services
            .lifecycle()
            .store
            .remember_delivery(id)
            .await?
        {
            return Err(ApiError::refused(crate::error::Code::DeliveryReplayed, format!(
                "webhook delivery `{id}` was already received: a replayed delivery starts nothing (redeliver from the git server to get a new id)"
            )));
        }
    }
    let event = header("x-github-event")
        .or_else(|| header("x-gitlab-event"))
        .unwrap_or("push")
        .to_string();
    let syncer = std::sync::Arc::clone(state.services.syncer());
    // Drained: the webhook was answered 202, so the sync it promised runs
    // to its end even if shutdown begins meanwhile.
    state
        .services
        .tasks()
        .spawn_drained("webhook sync", async move {
            match syncer.sync().await {
                Ok(outcome) => tracing::info!(
                    commit = outcome.commit,
                    changed = outcome.changed,
                    "webhook sync done"
                ),
                Err(e) => tracing::warn!(error = %e, "webhook sync failed"),
            }
        });
    tracing::info!(event, "webhook accepted; sync started");
    Ok(HttpResponse::Accepted().json(SyncStarted {
        error: false,
        message: "sync started",
        event,
    }))
}
