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
use crate::lifecycle::LifecycleError;
use crate::publish::workflow::WorkflowError;
use crate::source::SyncError;
use crate::store::StoreError;

use super::{health, logs, metrics, openapi, publish, refresh, requests, responses, webhook};

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
    pub fails: &'static [fn() -> Vec<Code>],
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
        BadRequest, BadParameter, MissingVariable, InvalidValue, InvalidName,
        Unauthorized,
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
    ]; fails: [guarded, authenticated, body, bad_request, publishing]),
    // The sync. A rejected commit answers a `RejectedCommit`.
    route!(refresh::refresh, refresh::__path_refresh => [RejectedCommit] errors: [
        Unauthorized, Forbidden, RepositoryRejected, GitFetchFailed, Internal,
    ]; fails: [guarded, authenticated, SyncError::codes]),
    // The uid, the body, the store.
    route!(responses::post, responses::__path_post => errors: [
        BadRequest, Forbidden, UnknownFunction, BodyTimeout, AlreadyAnswered,
        PayloadTooLarge, UnsupportedMediaType, StoreUnavailable,
    ]; fails: [guarded, body, bad_request, StoreError::codes]),
    // The query, the uid, the store; `internal` is the token check's
    // (its state missing), which every other authenticated route lists.
    route!(responses::get, responses::__path_get => errors: [
        BadRequest, Unauthorized, Forbidden, NotFound, StoreUnavailable, Internal,
    ]; fails: [guarded, authenticated, bad_request, not_found, store]),
    // The query's filters, the store.
    route!(requests::list, requests::__path_list => errors: [
        BadRequest, BadParameter, Unauthorized, Forbidden, StoreUnavailable, Internal,
    ]; fails: [guarded, authenticated, bad_request, bad_parameter, store]),
    // The uid, the store, and reading the objects' live status from the
    // cluster.
    route!(requests::get, requests::__path_get => errors: [
        Unauthorized, Forbidden, ClusterForbidden, NotFound, UnknownKind, ObjectRejected,
        ClusterThrottled, ClusterError, ClusterUnreachable, StoreUnavailable, Internal,
    ]; fails: [guarded, authenticated, not_found, lifecycle]),
    // The uid, the run's state, the store, and reading and deleting its
    // Jobs.
    route!(requests::cancel, requests::__path_cancel => errors: [
        Unauthorized, Forbidden, ClusterForbidden, NotFound, RunNotCancellable, UnknownKind,
        ObjectRejected, ClusterThrottled, ClusterError, ClusterUnreachable, StoreUnavailable,
        Internal,
    ]; fails: [guarded, authenticated, not_found, run_not_cancellable, lifecycle]),
    // The query, the uid, the bound on log streams, the store, and reading
    // pods and their logs.
    route!(logs::get, logs::__path_get => errors: [
        BadRequest, Unauthorized, Forbidden, ClusterForbidden, NotFound, UnknownKind,
        ObjectRejected, TooManyRequests, ClusterThrottled, ClusterError, ClusterUnreachable,
        StoreUnavailable, Internal,
    ]; fails: [guarded, authenticated, bad_request, not_found, store, cluster_logs]),
    // The uid, the store.
    route!(requests::tree, requests::__path_tree => errors: [
        Unauthorized, Forbidden, NotFound, StoreUnavailable, Internal,
    ]; fails: [guarded, authenticated, not_found, store]),
    // The uid, the run's state, then everything a publish of its topic may
    // meet.
    route!(requests::retry, requests::__path_retry => errors: [
        BadRequest, BadParameter, MissingVariable, InvalidValue, InvalidName, Unauthorized,
        Forbidden, PolicyViolation, ClusterForbidden, UnknownTopic, NotFound, NotOwned, JobExists,
        RunNotRetryable, ObjectRejected, UnknownKind, InvalidObject, TopicBusy, TooManyRequests,
        ClusterThrottled, ClusterError, ClusterUnreachable, StoreUnavailable, NotReady, Internal,
    ]; fails: [guarded, authenticated, retrying]),
    // Enabled or not, the body, the signature, the delivery id and the
    // store that remembers it.
    route!(webhook::git, webhook::__path_git => errors: [
        BadRequest, Unauthorized, Forbidden, NotFound, BodyTimeout, DeliveryReplayed,
        PayloadTooLarge, StoreUnavailable,
    ]; fails: [guarded, limited_body, bad_request, not_found, unauthorized, delivery_replayed, store]),
    route!(metrics::metrics, metrics::__path_metrics => errors: [Forbidden]; fails: [guarded]),
    // The probes answer whatever the Host.
    route!(health::healthz, health::__path_healthz => errors: []; fails: []),
    // The Python gitfaas' liveness path, which its chart probes.
    route!(health::alive, health::__path_alive => errors: []; fails: []),
    // No snapshot yet, or the API server does not answer.
    route!(health::readyz, health::__path_readyz => errors: [NotReady]; fails: [not_ready]),
    route!(health::status, health::__path_status => errors: [Forbidden]; fails: [guarded]),
    // The API described (OpenAPI 3.1), open like the probes.
    route!(openapi::spec, openapi::__path_spec => errors: [Forbidden]; fails: [guarded]),
];

// The layers in front of the handlers, and the HTTP layer's own refusals:
// what each can answer.

/// `browser::guard`: a foreign Host, a cross-site browser (every route but
/// the probes).
fn guarded() -> Vec<Code> {
    vec![Code::Forbidden]
}

