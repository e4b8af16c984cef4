//! `GET /requests/{requestUid}`: every object the publish applied with its
//! live status, each function's response, and callback attempts.

use actix_web::{web, HttpResponse};

use super::{ApiError, AppState, Authenticated};

pub async fn get(
    _: Authenticated,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    match state.lifecycle.view(path.as_str()).await? {
        Some(view) => Ok(HttpResponse::Ok().json(view)),
        None => Err(ApiError::not_found(format!(
            "unknown or expired request uid `{}`: use the requestUid a publish returned, within the expiration time",
            path.as_str()
        ))),
    }
}
