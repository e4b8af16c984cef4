//! Why a publish fails before anything is applied, and its error code.

use super::Report;
use crate::cluster::ApplyError;
use crate::error::Code;
use crate::policy::Violation;
use crate::template::TemplateError;

/// Errors that fail a publish before anything is applied.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No snapshot has been loaded yet.
    #[error("no functions loaded yet: the first sync of the repository has not succeeded ({0}); see GET /status")]
    NoSnapshot(String),
    /// The topic is not in the live config.
    #[error("unknown topic `{topic}`: the repository's config (commit {commit}) has no such topic{}; known topics: {known}", did_you_mean(.topic))]
    UnknownTopic {
        /// The requested topic.
        topic: String,
        /// The commit serving.
        commit: String,
        /// Some known topic names.
        known: String,
    },
    /// A query parameter is not usable.
    #[error("{0}")]
    BadParameter(String),
    /// Variables used by the topic's manifests have no value.
    #[error("{}", missing_message(.names))]
    Missing {
        /// Every missing name.
        names: Vec<String>,
    },
    /// The topic's manifests use a CloudEvent's attributes, and the
    /// publish is no CloudEvent.
    #[error("{}", not_an_event_message(.names))]
    NotACloudEvent {
        /// Every CloudEvent variable the manifests use.
        names: Vec<String>,
    },
    /// `{{body.…}}` variables the body cannot fill (a missing field,
    /// `null`, an object or a list, a body that is not JSON).
    #[error("{}", body_fields_message(.0))]
    BodyField(Vec<super::fields::FieldError>),
    /// The topic's filter cannot decide on this request.
    #[error("the filter of topic `{topic}` ({expression}) cannot decide on this request: {reason}; nothing was applied")]
    Filter {
        /// The topic.
        topic: String,
        /// The filter as written in config.json.
        expression: String,
        /// Why.
        reason: String,
    },
    /// A value broke a manifest.
    #[error("{path}: {source}")]
    Template {
        /// The manifest.
        path: String,
        /// What is wrong.
        #[source]
        source: TemplateError,
    },
    /// A rendered name breaks Kubernetes' rules for it.
    #[error("{path}: {source}")]
    Name {
        /// The manifest.
        path: String,
        /// Which field and rule.
        #[source]
        source: crate::names::NameError,
    },
    /// Policy refuses an object.
    #[error("{path}: {source}")]
    Policy {
        /// The manifest.
        path: String,
        /// The violation.
        #[source]
        source: Violation,
    },
    /// A kind or namespace could not be resolved, or the cluster is unreachable.
    #[error("{path}: {source}")]
    Cluster {
        /// The manifest.
        path: String,
        /// What failed.
        #[source]
        source: ApplyError,
    },
    /// The topic has as many active Jobs as its `maxConcurrent`.
    #[error("topic `{topic}` already has {active} unfinished run(s), its maxConcurrent is {max}: retry when one has finished")]
    Busy {
        /// The topic.
        topic: String,
        /// Unfinished runs (or active Jobs counted, when more).
        active: u64,
        /// The limit.
        max: u32,
    },
    /// The topic's queue is full (`maxQueued`).
    #[error("topic `{topic}` has {active} unfinished run(s), its maxConcurrent is {max}, and {queued} waiting, as many as its maxQueued allows: retry when one has started, or raise the topic's maxQueued in config.json (at most 100000)")]
    QueueFull {
        /// The topic.
        topic: String,
        /// Slots held.
        active: u64,
        /// The limit.
        max: u32,
        /// Runs waiting.
        queued: u64,
    },
    /// The run does not fit in what the topic's queue may hold (`maxQueuedBytes`).
    #[error("topic `{topic}` has {active} unfinished run(s), its maxConcurrent is {max}, and {queued} waiting that take {queued_bytes} bytes: this run ({run_bytes} bytes, its manifests and its body) would pass the topic's maxQueuedBytes ({max_bytes}): retry when one has started, send a smaller body, or raise maxQueuedBytes in config.json (at most 1073741824, 1 GiB)")]
    QueueFullOfBytes {
        /// The topic.
        topic: String,
        /// Slots held.
        active: u64,
        /// The limit.
        max: u32,
        /// Runs waiting.
        queued: u64,
        /// What they take.
        queued_bytes: u64,
        /// What this one would.
        run_bytes: u64,
        /// `maxQueuedBytes`.
        max_bytes: u64,
    },
    /// A fault of gitfaas itself.
    #[error("{0}")]
    Internal(String),
    /// The server-side dry run of the topic failed: nothing was applied.
    #[error("nothing was applied: the dry run of {path} failed: {source}")]
    DryRun {
        /// The manifest that failed.
        path: String,
        /// Why.
        #[source]
        source: ApplyError,
        /// The report, every entry marked.
        report: Box<Report>,
    },
}

