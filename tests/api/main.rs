//! Integration tests of the gitfaas API against the real local control plane
//! (`make cluster-up`): each test gets a fresh git repository, its own
//! namespace and a server on a random port.

#[path = "../common/mod.rs"]
mod common;

mod binary;
pub(crate) mod callbacks;
mod cli;
mod cloudevents;
mod compat;
mod console;
mod faults;
mod fields;
mod filters;
mod hardening;
mod helpers;
mod identity;
mod image;
mod kit;
mod lifecycle;
mod logs;
pub(crate) mod outage;
mod ownership;
mod policy;
mod publish;
mod queue;
mod realnode;
mod retries;
mod runs;
mod schedules;
mod sync;
mod topics;
