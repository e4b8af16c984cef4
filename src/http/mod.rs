//! The HTTP API (actix-web): routes, shared state, and the one place where
//! errors become statuses and JSON bodies (`error.rs`).
//!
//! Handlers read the request into domain values and call `publish`,
//! `source` and `apply`; none of those know about HTTP.

mod error;
mod health;
mod publish;
mod refresh;

use std::sync::Arc;

use actix_web::web;

use crate::apply::Applier;
use crate::policy::Policy;
use crate::source::Syncer;

pub use error::ApiError;

/// State shared by every worker.
pub struct AppState {
    /// The syncer and the live snapshot.
    pub syncer: Arc<Syncer>,
    /// The cluster.
    pub applier: Arc<Applier>,
    /// What may be applied.
    pub policy: Policy,
    /// {{GITFAAS_URL}}.
    pub public_url: String,
    /// Largest accepted body.
    pub max_payload_bytes: usize,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/publish/{topic}").route(web::post().to(publish::publish)))
        .service(
            web::resource("/refresh")
                .route(web::get().to(refresh::refresh))
                .route(web::post().to(refresh::refresh)),
        )
        .service(web::resource("/healthz").route(web::get().to(health::healthz)))
        .service(web::resource("/readyz").route(web::get().to(health::readyz)))
        .service(web::resource("/status").route(web::get().to(health::status)));
}

/// The answer for paths and methods no route serves.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}: see the README for the API (POST /publish/{{topic}}, GET /refresh, GET /status …)",
        req.method(),
        req.path()
    )))
}
