//! The route table: every route of the API, written once. A row names the
//! handler, its description (the `#[utoipa::path]` on the handler: method,
//! path, summary, parameters, success answers), the error codes the route
//! documents, and where its errors come from. [`super::configure`]
//! registers the rows with actix and [`super::openapi`] describes them, so
//! the served routes and the document cannot differ; a test checks each
//! row's documented codes against what its handler's errors can be.

use actix_web::http::Method;
use actix_web::web;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;

use crate::cluster::LogError;
use crate::error::Code;
use crate::publish::workflow::WorkflowError;
use crate::run::lifecycle::LifecycleError;
use crate::source::SyncError;
use crate::store::StoreError;

use super::{
    health, logs, metrics, openapi, publish, refresh, requests, responses, topics, webhook,
};

/// One route: a handler, how it is described, and its errors.
pub(super) struct Route {
    /// Adds the handler to its path's resource for one method.
    pub register: fn(actix_web::Resource, Method) -> actix_web::Resource,
    /// The path, as the handler's `#[utoipa::path]` writes it.
    pub path: fn() -> String,
    /// The methods, as the handler's `#[utoipa::path]` writes them.
    pub methods: fn() -> Vec<HttpMethod>,
    /// The operation (summary, parameters, success answers), without its
    /// tags and error answers.
    pub operation: fn() -> Operation,
    /// The operation's tags.
    pub tags: fn() -> Vec<&'static str>,
    /// The schemas the operation names, for the document's components.
    pub schemas: fn(&mut Vec<(String, RefOr<Schema>)>),
    /// The codes the route documents: its error answers in the document.
    pub errors: &'static [Code],
    /// The bodies extending `ErrorBody` that some of its errors answer.
    pub richer: &'static [&'static str],
    /// Where its errors come from: each the codes an error type the
    /// handler returns (or a layer in front of it) can give. Read by the
    /// table's test only.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fails: &'static [Fails],
}

