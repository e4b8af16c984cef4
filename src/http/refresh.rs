//! `GET|POST /refresh`: sync now, answer when the sync has ended.

use actix_web::{web, HttpResponse};

use super::{ApiError, AppState, Authenticated};

pub async fn refresh(
    _: Authenticated,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let outcome = state.syncer.sync().await?;
    // The Python version's `{"error": false}`, beside what gitfaas adds.
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "error": false,
        "commit": outcome.commit,
        "changed": outcome.changed,
    })))
}
