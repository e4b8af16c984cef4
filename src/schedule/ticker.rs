//! Firing the ticks: on the replica that holds the Lease, each scheduled
//! topic of the live snapshot publishes an ordinary run at each of its
//! ticks, through the same [`Publisher`] as `POST /publish` (history,
//! logs, lineage, callbacks, queue and limits apply), with trigger
//! `schedule` and `{{SCHEDULED_TIME}}`, under the idempotency key
//! `<topic>@<tick>` of one fixed caller, [`SCHEDULER_CALLER`]: a tick fired
//! by two replicas is one run.
//!
//! # Which ticks fire (CronJob's semantics)
//! Per topic, the store keeps a mark: every tick up to it is done (fired,
//! skipped as missed, or before the schedule existed). At each wake-up:
//! - no tick since the mark: nothing;
//! - ticks since the mark (the replica was not leading: all replicas down,
//!   the API server unreachable, a change of leader): the most recent of
//!   them fires if it is at most `startingDeadlineSeconds` old, the
//!   others are skipped; if it is older, all are skipped. Skipped ticks
//!   count in `gitfaas_schedule_ticks_missed_total{topic}` and are logged.
//!   Never a burst: at most one late tick per topic.
//! - a schedule without a mark (new, or its expression or zone changed by
//!   a commit) starts from now: it fires from its next tick on.
//!
//! The mark moves to a tick after its publish, so a replica that dies in
//! between leaves the tick to its successor, whose publish under the same
//! key is answered with the first run. A publish that fails for a reason
//! that may pass (the store or the API server unreachable, too many
//! publishes in flight) is tried again, backing off, until the tick is
//! older than its deadline; one refused for good (the topic's limits, a
//! policy) is logged and counted in `gitfaas_schedule_ticks_failed_total`.
//!
//! A commit that changes or removes a schedule takes effect at the next
//! tick: the live snapshot is read at every wake-up (at least every
//! second).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::cron::{rfc3339, Cron};
use super::lease::Leadership;
use crate::catalog::{Schedule, Snapshot, TopicName};
use crate::error::Code;
use crate::publish::workflow::{Order, Outcome, Publisher, WorkflowError};
use crate::source::Syncer;
use crate::store::{Store, Trigger};
use crate::uid::{IdempotencyKey, RequestUid};

/// Who a tick publishes as: what scopes its idempotency keys. An HTTP
/// caller is `open` or `t-<hex>`, so no caller shares this scope.
pub const SCHEDULER_CALLER: &str = "schedule";

/// The longest the ticker sleeps: how soon it sees a new commit, a lost
/// Lease or a won one.
const MAX_NAP: Duration = Duration::from_secs(1);

/// Skipped ticks counted one by one at most this many times per decision
/// (years of a minutely schedule are not walked through).
const MAX_COUNTED: u64 = 10_000;

/// What a topic's schedule should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// No tick is pending; the next is `next`.
    Wait {
        /// The next tick.
        next: Timestamp,
    },
    /// Fire `tick`; the `missed` pending ticks before it are skipped.
    Fire {
        /// The tick to fire.
        tick: Timestamp,
        /// The pending ticks before it, skipped.
        missed: u64,
    },
    /// Every pending tick is past its deadline: `missed` are skipped, the
    /// last of them `through`.
    Skip {
        /// The last skipped tick.
        through: Timestamp,
        /// How many (at most [`MAX_COUNTED`]).
        missed: u64,
    },
}

/// What `cron`, done through `done`, should do at `now`, its late ticks
/// allowed `deadline`. Pure: the unit tests give it any clock.
pub fn due(cron: &Cron, done: Timestamp, now: Timestamp, deadline: Duration) -> Due {
    let last = cron.last_at_or_before(now).filter(|t| *t > done);
    let Some(last) = last else {
        let from = if done > now { done } else { now };
        return match cron.next_after(from) {
            Some(next) => Due::Wait { next },
            // Past croner's horizon: look again in a while.
            None => Due::Wait {
                next: now
                    .saturating_add(jiff::SignedDuration::from_hours(24))
                    .unwrap_or(now),
            },
        };
    };
    let mut before = 0u64;
    let mut t = done;
    while before < MAX_COUNTED {
        match cron.next_after(t) {
            Some(next) if next < last => {
                before += 1;
                t = next;
            }
            _ => break,
        }
    }
    let late = now.duration_since(last);
    let deadline = jiff::SignedDuration::try_from(deadline).unwrap_or(jiff::SignedDuration::MAX);
    if late <= deadline {
        Due::Fire {
            tick: last,
            missed: before,
        }
    } else {
        Due::Skip {
            through: last,
            missed: before.saturating_add(1).min(MAX_COUNTED),
        }
    }
}

