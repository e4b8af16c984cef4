//! `GET|POST /refresh`: sync now, answer when the sync has ended.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::identity::Permission;

use super::{ApiError, AppState, Authenticated};

/// The body of a refresh that synced: the Python version's
/// `{"error": false}`, beside what gitfaas adds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Refreshed {
    /// Always false: this is not an error.
    pub error: bool,
    /// The commit now serving.
    pub commit: String,
    /// Whether the serving snapshot changed.
    pub changed: bool,
}

/// Sync now
///
/// Fetches the repository (or re-reads the directory) and answers when the
/// sync has ended. An invalid new commit is refused and the previous one
/// serves on.
#[utoipa::path(
    method(get, post),
    path = "/refresh",
    tag = "sync",
    responses(
        (status = 200, body = Refreshed, description = "Synced"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn refresh(
    auth: Authenticated,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth.may(&state, Permission::refresh()).await?;
    let outcome = state.services.syncer().sync().await?;
    Ok(HttpResponse::Ok().json(Refreshed {
        error: false,
        commit: outcome.commit,
        changed: outcome.changed,
    }))
}
