//! A run after its publish: everything that happens once a topic's
//! manifests are rendered and checked, one concept per file. Nothing here
//! imports [`crate::publish`]: a publish hands its outcome down.
//!
//! - `state`: the run's state machine, every change of a run's state as one
//!   pure function of its state and what happened.
//! - `lifecycle`: the ledger of run records ([`lifecycle::Lifecycle`]);
//! - `view`: a run's view and waits;
//! - `callbacks`: callback delivery and the outbox.
//! - `runs`: the trackers of running runs, cancel, trees, logs.
//! - `outputs`: what a run keeps after its pods are gone.
//! - `dispatch`: the slots and queues of topics with `maxConcurrent`.
//! - `outcome`: what every apply of a run ends with.
//! - `rollbacks`: the runs whose failed apply is still being rolled back.

pub mod callbacks;
pub mod dispatch;
pub mod lifecycle;
pub(crate) mod outcome;
pub mod outputs;
pub mod rollbacks;
pub mod runs;
mod state;
pub mod view;

pub use state::*;