/// Where one topic's schedule stands, as this replica knows it while it
/// leads.
#[derive(Debug)]
struct Entry {
    /// The schedule it is about ([`Cron::identity`]).
    identity: String,
    /// Every tick up to this is done.
    done: Timestamp,
    /// Nothing to do before this tick.
    next: Option<Timestamp>,
    /// A publish that failed for a passing reason is tried again then.
    retry_at: Option<Instant>,
    /// The wait before the next try.
    backoff: Duration,
}

/// The first wait before a failed publish is tried again; it doubles up
/// to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// How a tick's publish ended.
enum Fired {
    /// A run exists for the tick (applied, queued, failed in its apply,
    /// or fired before): the tick is done.
    Done,
    /// Refused for good (the topic's limits, a policy, a template): the
    /// tick is done, without a run.
    Refused,
    /// Failed for a reason that may pass: try again.
    Again,
}

/// Fires the schedules of the live snapshot while this replica leads.
pub struct Ticker {
    syncer: Arc<Syncer>,
    publisher: Arc<Publisher>,
    store: Store,
    leadership: Arc<Leadership>,
}

impl Ticker {
    /// A ticker over the application's parts.
    pub fn new(
        syncer: Arc<Syncer>,
        publisher: Arc<Publisher>,
        store: Store,
        leadership: Arc<Leadership>,
    ) -> Self {
        Ticker {
            syncer,
            publisher,
            store,
            leadership,
        }
    }

