//! `GET /healthz` (alive), `GET /readyz` (a snapshot is loaded and the API
//! server answers) and `GET /status` (what is serving and how the sync goes).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{ApiError, AppState};

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"error": false, "status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(snapshot) = state.syncer.snapshot() else {
        let status = state.syncer.status();
        let why = status
            .last_error
            .map(|e| e.message)
            .unwrap_or_else(|| "the first sync has not finished".into());
        return Err(ApiError::not_ready(format!(
            "not ready: no functions loaded yet ({why})"
        )));
    };
    let version = state
        .applier
        .probe()
        .await
        .map_err(|e| ApiError::not_ready(format!("not ready: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({
        "error": false,
        "commit": snapshot.commit,
        "kubernetes": version,
    })))
}

pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let sync = state.syncer.status();
    let snapshot = state.syncer.snapshot();
    let topics: Vec<serde_json::Value> = snapshot
        .as_ref()
        .map(|s| {
            s.topics
                .values()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "configs": t.manifests.iter().map(|m| m.path.to_string()).collect::<Vec<_>>(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    HttpResponse::Ok().json(json!({
        "error": false,
        "source": state.syncer.describe(),
        "commit": snapshot.as_ref().map(|s| s.commit.clone()),
        "sync": sync,
        "topics": topics,
        "namespace": state.applier.default_namespace(),
    }))
}
