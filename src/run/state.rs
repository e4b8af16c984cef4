//! The run's state machine: every way a run's [`RunState`] changes, as one
//! pure function of the state it is in and what happened ([`Event`]).
//!
//! The workflow, the dispatcher and the run trackers decide what happened;
//! this module alone decides what state that makes, and refuses what may
//! not happen (a cancel while the apply is in flight, a finished run
//! brought back). It reads and writes nothing: the callers hold the record
//! and the store.

use crate::store::RunState;

/// What happened to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Its topic's queue took it (`"overflow": "queue"`), at publish.
    Queued,
    /// It holds a slot (or needs none): its apply starts.
    Dispatched,
    /// Its apply ended: `failed`, or applied with Jobs to follow
    /// (`has_jobs`) or without (then done).
    Applied {
        /// The apply failed (nothing of it stays applied).
        failed: bool,
        /// It applied at least one Job.
        has_jobs: bool,
    },
    /// Its objects were found in the cluster (a sweep, a takeover): applied,
    /// whatever its record said.
    FoundApplied,
    /// The gitfaas applying it stopped before anything was applied.
    ApplierLost,
    /// Its Jobs ended.
    JobsEnded {
        /// Every one succeeded.
        succeeded: bool,
    },
    /// `DELETE /requests/{uid}`.
    Cancel,
}

/// What an event does to a run in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The run moves to this state (it may be the one it is in).
    To(RunState),
    /// Nothing changes: the event came late (the run ended already, or a
    /// repeat), and is dropped.
    Stay,
    /// The event may not happen in this state; the run stays as it is and
    /// the caller says why (a cancel of a run whose apply is in flight, or
    /// that has ended).
    Refused,
}

impl Transition {
    /// The state the run is in after it: the new one, or `current` when
    /// the event is dropped or refused.
    pub fn state(self, current: RunState) -> RunState {
        match self {
            Transition::To(state) => state,
            Transition::Stay | Transition::Refused => current,
        }
    }
}

/// `state` after `event`: what [`next`] says, or `state` itself when the
/// event is dropped or refused.
pub fn after(state: RunState, event: Event) -> RunState {
    next(state, event).state(state)
}

/// What `event` makes of a run in `state`.
pub fn next(state: RunState, event: Event) -> Transition {
    use RunState::*;
    use Transition::*;
    match (state, event) {
        // At publish, before the record exists anywhere else.
        (Pending, Event::Queued) => To(Queued),
        (_, Event::Queued) => Refused,

        (Queued | Pending, Event::Dispatched) => To(Pending),
        (_, Event::Dispatched) => Stay,

        (Queued | Pending | Running, Event::Applied { failed: true, .. }) => To(Failed),
        (Queued | Pending | Running, Event::Applied { has_jobs: true, .. }) => To(Running),
        (Queued | Pending | Running, Event::Applied { .. }) => To(Succeeded),
        (_, Event::Applied { .. }) => Stay,

        (Queued | Pending | Running, Event::FoundApplied) => To(Running),
        (_, Event::FoundApplied) => Stay,

        (Pending, Event::ApplierLost) => To(Failed),
        (_, Event::ApplierLost) => Stay,

        (Queued | Pending | Running, Event::JobsEnded { succeeded: true }) => To(Succeeded),
        (Queued | Pending | Running, Event::JobsEnded { succeeded: false }) => To(Failed),
        (_, Event::JobsEnded { .. }) => Stay,

        // A queued run is taken off its queue; a running one loses its
        // Jobs; a cancelled one is cancelled again (its Jobs deleted again).
        (Queued | Running | Cancelled, Event::Cancel) => To(Cancelled),
        // Pending: its apply is in flight, and the record it writes next
        // would undo the cancel. Ended: nothing to cancel.
        (Pending | Succeeded | Failed, Event::Cancel) => Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunState::*;
    use Transition::*;

    const EVENTS: [Event; 10] = [
        Event::Queued,
        Event::Dispatched,
        Event::Applied {
            failed: true,
            has_jobs: true,
        },
        Event::Applied {
            failed: false,
            has_jobs: true,
        },
        Event::Applied {
            failed: false,
            has_jobs: false,
        },
        Event::FoundApplied,
        Event::ApplierLost,
        Event::JobsEnded { succeeded: true },
        Event::JobsEnded { succeeded: false },
        Event::Cancel,
    ];

    /// Every state × every event, in the order of [`RunState::ALL`] and
    /// [`EVENTS`]: the whole machine in one table.
    #[test]
    fn every_state_and_event() {
        let to = To;
        let table: [(RunState, [Transition; 10]); 6] = [
            (
                Pending,
                [
                    to(Queued),
                    to(Pending),
                    to(Failed),
                    to(Running),
                    to(Succeeded),
                    to(Running),
                    to(Failed),
                    to(Succeeded),
                    to(Failed),
                    Refused,
                ],
            ),
            (
                Queued,
                [
                    Refused,
                    to(Pending),
                    to(Failed),
                    to(Running),
                    to(Succeeded),
                    to(Running),
                    Stay,
                    to(Succeeded),
                    to(Failed),
                    to(Cancelled),
                ],
            ),
            (
                Running,
                [
                    Refused,
                    Stay,
                    to(Failed),
                    to(Running),
                    to(Succeeded),
                    to(Running),
                    Stay,
                    to(Succeeded),
                    to(Failed),
                    to(Cancelled),
                ],
            ),
            (
                Succeeded,
                [
                    Refused, Stay, Stay, Stay, Stay, Stay, Stay, Stay, Stay, Refused,
                ],
            ),
            (
                Failed,
                [
                    Refused, Stay, Stay, Stay, Stay, Stay, Stay, Stay, Stay, Refused,
                ],
            ),
            (
                Cancelled,
                [
                    Refused,
                    Stay,
                    Stay,
                    Stay,
                    Stay,
                    Stay,
                    Stay,
                    Stay,
                    Stay,
                    to(Cancelled),
                ],
            ),
        ];
        assert_eq!(
            table.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            RunState::ALL,
            "one row per state"
        );
        for (state, row) in table {
            for (event, want) in EVENTS.iter().zip(row) {
                assert_eq!(next(state, *event), want, "{state:?} × {event:?}");
            }
        }
    }

    /// Once ended, a run ends the same way, whatever comes late.
    #[test]
    fn an_ended_run_never_changes_but_a_cancelled_one_may_be_cancelled_again() {
        for state in [Succeeded, Failed, Cancelled] {
            for event in EVENTS {
                match next(state, event) {
                    To(s) => assert_eq!((state, s), (Cancelled, Cancelled), "{event:?}"),
                    Stay | Refused => {}
                }
            }
        }
    }
}