    /// Fires until `token` is cancelled; a publish in progress finishes.
    pub async fn run(self: Arc<Self>, token: CancellationToken) {
        let mut entries: HashMap<TopicName, Entry> = HashMap::new();
        let mut term: Option<u64> = None;
        while !token.is_cancelled() {
            let nap = self.step(&mut entries, &mut term).await;
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(nap) => {}
            }
        }
        tracing::debug!("scheduler stopped");
    }

    /// One wake-up: every due tick fired; how long to sleep.
    async fn step(
        &self,
        entries: &mut HashMap<TopicName, Entry>,
        term: &mut Option<u64>,
    ) -> Duration {
        let now_term = self.leadership.term();
        if now_term != *term {
            // A new term (or none): what another replica did meanwhile is
            // in the store, not here.
            entries.clear();
            *term = now_term;
        }
        let (Some(current), Some(snapshot)) = (now_term, self.syncer.snapshot()) else {
            return MAX_NAP;
        };
        entries.retain(|name, _| {
            snapshot
                .topics
                .get(name)
                .is_some_and(|t| t.schedule.is_some())
        });
        let mut nap = MAX_NAP;
        for topic in snapshot.topics.values() {
            let Some(schedule) = &topic.schedule else {
                continue;
            };
            if self.leadership.term() != Some(current) {
                return Duration::ZERO;
            }
            if let Some(wait) = self
                .topic(&snapshot, &topic.name, schedule, entries, current)
                .await
            {
                nap = nap.min(wait);
            }
        }
        nap
    }

    /// One topic: its entry (read from the store at the start of a term),
    /// then what is due. How long until it needs looking at again, if known.
    async fn topic(
        &self,
        snapshot: &Arc<Snapshot>,
        name: &TopicName,
        schedule: &Schedule,
        entries: &mut HashMap<TopicName, Entry>,
        term: u64,
    ) -> Option<Duration> {
        let identity = schedule.cron.identity();
        let now = Timestamp::now();
        let fresh = entries.get(name).is_none_or(|e| e.identity != identity);
        if fresh {
            let entry = self.load(name, schedule, now).await?;
            entries.insert(name.clone(), entry);
        }
        let entry = entries.get_mut(name)?;
        if let Some(at) = entry.retry_at {
            if Instant::now() < at {
                return Some(at.saturating_duration_since(Instant::now()));
            }
        }
        if let Some(next) = entry.next {
            if now < next {
                return Some(until(now, next));
            }
        }
        match due(&schedule.cron, entry.done, now, schedule.starting_deadline) {
            Due::Wait { next } => {
                entry.next = Some(next);
                Some(until(now, next))
            }
            Due::Skip { through, missed } => {
                missed_ticks(name, schedule, missed, Some(through));
                self.advance(name, identity, entry, through).await;
                Some(Duration::ZERO)
            }
            Due::Fire { tick, missed } => {
                if missed > 0 {
                    missed_ticks(name, schedule, missed, None);
                    // Recorded before the fire, so a retry does not count
                    // them again.
                    let before = tick
                        .checked_sub(jiff::SignedDuration::from_secs(1))
                        .unwrap_or(tick);
                    self.advance(name, identity, entry, before).await;
                }
                let firing = self.leadership.firing().await;
                if self.leadership.term() != Some(term) {
                    return Some(Duration::ZERO);
                }
                let fired = self.fire(snapshot, name, schedule, tick).await;
                drop(firing);
                match fired {
                    Fired::Done | Fired::Refused => {
                        entry.retry_at = None;
                        entry.backoff = FIRST_BACKOFF;
                        self.advance(name, identity, entry, tick).await;
                        Some(Duration::ZERO)
                    }
                    Fired::Again => {
                        let wait = entry.backoff;
                        entry.retry_at = Some(Instant::now() + wait);
                        entry.backoff = (entry.backoff * 2).min(MAX_BACKOFF);
                        Some(wait)
                    }
                }
            }
        }
    }

    /// A topic's entry at the start of a term: its mark, if it is about
    /// this schedule; else the schedule starts now (its mark written).
    async fn load(&self, name: &TopicName, schedule: &Schedule, now: Timestamp) -> Option<Entry> {
        let identity = schedule.cron.identity();
        let mark = match self.store.schedule_mark(name.as_ref()).await {
            Ok(mark) => mark,
            Err(e) => {
                tracing::warn!(topic = %name, error = %e, "cannot read the schedule's mark; tried again in a moment");
                return None;
            }
        };
        let done = match mark {
            Some(m) if m.schedule == identity => {
                Timestamp::from_second(m.done_through).unwrap_or(now)
            }
            other => {
                tracing::info!(
                    topic = %name,
                    cron = schedule.cron.expression(),
                    timezone = schedule.cron.timezone(),
                    replaced = other.map(|m| m.schedule),
                    "a new schedule: it fires from its next tick on"
                );
                if let Err(e) = self
                    .store
                    .set_schedule_mark(name.as_ref(), identity, now.as_second())
                    .await
                {
                    tracing::warn!(topic = %name, error = %e, "cannot write the schedule's mark; tried again in a moment");
                    return None;
                }
                now
            }
        };
        Some(Entry {
            identity: identity.to_string(),
            done,
            next: None,
            retry_at: None,
            backoff: FIRST_BACKOFF,
        })
    }

    /// Every tick of the topic up to `through` is done: here, and in the
    /// store while this replica still leads (a replica that lost the Lease
    /// writes nothing its successor could read as newer).
    async fn advance(
        &self,
        name: &TopicName,
        identity: &str,
        entry: &mut Entry,
        through: Timestamp,
    ) {
        entry.done = through;
        entry.next = None;
        if !self.leadership.leads() {
            return;
        }
        if let Err(e) = self
            .store
            .set_schedule_mark(name.as_ref(), identity, through.as_second())
            .await
        {
            // The next leader may fire this tick again: its key makes that
            // the same run.
            tracing::warn!(topic = %name, error = %e, "cannot write the schedule's mark");
        }
    }

    /// Publishes the topic's run for `tick`.
    async fn fire(
        &self,
        snapshot: &Arc<Snapshot>,
        name: &TopicName,
        schedule: &Schedule,
        tick: Timestamp,
    ) -> Fired {
        let scheduled_time = rfc3339(tick);
        let request_uid = RequestUid::new();
        let span = tracing::info_span!(
            "tick",
            topic = %name,
            scheduled_time,
            request_uid = request_uid.as_str(),
            commit = snapshot.commit.as_str()
        );
        let admission = match self.publisher.admit() {
            Ok(a) => a,
            Err(e) => {
                span.in_scope(|| {
                    tracing::warn!(error = %e, "the tick waits: too many publishes in flight");
                });
                return Fired::Again;
            }
        };
        let order = Order {
            request_uid,
            topic: name.to_string(),
            caller: SCHEDULER_CALLER.to_string(),
            body: bytes::Bytes::from(schedule.body.clone()),
            params: schedule.params.clone(),
            dry_run: false,
            wait: None,
            idempotency_key: Some(IdempotencyKey::for_tick(name.as_ref(), &scheduled_time)),
            callback: None,
            parent: None,
            parent_function: None,
            trace_id: None,
            retry_of: None,
            trigger: Trigger::Schedule,
            scheduled_time: Some(scheduled_time.clone()),
            cloudevent: None,
            // A topic's filter decides on what arrives from outside; a
            // tick is the repository's own (its body and params are
            // checked with the commit), so it is not filtered.
            filter: None,
        };
        span.in_scope(|| tracing::info!("firing a schedule's tick"));
        let metrics = crate::metrics::get();
        let result = self
            .publisher
            .publish(admission, order, std::future::pending())
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        match result {
            Ok(Outcome::Replayed { request_uid, .. }) => {
                tracing::info!(
                    run = request_uid.as_str(),
                    "the tick had fired already (this run stands)"
                );
                Fired::Done
            }
            Ok(_) => {
                metrics.schedule_tick(name.as_ref(), "fired");
                tracing::info!("the schedule's tick fired");
                Fired::Done
            }
            Err(WorkflowError::Failed(report)) => {
                metrics.schedule_tick(name.as_ref(), "fired");
                tracing::warn!(
                    error = report.message.as_deref().unwrap_or_default(),
                    "the schedule's tick fired and its apply failed (the run records it)"
                );
                Fired::Done
            }
            Err(e) if passing(e.kind()) => {
                tracing::warn!(code = %e.kind(), error = %e, "the schedule's tick could not fire; trying again");
                Fired::Again
            }
            Err(e) => {
                metrics.schedule_tick(name.as_ref(), "failed");
                tracing::warn!(code = %e.kind(), error = %e, "the schedule's tick was refused; no run for it");
                Fired::Refused
            }
        }
    }
}

