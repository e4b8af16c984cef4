//! One publish, from request to report: variables → render every manifest
//! of the topic → structure check → gitfaas labels → name rules → policy →
//! resolve kinds → (dry run when the topic has several objects) → create, or
//! update the topic's own objects.
//!
//! All or nothing per publish: every manifest is rendered and checked, and
//! every kind resolved, before anything is applied; a topic of several objects
//! is dry-run applied whole first (with the ownership rules, so an object that
//! exists and is not the topic's is found before anything is applied). If an
//! apply still fails, the objects this publish created — and only those, by
//! uid — are deleted again. This module is HTTP-agnostic.

//! One concept per file, in the order a publish meets them:
//! - `render`: the variables and every manifest rendered, checked and marked;
//! - `fields`: `{{body.…}}` variables, a field of a JSON body as a value;
//! - `prepare`: the policy, kinds resolved, the dry run ([`Prepared`]);
//! - `execute`: the apply, all or nothing, with its rollback;
//! - `report`: the answer ([`Report`]) and the outcome handed down to the run;
//! - `error`: why a publish fails before anything is applied;
//! - `queued` and `lean`: a prepared publish as its topic's queue keeps it;
//! - `relaunch`: a run applied again for the dispatcher ([`Relauncher`]);
//! - `claim`: the Idempotency-Key claim, held as a guard;
//! - `workflow`: the whole of one publish, from admission to answer.

mod claim;
mod error;
mod execute;
mod fields;
mod lean;
mod prepare;
mod queued;
mod relaunch;
mod render;
mod report;
pub mod workflow;

pub use error::PublishError;
pub use execute::execute;
pub use fields::FieldError;
pub use prepare::{prepare, Prepared};
pub use queued::QueuedRun;
pub use relaunch::Relauncher;
pub use render::{
    check_params, mark, new_request_uid, payload_secret_name, random_suffix, render_topic,
    traceparent, Context, RenderedManifest, RenderedTopic, Request, PAYLOAD_SECRET_KEY, RESERVED,
};
pub use report::{ApplyEntry, Filtered, Report};

pub use crate::run::dispatch::Limit;

#[cfg(test)]
mod tests;
