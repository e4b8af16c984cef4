//! Each HTTP worker's own kube client: built in `HttpServer::new`'s factory,
//! which runs once on each worker's runtime ([`crate::cluster::WorkerCalls`]),
//! and made the client of every request that worker handles.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::cluster::{self, WorkerCalls};

/// The worker's client, as app data.
pub struct Calls(pub Option<WorkerCalls>);

/// The middleware: runs the request with its worker's client.
pub async fn around(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let calls = req
        .app_data::<web::Data<Calls>>()
        .and_then(|calls| calls.0.clone());
    cluster::with_worker_calls(calls, next.call(req)).await
}