/// Whether a publish that failed with `code` may succeed if tried again.
fn passing(code: Code) -> bool {
    matches!(
        code,
        Code::TooManyRequests
            | Code::IdempotencyInProgress
            | Code::ClusterThrottled
            | Code::ClusterError
            | Code::ClusterUnreachable
            | Code::StoreUnavailable
            | Code::NotReady
            | Code::Internal
    )
}

/// Logs and counts skipped ticks.
fn missed_ticks(name: &TopicName, schedule: &Schedule, missed: u64, last: Option<Timestamp>) {
    if missed == 0 {
        return;
    }
    crate::metrics::get().schedule_ticks_missed(name.as_ref(), missed);
    tracing::warn!(
        topic = %name,
        missed,
        last = last.map(rfc3339),
        starting_deadline_seconds = schedule.starting_deadline.as_secs(),
        "schedule ticks missed while no replica fired them: skipped (at most the most recent tick fires late, within startingDeadlineSeconds)"
    );
}

/// From `now` to `then` as a duration to sleep (zero if past).
fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    fn minutely() -> Cron {
        Cron::parse("* * * * *", None).expect("valid")
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn nothing_is_due_before_the_next_tick() {
        let due = due(
            &minutely(),
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:00:40Z"),
            MINUTE,
        );
        assert_eq!(
            due,
            Due::Wait {
                next: at("2026-01-01T00:01:00Z")
            }
        );
    }

    #[test]
    fn a_tick_fires_on_time() {
        let due = due(
            &minutely(),
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:01:00.2Z"),
            MINUTE,
        );
        assert_eq!(
            due,
            Due::Fire {
                tick: at("2026-01-01T00:01:00Z"),
                missed: 0
            }
        );
    }

    /// Down from 00:00:30 to 00:05:20: the ticks 00:01 to 00:04 are
    /// skipped, 00:05 fires (20 s late, within 60 s).
    #[test]
    fn after_downtime_only_the_most_recent_tick_fires_late() {
        let due = due(
            &minutely(),
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:05:20Z"),
            MINUTE,
        );
        assert_eq!(
            due,
            Due::Fire {
                tick: at("2026-01-01T00:05:00Z"),
                missed: 4
            }
        );
    }

    #[test]
    fn a_tick_past_its_deadline_is_skipped_with_the_others() {
        let hourly = Cron::parse("@hourly", None).expect("valid");
        let due = due(
            &hourly,
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T03:02:00Z"),
            MINUTE,
        );
        assert_eq!(
            due,
            Due::Skip {
                through: at("2026-01-01T03:00:00Z"),
                missed: 3
            }
        );
        // With a deadline of 5 minutes, 03:00 still fires.
        let due = super::due(
            &hourly,
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T03:02:00Z"),
            5 * MINUTE,
        );
        assert_eq!(
            due,
            Due::Fire {
                tick: at("2026-01-01T03:00:00Z"),
                missed: 2
            }
        );
    }

    #[test]
    fn a_long_downtime_is_counted_within_bounds() {
        let due = due(
            &minutely(),
            at("2026-01-01T00:00:00Z"),
            at("2027-01-01T00:00:30Z"),
            MINUTE,
        );
        assert_eq!(
            due,
            Due::Fire {
                tick: at("2027-01-01T00:00:00Z"),
                missed: MAX_COUNTED
            }
        );
    }

    #[test]
    fn a_clock_that_went_back_waits_for_the_tick_after_the_mark() {
        let due = due(
            &minutely(),
            at("2026-01-01T00:05:00Z"),
            at("2026-01-01T00:02:10Z"),
            MINUTE,
        );
        assert_eq!(
            due,
            Due::Wait {
                next: at("2026-01-01T00:06:00Z")
            }
        );
    }

    /// Each tick fires once: once done, the repeated hour's fixed-time
    /// tick does not come again, and an interval schedule's second half
    /// are ticks of their own.
    #[test]
    fn a_done_tick_of_the_repeated_hour_is_not_due_again() {
        let fixed = Cron::parse("30 2 * * *", Some("Europe/Paris")).expect("valid");
        // 02:30 CEST fired (00:30Z); at 02:40 CET (01:40Z) nothing is due.
        let due = due(
            &fixed,
            at("2026-10-25T00:30:00Z"),
            at("2026-10-25T01:40:00Z"),
            MINUTE,
        );
        assert_eq!(
            due,
            Due::Wait {
                next: at("2026-10-26T01:30:00Z")
            }
        );
        let interval = Cron::parse("*/30 * * * *", Some("Europe/Paris")).expect("valid");
        let due = super::due(
            &interval,
            at("2026-10-25T00:30:00Z"),
            at("2026-10-25T01:00:10Z"),
            MINUTE,
        );
        assert_eq!(
            due,
            Due::Fire {
                tick: at("2026-10-25T01:00:00Z"),
                missed: 0
            },
            "02:00 CET, after 02:30 CEST"
        );
    }

    #[test]
    fn the_skipped_hour_fires_its_fixed_tick_after_the_gap() {
        let fixed = Cron::parse("30 2 * * *", Some("Europe/Paris")).expect("valid");
        let due = due(
            &fixed,
            at("2026-03-28T12:00:00Z"),
            at("2026-03-29T01:00:05Z"),
            MINUTE,
        );
        assert_eq!(
            due,
            Due::Fire {
                tick: at("2026-03-29T01:00:00Z"),
                missed: 0
            }
        );
    }

    #[test]
    fn passing_failures_are_tried_again_and_refusals_are_not() {
        assert!(passing(Code::StoreUnavailable));
        assert!(passing(Code::IdempotencyInProgress));
        assert!(passing(Code::ClusterUnreachable));
        assert!(!passing(Code::TopicBusy));
        assert!(!passing(Code::PolicyViolation));
        assert!(!passing(Code::MissingVariable));
    }
}