impl PublishError {
    /// What kind of failure this is; a cluster failure or a failed dry run
    /// is its apply error's kind.
    pub fn kind(&self) -> Code {
        match self {
            PublishError::NoSnapshot(_) => Code::NotReady,
            PublishError::UnknownTopic { .. } => Code::UnknownTopic,
            PublishError::BadParameter(_) => Code::BadParameter,
            PublishError::Missing { .. } | PublishError::NotACloudEvent { .. } => {
                Code::MissingVariable
            }
            PublishError::BodyField(_) => Code::BodyField,
            PublishError::Filter { .. } => Code::FilterFailed,
            PublishError::Template { .. } => Code::InvalidValue,
            PublishError::Name { .. } => Code::InvalidName,
            PublishError::Policy { .. } => Code::PolicyViolation,
            PublishError::Busy { .. }
            | PublishError::QueueFull { .. }
            | PublishError::QueueFullOfBytes { .. } => Code::TopicBusy,
            PublishError::Internal(_) => Code::Internal,
            PublishError::Cluster { source, .. } | PublishError::DryRun { source, .. } => {
                source.kind()
            }
        }
    }

    /// Every code [`kind`](Self::kind) can give: what the route table
    /// (`http::routes`) checks each route's documented errors against. The
    /// match has no wildcard, like kind's: a new variant does not compile
    /// until its codes are listed here too.
    pub fn codes() -> Vec<Code> {
        let _every_variant_is_listed = |e: &Self| match e {
            PublishError::NoSnapshot(_)
            | PublishError::UnknownTopic { .. }
            | PublishError::BadParameter(_)
            | PublishError::Missing { .. }
            | PublishError::NotACloudEvent { .. }
            | PublishError::BodyField(_)
            | PublishError::Filter { .. }
            | PublishError::Template { .. }
            | PublishError::Name { .. }
            | PublishError::Policy { .. }
            | PublishError::Busy { .. }
            | PublishError::QueueFull { .. }
            | PublishError::QueueFullOfBytes { .. }
            | PublishError::Internal(_)
            | PublishError::Cluster { .. }
            | PublishError::DryRun { .. } => (),
        };
        [
            vec![
                Code::NotReady,
                Code::UnknownTopic,
                Code::BadParameter,
                Code::MissingVariable,
                Code::BodyField,
                Code::FilterFailed,
                Code::InvalidValue,
                Code::InvalidName,
                Code::PolicyViolation,
                Code::TopicBusy,
                Code::Internal,
            ],
            crate::cluster::ApplyError::codes(),
        ]
        .concat()
    }
}

/// The message of [`PublishError::Missing`]; total, an empty list included
/// (indexing `names[0]` in the format string panicked on one).
fn missing_message(names: &[String]) -> String {
    let (plural, pronoun) = match names.len() {
        1 => ("", "it"),
        _ => ("s", "them"),
    };
    let listed = match names.len() {
        0 => String::new(),
        _ => format!(": {}", names.join(", ")),
    };
    let scheduled = crate::template::SCHEDULED_TIME;
    if names.iter().any(|n| n == scheduled) {
        // Not a parameter a caller can give: only a tick sets it.
        return format!(
            "missing template variable{plural}{listed}; {{{{{scheduled}}}}} is set only for the runs the topic's schedule fires (the tick's time), never by a publish: let the schedule run this topic, or write its manifests without {{{{{scheduled}}}}}"
        );
    }
    let example = names.first().map_or("name", String::as_str);
    format!(
        "missing template variable{plural}{listed}; pass {pronoun} as query parameter{plural} (e.g. ?{example}=value)"
    )
}

/// The message of [`PublishError::NotACloudEvent`].
fn not_an_event_message(names: &[String]) -> String {
    let plural = if names.len() == 1 { "" } else { "s" };
    format!(
        "missing template variable{plural}: {}; the topic's manifests use a CloudEvent's attributes, so this topic expects a CloudEvent: send one in binary mode (headers ce-specversion: 1.0, ce-id, ce-source, ce-type; the body is its data) or structured mode (Content-Type: application/cloudevents+json)",
        names.join(", ")
    )
}

/// The message of [`PublishError::BodyField`]: every variable and why.
fn body_fields_message(errors: &[super::fields::FieldError]) -> String {
    let each: Vec<String> = errors
        .iter()
        .map(|e| format!("{{{{{}}}}}: {}", e.path, e.reason))
        .collect();
    format!(
        "the body cannot fill {}: {}; nothing was applied",
        if errors.len() == 1 {
            "a variable"
        } else {
            "variables"
        },
        each.join("; ")
    )
}

/// For a topic written with `&` where `?` was meant (the Python README's
/// `/publish/mytopic&replicas=2`): the URL that was meant.
pub(super) fn did_you_mean(topic: &str) -> String {
    match topic.split_once('&') {
        Some((name, query)) if !name.is_empty() && query.contains('=') => {
            format!("; did you mean `/publish/{name}?{query}` (query parameters start with `?`)")
        }
        _ => String::new(),
    }
}
