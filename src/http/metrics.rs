//! `GET /metrics`: Prometheus (OpenMetrics) text.

use actix_web::{web, HttpResponse};

use super::AppState;

/// Prometheus metrics
///
/// OpenMetrics text: publishes by topic and outcome, render and apply
/// times, the sync's commit, last success and failures, stored requests.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, body = String, content_type = "application/openmetrics-text", description = "The metrics"),
    )
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = crate::metrics::get();
    match state.services.lifecycle().store.request_count().await {
        Ok(n) => {
            m.stored_requests.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        Err(e) => tracing::warn!(error = %e, "counting stored requests failed"),
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(m.encode())
}
