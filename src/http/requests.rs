//! `GET /requests/{requestUid}`: every object the publish applied with its
//! live status, each function's response, and callback attempts.

use actix_web::{web, HttpResponse};

use super::{ApiError, AppState, Authenticated};

#[utoipa::path(
    get,
    path = "/requests/{requestUid}",
    operation_id = "getRequest",
    tag = "requests",
    summary = "What became of a publish",
    description = "Every object the publish applied with its live status (a Job's phase, pods, conditions, times), each function's response, the publish report and the callback's attempts; `done` and `succeeded` summarize.",
    params(("requestUid" = String, Path, min_length = 1, description = "The requestUid a publish returned")),
    responses(
        (status = 200, body = crate::lifecycle::RequestView, description = "The request"),
        super::openapi::RequestErrors,
    ),
    security(("bearer" = []), ()),
)]
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