/// The `Authenticated` extractor: no or a wrong token; its state missing.
fn authenticated() -> Vec<Code> {
    vec![Code::Unauthorized, Code::Internal]
}

/// `read_body`: the content type, the size, the time, JSON that is not.
fn body() -> Vec<Code> {
    vec![
        Code::UnsupportedMediaType,
        Code::PayloadTooLarge,
        Code::BodyTimeout,
        Code::BadRequest,
    ]
}

/// `read_limited`: the size, the time, a broken body.
fn limited_body() -> Vec<Code> {
    vec![Code::PayloadTooLarge, Code::BodyTimeout, Code::BadRequest]
}

/// A malformed query string or header (`ApiError::bad_request`, the
/// `QueryConfig` of `configure`).
fn bad_request() -> Vec<Code> {
    vec![Code::BadRequest]
}

/// `GET /requests`' filters.
fn bad_parameter() -> Vec<Code> {
    vec![Code::BadParameter]
}

/// No such run (`ApiError::unknown_run`), or the webhook disabled.
fn not_found() -> Vec<Code> {
    vec![Code::NotFound]
}

/// A webhook's signature.
fn unauthorized() -> Vec<Code> {
    vec![Code::Unauthorized]
}

/// A webhook delivery seen before.
fn delivery_replayed() -> Vec<Code> {
    vec![Code::DeliveryReplayed]
}

/// A finished run, or one being applied.
fn run_not_cancellable() -> Vec<Code> {
    vec![Code::RunNotCancellable]
}

/// No snapshot, or the API server does not answer.
fn not_ready() -> Vec<Code> {
    vec![Code::NotReady]
}

// Where an error type is wider than what a handler's calls of it can give:
// its codes (exhaustive, so a new variant still flows in) less those these
// calls cannot give, each with why. These are the claims the types do not
// check; `except` at least fails on one that names a code the type no
// longer has.

/// `codes` less `never`, every one of which must be in `codes`.
fn except(codes: Vec<Code>, never: &[Code]) -> Vec<Code> {
    for code in never {
        assert!(codes.contains(code), "{code} is no longer one of the codes");
    }
    codes.into_iter().filter(|c| !never.contains(c)).collect()
}

/// The store, called for anything but a function's answer: only a
/// function's answer (`check_function`, `put_response`) names a function
/// uid, so the others fail only as unavailable.
fn store() -> Vec<Code> {
    except(
        StoreError::codes(),
        &[Code::UnknownFunction, Code::AlreadyAnswered],
    )
}

/// Cluster reads and deletes (a run's view, its cancel): they apply
/// nothing, so no object is invalid, not owned or an existing Job; and the
/// store as [`store`].
fn lifecycle() -> Vec<Code> {
    except(
        LifecycleError::codes(),
        &[
            Code::UnknownFunction,
            Code::AlreadyAnswered,
            Code::InvalidObject,
            Code::NotOwned,
            Code::JobExists,
        ],
    )
}

/// Reading pods and their logs: they apply nothing (as [`lifecycle`]).
fn cluster_logs() -> Vec<Code> {
    except(
        LogError::codes(),
        &[Code::InvalidObject, Code::NotOwned, Code::JobExists],
    )
}

/// `Publisher::publish` (and `admit`): never a retry's own refusals (no
/// such run, not retryable), and the store as [`store`].
fn publishing() -> Vec<Code> {
    except(
        WorkflowError::codes(),
        &[
            Code::NotFound,
            Code::RunNotRetryable,
            Code::UnknownFunction,
            Code::AlreadyAnswered,
        ],
    )
}

/// `Publisher::retry_run` (and `admit`): a retry sends no Idempotency-Key,
/// and the store as [`store`].
fn retrying() -> Vec<Code> {
    except(
        WorkflowError::codes(),
        &[
            Code::IdempotencyMismatch,
            Code::IdempotencyInProgress,
            Code::UnknownFunction,
            Code::AlreadyAnswered,
        ],
    )
}

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

    /// Every code a route's handler can answer is one it documents: its
    /// error sources (each an error type's exhaustive `codes()`, or a
    /// layer's refusals) against its row.
    #[test]
    fn every_code_a_handler_can_answer_is_documented_for_its_route() {
        let mut undocumented = Vec::new();
        for route in ROUTES {
            let documented: BTreeSet<&str> = route.errors.iter().map(|c| c.as_str()).collect();
            let possible: BTreeSet<&str> = route
                .fails
                .iter()
                .flat_map(|f| f())
                .map(Code::as_str)
                .collect();
            let missing: Vec<&&str> = possible.difference(&documented).collect();
            if !missing.is_empty() {
                undocumented.push(format!("{}: {missing:?}", name(route)));
            }
        }
        assert!(
            undocumented.is_empty(),
            "undocumented codes:\n{}",
            undocumented.join("\n")
        );
    }

    /// Every code a route documents is one its error sources can give: the
    /// document promises nothing the handler cannot answer.
    #[test]
    fn every_documented_code_is_reachable() {
        let mut unreachable = Vec::new();
        for route in ROUTES {
            let possible: Vec<Code> = route.fails.iter().flat_map(|f| f()).collect();
            for code in route.errors {
                if !possible.contains(code) {
                    unreachable.push(format!("{}: {code}", name(route)));
                }
            }
        }
        assert!(
            unreachable.is_empty(),
            "documented, not reachable:\n{}",
            unreachable.join("\n")
        );
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
