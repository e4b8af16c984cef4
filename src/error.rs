//! What kind of failure an error is, classified once.
//!
//! Every module's error says which [`Code`] it is (`kind()`); the HTTP layer
//! answers a code's status ([`Code::status`]) and puts the code in every
//! error body next to the message, so a client can branch on `code` without
//! parsing English. The codes are part of the API (README, "Error codes"):
//! this module owns their one table (`codes!`), from which the enum, its
//! spelling, its status, the README's table (checked by a test) and the
//! OpenAPI document's codes come. Add new rows, never rename one.

/// Declares every code, one row each: the variant, its spelling, its HTTP
/// status and its meaning. [`Code`], [`Code::ALL`], [`Code::as_str`],
/// [`Code::status`], [`Code::meaning`] (and through them the README's
/// table and the OpenAPI document) all come from the one list below.
macro_rules! codes {
    ($($variant:ident = $spelled:literal, $status:literal, $meaning:literal;)+) => {
        /// A stable, machine-readable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $(#[doc = $meaning] $variant,)+
        }

        impl Code {
            /// Every code, in the table's order (the README's, the spec's).
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];

            /// The code as it appears in error bodies.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $spelled,)+
                }
            }

            /// The HTTP status this kind of error answers with: the one map
            /// (the HTTP layer and a stored answer, replayed later, both use
            /// it).
            pub fn status(self) -> u16 {
                match self {
                    $(Code::$variant => $status,)+
                }
            }

            /// What the code means, as the README's table says it.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => $meaning,)+
                }
            }
        }
    };
}

// The API's contract (README, "Error codes"): a row is added, never renamed
// nor given another status.
codes! {
    BadRequest = "bad_request", 400, "The request is malformed (a header, the query string, the body)";
    BadParameter = "bad_parameter", 400, "A query parameter cannot be a template variable";
    MissingVariable = "missing_variable", 400, "A template variable of the topic has no value";
    BodyField = "body_field", 400, "A {{body.…}} variable names a field the body lacks, or one that is null, an object or a list, or the body is not JSON";
    FilterFailed = "filter_failed", 400, "The topic's filter cannot decide on the request (a missing field, a wrong type, not a boolean)";
    InvalidValue = "invalid_value", 400, "A value would break its manifest";
    InvalidName = "invalid_name", 400, "A rendered object name breaks Kubernetes' rule for it";
    BadCloudEvent = "bad_cloudevent", 400, "A CloudEvent is incomplete or malformed (an attribute, a ce- header's encoding, the structured JSON)";
    Unauthorized = "unauthorized", 401, "Missing or wrong credentials";
    Forbidden = "forbidden", 403, "Refused whoever asks (a browser from another site, a foreign Host)";
    PolicyViolation = "policy_violation", 403, "The policy refuses an object of the topic";
    AccessDenied = "access_denied", 403, "The caller's Kubernetes identity lacks the gitfaas.io permission the route needs (RBAC, --auth kubernetes)";
    ClusterForbidden = "cluster_forbidden", 403, "The API server refused gitfaas' own credentials (RBAC)";
    UnknownTopic = "unknown_topic", 404, "No such topic";
    UnknownFunction = "unknown_function", 404, "No such (or an expired) function uid";
    NotFound = "not_found", 404, "No such request, or route";
    MethodNotAllowed = "method_not_allowed", 405, "The path exists, the method does not";
    BodyTimeout = "body_timeout", 408, "The body did not arrive in time";
    NotOwned = "not_owned", 409, "An object exists that is not the topic's own";
    JobExists = "job_exists", 409, "A Job of that name exists";
    AlreadyAnswered = "already_answered", 409, "The function has already answered";
    IdempotencyInProgress = "idempotency_in_progress", 409, "A publish with this Idempotency-Key is still in progress";
    DeliveryReplayed = "delivery_replayed", 409, "This webhook delivery was received before";
    RunNotCancellable = "run_not_cancellable", 409, "The run has finished, or is being applied (retry in a moment)";
    RunNotRetryable = "run_not_retryable", 409, "Only a run whose apply failed (a dead letter) can be re-run";
    PayloadTooLarge = "payload_too_large", 413, "The body is over the limit";
    UnsupportedMediaType = "unsupported_media_type", 415, "The content type is not accepted";
    IdempotencyMismatch = "idempotency_mismatch", 422, "An Idempotency-Key reused for another request";
    ObjectRejected = "object_rejected", 422, "The API server rejected an object as invalid";
    UnknownKind = "unknown_kind", 422, "The cluster does not serve the object's kind";
    InvalidObject = "invalid_object", 422, "The object cannot be applied as written";
    RepositoryRejected = "repository_rejected", 422, "The repository's commit was refused; the previous one serves on";
    TopicBusy = "topic_busy", 429, "The topic is at its maxConcurrent (and its queue, if it queues, holds maxQueued runs, or the run would take it past maxQueuedBytes; the message says which)";
    TooManyRequests = "too_many_requests", 429, "Too many publishes in flight, or waiting";
    ClusterThrottled = "cluster_throttled", 429, "The API server asks gitfaas to slow down";
    ClusterError = "cluster_error", 502, "The API server failed (5xx)";
    GitFetchFailed = "git_fetch_failed", 502, "Fetching the repository failed";
    ClusterUnreachable = "cluster_unreachable", 503, "The API server cannot be reached";
    AuthUnavailable = "auth_unavailable", 503, "The API server cannot review the caller's token or permission now (--auth kubernetes)";
    StoreUnavailable = "store_unavailable", 503, "The store cannot be reached";
    NotReady = "not_ready", 503, "No functions loaded yet, or not ready";
    Internal = "internal", 500, "A fault of gitfaas itself or of its configuration";
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// In the OpenAPI spec (`GET /openapi.json`): a string, one of every
/// code's spelling, taken from [`Code::ALL`] so that a new code is in the
/// spec the moment it exists.
impl utoipa::PartialSchema for Code {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "What kind of error: stable, added to and never renamed (README, \"Error codes\")",
            ))
            .enum_values(Some(Code::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl utoipa::ToSchema for Code {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_and_spelled_in_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c} listed twice");
            assert!(
                c.as_str()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == '_'),
                "{c}"
            );
        }
    }

    /// The README's "Error codes" table as the code table writes it.
    fn readme_table() -> String {
        let mut table = String::from("| `code` | status | meaning |\n|---|---|---|\n");
        for c in Code::ALL {
            table.push_str(&format!(
                "| `{}` | {} | {} |\n",
                c.as_str(),
                c.status(),
                c.meaning()
            ));
        }
        table
    }

    /// The README's table is the contract a client reads: it must be the
    /// code table, row for row (checked, not generated: on a mismatch, paste
    /// the table this test prints over the README's).
    #[test]
    fn the_readme_error_codes_table_is_the_code_table() {
        let readme = include_str!("../README.md");
        let expected = readme_table();
        let header = "| `code` | status | meaning |\n";
        let start = readme.find(header).expect("the README's error codes table");
        let rest = &readme[start..];
        let end = rest.find("\n\n").map_or(rest.len(), |e| e + 1);
        assert!(
            rest[..end] == expected,
            "the README's error codes table differs from the code table (src/error.rs); it should read:\n{expected}"
        );
    }
}
