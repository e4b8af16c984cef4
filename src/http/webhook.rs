//! `POST /webhook/git`: a push webhook (GitHub `X-Hub-Signature-256`,
//! GitLab `X-Gitlab-Token`, or a generic `X-Gitfaas-Signature-256` HMAC),
//! verified against the configured secret, then a sync started at once.
//! Unsigned or badly signed calls are refused and start nothing.

use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde_json::json;

use super::{ApiError, AppState};

/// Webhook bodies are push events: a few hundred KiB at most.
const MAX_WEBHOOK_BYTES: usize = 5 * 1024 * 1024;

pub async fn git(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(secret) = &state.webhook else {
        return Err(ApiError::NotFound(
            "the git webhook is not enabled: start gitfaas with --webhook-secret-file".into(),
        ));
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e}")))?;
        if body.len() + chunk.len() > MAX_WEBHOOK_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_WEBHOOK_BYTES));
        }
        body.extend_from_slice(&chunk);
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    secret
        .verify(header, &body)
        .map_err(|r| ApiError::Unauthorized(r.to_string()))?;
    let event = header("x-github-event")
        .or_else(|| header("x-gitlab-event"))
        .unwrap_or("push")
        .to_string();
    let syncer = std::sync::Arc::clone(&state.syncer);
    tokio::spawn(async move {
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
    Ok(HttpResponse::Accepted()
        .json(json!({"error": false, "message": "sync started", "event": event})))
}
