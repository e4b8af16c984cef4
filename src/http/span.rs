//! Every request is handled inside a span of its own, so what is logged
//! while it is handled carries the fields its handler recorded on the span
//! (`topic`, `request_uid`, and `user`, who called) — its error too: an [`super::ApiError`] logs
//! itself once, when it becomes the response, which happens inside this
//! span.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use tracing::Instrument;

use crate::uid::RequestUid;

/// The middleware.
pub async fn around(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let span = tracing::info_span!(
        "request",
        topic = tracing::field::Empty,
        user = tracing::field::Empty,
        request_uid = tracing::field::Empty
    );
    next.call(req).instrument(span).await
}

/// Records the publish's topic and request uid on the current request's span.
pub fn record_publish(topic: &str, request_uid: &RequestUid) {
    let span = tracing::Span::current();
    span.record("topic", topic);
    span.record("request_uid", request_uid.as_str());
}
