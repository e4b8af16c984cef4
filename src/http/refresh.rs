//! `GET|POST /refresh`: sync now, answer when the sync has ended.

use actix_web::{web, HttpResponse};

use super::{ApiError, AppState, Authenticated};

pub async fn refresh(
    _: Authenticated,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let outcome = state.syncer.sync().await?;
    Ok(HttpResponse::Ok().json(outcome))
}