/// Where some of a route's errors come from.
#[cfg_attr(not(test), allow(dead_code))]
pub(super) enum Fails {
    /// A layer's, or the handler's own, refusals.
    Codes(&'static [Code]),
    /// An error type the handler returns: its codes (exhaustive, so a new
    /// variant flows in), less those the handler's calls of it cannot give.
    Except(fn() -> Vec<Code>, &'static [Code]),
}

#[cfg(test)]
impl Fails {
    /// The codes; an exception must name a code the type still has.
    fn codes(&self) -> Vec<Code> {
        match self {
            Fails::Codes(codes) => codes.to_vec(),
            Fails::Except(codes, never) => {
                let codes = codes();
                for code in *never {
                    assert!(codes.contains(code), "{code} is no longer one of the codes");
                }
                codes.into_iter().filter(|c| !never.contains(c)).collect()
            }
        }
    }
}

/// A row: `handler, description => [richer bodies] errors: codes; fails:
/// sources`. The description is the type `#[utoipa::path]` generates beside
/// the handler (`__path_<handler>`).
macro_rules! route {
    (
        $handler:path, $doc:ty
        => $([$($richer:ident),+])? errors: [$($code:ident),* $(,)?];
        fails: [$($fails:expr),* $(,)?] $(,)?
    ) => {
        Route {
            register: |resource, method| resource.route(web::route().method(method).to($handler)),
            path: <$doc as utoipa::Path>::path,
            methods: <$doc as utoipa::Path>::methods,
            operation: <$doc as utoipa::Path>::operation,
            tags: <$doc as utoipa::__dev::Tags<'static>>::tags,
            schemas: <$doc as utoipa::__dev::SchemaReferences>::schemas,
            errors: &[$(Code::$code),*],
            richer: &[$($(stringify!($richer)),+)?],
            fails: &[$($fails),*],
        }
    };
}

/// Every route, in the order actix matches them and the document lists them.
pub(super) const ROUTES: &[Route] = &[
    // Admission, the body, the query and headers, rendering, policy, the
    // apply or dry run, the store, and a wait's reads of the cluster. A
    // failed apply answers a `PublishFailure`.
    route!(publish::publish, publish::__path_publish => [PublishFailure] errors: [
        BadRequest, BadParameter, MissingVariable, BodyField, FilterFailed, InvalidValue, InvalidName,
        BadCloudEvent,
        Unauthorized, AccessDenied, AuthUnavailable,
        Forbidden, PolicyViolation, ClusterForbidden,
        UnknownTopic,
        BodyTimeout,
        NotOwned, JobExists, IdempotencyInProgress,
        PayloadTooLarge,
        UnsupportedMediaType,
        IdempotencyMismatch, ObjectRejected, UnknownKind, InvalidObject,
        TopicBusy, TooManyRequests, ClusterThrottled,
        ClusterError,
        ClusterUnreachable, StoreUnavailable, NotReady,
        Internal,
    ]; fails: [GUARDED, AUTHENTICATED, BODY, CLOUDEVENT, BAD_REQUEST, PUBLISHING]),
    // The sync. A rejected commit answers a `RejectedCommit`.
    route!(refresh::refresh, refresh::__path_refresh => [RejectedCommit] errors: [
        Unauthorized, AccessDenied, AuthUnavailable, Forbidden, RepositoryRejected, GitFetchFailed, Internal,
    ]; fails: [GUARDED, AUTHENTICATED, SYNC]),
    // The uid, the body, the store.
    route!(responses::post, responses::__path_post => errors: [
        BadRequest, Forbidden, UnknownFunction, BodyTimeout, AlreadyAnswered,
        PayloadTooLarge, UnsupportedMediaType, StoreUnavailable,
    ]; fails: [GUARDED, BODY, BAD_REQUEST, ANSWER]),
    // The query, the uid, the store; `internal` is the token check's
    // (its state missing), which every other authenticated route lists.
    route!(responses::get, responses::__path_get => errors: [
        BadRequest, Unauthorized, AccessDenied, AuthUnavailable, Forbidden, NotFound, StoreUnavailable, Internal,
    ]; fails: [GUARDED, AUTHENTICATED, BAD_REQUEST, NOT_FOUND, STORE]),
    // The query's filters, the store.
    route!(requests::list, requests::__path_list => errors: [
        BadRequest, BadParameter, Unauthorized, AccessDenied, AuthUnavailable, Forbidden, StoreUnavailable, Internal,
    ]; fails: [GUARDED, AUTHENTICATED, BAD_REQUEST, BAD_PARAMETER, STORE]),
    // The uid, the store, and reading the objects' live status from the
    // cluster.
    route!(requests::get, requests::__path_get => errors: [
        Unauthorized, AccessDenied, AuthUnavailable, Forbidden, ClusterForbidden, NotFound, UnknownKind, ObjectRejected,
        ClusterThrottled, ClusterError, ClusterUnreachable, StoreUnavailable, Internal,
    ]; fails: [GUARDED, AUTHENTICATED, NOT_FOUND, LIFECYCLE]),
    // The uid, the run's state, the store, and reading and deleting its
    // Jobs.
    route!(requests::cancel, requests::__path_cancel => errors: [
        Unauthorized, AccessDenied, AuthUnavailable, Forbidden, ClusterForbidden, NotFound, RunNotCancellable, UnknownKind,
        ObjectRejected, ClusterThrottled, ClusterError, ClusterUnreachable, StoreUnavailable,
        Internal,
    ]; fails: [GUARDED, AUTHENTICATED, NOT_FOUND, RUN_NOT_CANCELLABLE, LIFECYCLE]),
    // The query, the uid, the bound on log streams, the store, and reading
    // pods and their logs.
    route!(logs::get, logs::__path_get => errors: [
        BadRequest, Unauthorized, AccessDenied, AuthUnavailable, Forbidden, ClusterForbidden, NotFound, UnknownKind,
        ObjectRejected, TooManyRequests, ClusterThrottled, ClusterError, ClusterUnreachable,
        StoreUnavailable, Internal,
    ]; fails: [GUARDED, AUTHENTICATED, BAD_REQUEST, NOT_FOUND, STORE, CLUSTER_LOGS]),
    // The uid, the store.
    route!(requests::tree, requests::__path_tree => errors: [
        Unauthorized, AccessDenied, AuthUnavailable, Forbidden, NotFound, StoreUnavailable, Internal,
    ]; fails: [GUARDED, AUTHENTICATED, NOT_FOUND, STORE]),
    // The uid, the run's state, then everything a publish of its topic may
    // meet.
    route!(requests::retry, requests::__path_retry => errors: [
        BadRequest, BadParameter, MissingVariable, BodyField, InvalidValue, InvalidName, Unauthorized, AccessDenied, AuthUnavailable,
        Forbidden, PolicyViolation, ClusterForbidden, UnknownTopic, NotFound, NotOwned, JobExists,
        RunNotRetryable, ObjectRejected, UnknownKind, InvalidObject, TopicBusy, TooManyRequests,
        ClusterThrottled, ClusterError, ClusterUnreachable, StoreUnavailable, NotReady, Internal,
    ]; fails: [GUARDED, AUTHENTICATED, RETRYING]),
    // The serving snapshot's topics: only the caller's permission.
    route!(topics::list, topics::__path_list => errors: [
        Unauthorized, AccessDenied, AuthUnavailable, Forbidden, Internal,
    ]; fails: [GUARDED, AUTHENTICATED]),
    // The caller's permission on the topic, no snapshot yet, no such topic.
    route!(topics::get, topics::__path_get => errors: [
        Unauthorized, AccessDenied, AuthUnavailable, Forbidden, UnknownTopic, NotReady, Internal,
    ]; fails: [GUARDED, AUTHENTICATED, NOT_READY, UNKNOWN_TOPIC]),
    // Enabled or not, the body, the signature, the delivery id and the
    // store that remembers it.
    route!(webhook::git, webhook::__path_git => errors: [
        BadRequest, Unauthorized, Forbidden, NotFound, BodyTimeout, DeliveryReplayed,
        PayloadTooLarge, StoreUnavailable,
    ]; fails: [GUARDED, LIMITED_BODY, BAD_REQUEST, NOT_FOUND, UNAUTHORIZED, DELIVERY_REPLAYED, STORE]),
    route!(metrics::metrics, metrics::__path_metrics => errors: [Forbidden]; fails: [GUARDED]),
    // The probes answer whatever the Host.
    route!(health::healthz, health::__path_healthz => errors: []; fails: []),
    // The Python gitfaas' liveness path, which its chart probes.
    route!(health::alive, health::__path_alive => errors: []; fails: []),
    // No snapshot yet, or the API server does not answer.
    route!(health::readyz, health::__path_readyz => errors: [NotReady]; fails: [NOT_READY]),
    route!(health::status, health::__path_status => errors: [Forbidden]; fails: [GUARDED]),
    // The API described (OpenAPI 3.1), open like the probes.
    route!(openapi::spec, openapi::__path_spec => errors: [Forbidden]; fails: [GUARDED]),
];

// The layers in front of the handlers, and the HTTP layer's own refusals:
// what each can answer.

/// `browser::guard`: a foreign Host, a cross-site browser (every route but
/// the probes).
const GUARDED: Fails = Fails::Codes(&[Code::Forbidden]);
/// The `Authenticated` extractor and its `may`: no or a wrong token, a
/// Kubernetes identity without the permission, the reviews failing; its
/// state missing.
const AUTHENTICATED: Fails = Fails::Codes(&[
    Code::Unauthorized,
    Code::AccessDenied,
    Code::AuthUnavailable,
    Code::Internal,
]);
/// `read_body`: the content type, the size, the time, JSON that is not.
const BODY: Fails = Fails::Codes(&[
    Code::UnsupportedMediaType,
    Code::PayloadTooLarge,
    Code::BodyTimeout,
    Code::BadRequest,
]);
/// A CloudEvent read from a publish (`crate::cloudevent`): batch mode and
/// other formats (415), a bad event.
const CLOUDEVENT: Fails = Fails::Except(crate::cloudevent::CloudEventError::codes, &[]);
/// `read_limited`: the size, the time, a broken body.
const LIMITED_BODY: Fails =
    Fails::Codes(&[Code::PayloadTooLarge, Code::BodyTimeout, Code::BadRequest]);
/// A malformed query string or header (`ApiError::bad_request`, the
/// `QueryConfig` of `configure`).
const BAD_REQUEST: Fails = Fails::Codes(&[Code::BadRequest]);
/// `GET /requests`' filters.
const BAD_PARAMETER: Fails = Fails::Codes(&[Code::BadParameter]);
/// No such run (`ApiError::unknown_run`), or the webhook disabled.
const NOT_FOUND: Fails = Fails::Codes(&[Code::NotFound]);
/// A webhook's signature.
const UNAUTHORIZED: Fails = Fails::Codes(&[Code::Unauthorized]);
/// A webhook delivery seen before.
const DELIVERY_REPLAYED: Fails = Fails::Codes(&[Code::DeliveryReplayed]);
/// A finished run, or one being applied.
const RUN_NOT_CANCELLABLE: Fails = Fails::Codes(&[Code::RunNotCancellable]);
/// No such topic in the serving snapshot.
const UNKNOWN_TOPIC: Fails = Fails::Codes(&[Code::UnknownTopic]);
/// No snapshot, or the API server does not answer.
const NOT_READY: Fails = Fails::Codes(&[Code::NotReady]);

// The error types, each less what the handlers' calls of it cannot give,
// with why: the claims the types do not check (an exception naming a code
// the type no longer has fails the test).

/// A sync.
const SYNC: Fails = Fails::Except(SyncError::codes, &[]);
/// A function's answer (`check_function`, `put_response`): the store whole.
const ANSWER: Fails = Fails::Except(StoreError::codes, &[]);
/// The store, called for anything but a function's answer: only a
/// function's answer names a function uid, so the others fail only as
/// unavailable.
const STORE: Fails = Fails::Except(
    StoreError::codes,
    &[Code::UnknownFunction, Code::AlreadyAnswered],
);
/// Cluster reads and deletes (a run's view, its cancel): they apply
/// nothing, so no object is invalid, not owned or an existing Job; and the
/// store as [`STORE`].
const LIFECYCLE: Fails = Fails::Except(
    LifecycleError::codes,
    &[
        Code::UnknownFunction,
        Code::AlreadyAnswered,
        Code::InvalidObject,
        Code::NotOwned,
        Code::JobExists,
    ],
);
/// Reading pods and their logs: they apply nothing (as [`LIFECYCLE`]).
const CLUSTER_LOGS: Fails = Fails::Except(
    LogError::codes,
    &[Code::InvalidObject, Code::NotOwned, Code::JobExists],
);
/// `Publisher::publish` (and `admit`): never a retry's own refusals (no
/// such run, not retryable); a parent's unknown function uid answers
/// `UnknownParent`; and the store as [`STORE`].
const PUBLISHING: Fails = Fails::Except(
    WorkflowError::codes,
    &[
        Code::NotFound,
        Code::RunNotRetryable,
        Code::UnknownFunction,
        Code::AlreadyAnswered,
    ],
);
/// `Publisher::retry_run` (and `admit`): a retry sends no Idempotency-Key,
/// is not filtered again (it passed its topic's filter), and the store as
/// [`STORE`].
const RETRYING: Fails = Fails::Except(
    WorkflowError::codes,
    &[
        Code::FilterFailed,
        Code::IdempotencyMismatch,
        Code::IdempotencyInProgress,
        Code::UnknownFunction,
        Code::AlreadyAnswered,
    ],
);

/// The actix method of an OpenAPI one.
pub(super) fn method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn name(route: &Route) -> String {
        let methods: Vec<String> = (route.methods)()
            .iter()
            .map(|m| method(m).to_string())
            .collect();
        format!("{} {}", methods.join("|"), (route.path)())
    }

    /// A route documents exactly the codes its handler can answer: every
    /// code its error sources (each an error type's exhaustive `codes()`,
    /// or a layer's refusals) can give is documented, and every documented
    /// one is among them, so the document promises nothing the handler
    /// cannot answer.
    #[test]
    fn every_route_documents_exactly_the_codes_its_handler_can_answer() {
        let mut drift = Vec::new();
        for route in ROUTES {
            let documented: BTreeSet<&str> = route.errors.iter().map(|c| c.as_str()).collect();
            let possible: BTreeSet<&str> = route
                .fails
                .iter()
                .flat_map(Fails::codes)
                .map(Code::as_str)
                .collect();
            let undocumented: Vec<&&str> = possible.difference(&documented).collect();
            let unreachable: Vec<&&str> = documented.difference(&possible).collect();
            if !undocumented.is_empty() || !unreachable.is_empty() {
                drift.push(format!(
                    "{}: undocumented {undocumented:?}, not reachable {unreachable:?}",
                    name(route)
                ));
            }
        }
        assert!(drift.is_empty(), "{}", drift.join("\n"));
    }

    /// A route lists each code once.
    #[test]
    fn no_route_lists_a_code_twice() {
        for route in ROUTES {
            let unique: BTreeSet<&str> = route.errors.iter().map(|c| c.as_str()).collect();
            assert_eq!(unique.len(), route.errors.len(), "{}", name(route));
        }
    }
}
