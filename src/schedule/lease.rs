//! Which replica fires the schedules: the one holding a Kubernetes Lease
//! (`coordination.k8s.io/v1`, `--lease-name` in `--lease-namespace`), the
//! primitive controllers elect their leader with, taken and renewed as
//! client-go's `leaderelection` does, with optimistic concurrency on the
//! Lease's `resourceVersion` (a get, then a create or a replace that fails
//! if anyone wrote in between).
//!
//! - The holder renews every third of `--lease-duration`.
//! - Another replica takes the Lease over only when it has seen the same
//!   record (holder and renew time) for a whole lease duration on its own
//!   monotonic clock, never by comparing its wall clock with the holder's:
//!   clocks of two machines may disagree, their rates do not (much).
//! - The holder fires only while `now < sent + duration − margin`, `sent`
//!   being when it sent its last successful renew and `now` its monotonic
//!   clock, which runs on while the process is frozen (SIGSTOP) or its API
//!   server is unreachable. Since the renew reached the API server after
//!   `sent`, and a challenger starts counting after that, the holder stops
//!   before any challenger may start: a replica that loses its Lease stops
//!   firing before another can take it. The margin (a fifth of the
//!   duration) covers the time between the check and the publish.
//! - Only a replica whose live snapshot has a schedule campaigns: without
//!   schedules gitfaas never touches a Lease (nor needs the right to).
//! - At shutdown the holder stops firing, then gives the Lease up (an
//!   empty holder), so another replica takes it at once.
//!
//! A tick fired twice anyway (a frozen replica resumed between its check
//! and its publish) is still one run: every tick publishes under an
//! idempotency key of its own (see `ticker`).
//!
//! kube-lease-manager (which fits kube 5) was considered: it renews inside
//! its own future and tells only a boolean, so the instant of the last
//! successful renew, which the rule above needs, cannot be known; it also
//! counts in whole seconds and writes by server-side apply.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::source::Syncer;

/// What the Lease is and who this replica is.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The Lease's name (`--lease-name`).
    pub name: String,
    /// Its namespace: `--lease-namespace`, else gitfaas' own.
    pub namespace: String,
    /// `--lease-duration`.
    pub duration: Duration,
    /// `holderIdentity`: the pod (or host), the process and a random
    /// suffix, so that a restarted process is another holder.
    pub identity: String,
}

/// The `holderIdentity` of this process: `<pod or host>_<pid>_<random>`.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gitfaas".into());
    let host: String = host.chars().take(63).collect();
    format!(
        "{host}_{}_{}",
        std::process::id(),
        crate::publish::random_suffix()
    )
}

/// What this replica knows of its leadership: written by the elector,
/// read by the ticker before each fire.
pub struct Leadership {
    settings: LeaseSettings,
    // std Mutex: read or set in a few instructions, never across .await.
    state: Mutex<Held>,
    /// Held by the ticker while it fires a tick: the elector gives the
    /// Lease up at shutdown only after the fire in progress has ended.
    firing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Held {
    /// Firing is allowed before this instant (monotonic).
    until: Option<Instant>,
    /// Counts the times this replica took the Lease: the ticker reads the
    /// marks again at a new term.
    term: u64,
}

impl Leadership {
    /// Nobody leads yet.
    pub fn new(settings: LeaseSettings) -> Arc<Self> {
        Arc::new(Leadership {
            settings,
            state: Mutex::new(Held::default()),
            firing: tokio::sync::Mutex::new(()),
        })
    }

    /// The Lease and this replica's identity.
    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    fn held(&self) -> Held {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The term this replica leads in, if it may fire now.
    pub fn term(&self) -> Option<u64> {
        let held = self.held();
        held.until
            .filter(|until| Instant::now() < *until)
            .map(|_| held.term)
    }

    /// Held while a tick fires (see the elector's end): taken, then the
    /// term checked again.
    pub async fn firing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.firing.lock().await
    }

    /// Whether this replica may fire now.
    pub fn leads(&self) -> bool {
        self.term().is_some()
    }

    /// How long firing stays allowed from now (zero when not leading).
    pub fn remaining(&self) -> Duration {
        self.held().until.map_or(Duration::ZERO, |u| {
            u.saturating_duration_since(Instant::now())
        })
    }

    /// The margin kept between the end of this replica's right to fire and
    /// the first moment another may take the Lease.
    pub fn margin(&self) -> Duration {
        self.settings.duration / 5
    }

    /// A renew (or take-over) sent at `sent` succeeded.
    fn renewed(&self, sent: Instant) {
        let until = sent + self.settings.duration.saturating_sub(self.margin());
        let mut held = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let leading = held.until.is_some_and(|u| Instant::now() < u);
        if !leading {
            held.term += 1;
            crate::metrics::get().scheduler_leader.set(1);
            tracing::info!(
                lease = %self.describe(),
                identity = self.settings.identity,
                "this replica holds the scheduler's Lease: it fires the schedules"
            );
        }
        held.until = Some(until);
    }

    /// This replica may not fire any more (the Lease is another's, or
    /// given up).
    fn lost(&self, why: &str) {
        let mut held = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if held.until.take().is_some() {
            crate::metrics::get().scheduler_leader.set(0);
            tracing::info!(lease = %self.describe(), why, "this replica no longer fires the schedules");
        }
    }

    /// `namespace/name`.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.settings.namespace, self.settings.name)
    }
}

/// What one round of the elector did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Round {
    /// The Lease is ours (created, renewed or taken over).
    Held,
    /// Another holds it (named), or another writer won the race.
    Other(String),
}

/// Keeps or seeks the Lease while the live snapshot has schedules.
pub struct Elector {
    leases: Api<Lease>,
    leadership: Arc<Leadership>,
    syncer: Arc<Syncer>,
    /// The other holder's record as last seen, and since when (monotonic).
    observed: Mutex<Option<(String, Instant)>>,
    /// Whether the Lease was ours at the last round (to give it up).
    ours: Mutex<bool>,
}

impl Elector {
    /// An elector writing the Lease through `client`.
    pub fn new(client: kube::Client, leadership: Arc<Leadership>, syncer: Arc<Syncer>) -> Self {
        let leases = Api::namespaced(client, &leadership.settings.namespace);
        Elector {
            leases,
            leadership,
            syncer,
            observed: Mutex::new(None),
            ours: Mutex::new(false),
        }
    }

    /// Every third of the lease duration until `token` is cancelled: seek
    /// or renew the Lease while the live snapshot has a schedule, give it up
    /// when it has none any more. At the end, stops firing, then gives the
    /// Lease up.
    pub async fn run(self: Arc<Self>, token: CancellationToken) {
        let period = (self.leadership.settings.duration / 3).max(Duration::from_millis(200));
        loop {
            let wanted = self
                .syncer
                .snapshot()
                .is_some_and(|s| s.topics.values().any(|t| t.schedule.is_some()));
            if wanted {
                self.round().await;
            } else if self.is_ours() {
                self.leadership.lost("no topic has a schedule any more");
                self.release().await;
            }
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(period) => {}
            }
        }
        self.leadership.lost("stopping");
        // No new fire starts now; one in progress ends before the Lease
        // is given up (the next holder would fire the same tick again: the
        // same run, but a wasted publish).
        let _fired = self.leadership.firing().await;
        if self.is_ours() {
            self.release().await;
        }
    }

    fn is_ours(&self) -> bool {
        *self.ours.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_ours(&self, ours: bool) {
        *self.ours.lock().unwrap_or_else(|p| p.into_inner()) = ours;
    }

    /// One try: renew, create or take over.
    async fn round(&self) {
        let sent = Instant::now();
        match self.acquire_or_renew().await {
            Ok(Round::Held) => {
                self.set_ours(true);
                self.leadership.renewed(sent);
            }
            Ok(Round::Other(holder)) => {
                if self.is_ours() {
                    tracing::warn!(holder, "the scheduler's Lease was taken over");
                }
                self.set_ours(false);
                self.leadership.lost("another replica holds the Lease");
            }
            // The right to fire runs out by itself, on time: nothing to undo.
            Err(e) => tracing::warn!(
                lease = %self.leadership.describe(),
                error = %e,
                "cannot read or write the scheduler's Lease (gitfaas needs get, create and update on leases in that namespace)"
            ),
        }
    }

    /// Each call to the API server is bounded by a third of the lease
    /// duration: a renew that takes longer is worth nothing.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, CallError> {
        let limit = (self.leadership.settings.duration / 3).max(Duration::from_secs(1));
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(v)) => Ok(v),
            // AlreadyExists (a create) and Conflict (a stale resourceVersion).
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => Err(CallError::Conflict),
            Ok(Err(e)) => Err(CallError::Failed(e.to_string())),
            Err(_) => Err(CallError::Failed(format!("no answer within {limit:?}"))),
        }
    }

    async fn acquire_or_renew(&self) -> Result<Round, CallError> {
        let settings = &self.leadership.settings;
        let me = settings.identity.as_str();
        let seconds = lease_seconds(settings.duration);
        let now = MicroTime(jiff::Timestamp::now());
        let found = match self.bounded(self.leases.get_opt(&settings.name)).await? {
            Some(lease) => lease,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(settings.name.clone()),
                        namespace: Some(settings.namespace.clone()),
                        labels: Some(
                            [(
                                crate::object::LABEL_MANAGED_BY.to_string(),
                                "gitfaas".to_string(),
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.to_string()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                return match self
                    .bounded(self.leases.create(&PostParams::default(), &lease))
                    .await
                {
                    Ok(_) => Ok(Round::Held),
                    Err(CallError::Conflict) => {
                        Ok(Round::Other("(created by another replica just now)".into()))
                    }
                    Err(e) => Err(e),
                };
            }
        };
        let spec = found.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = format!(
            "{holder}|{:?}|{}",
            spec.renew_time.as_ref().map(|t| t.0),
            found.metadata.resource_version.clone().unwrap_or_default()
        );
        let decision = if holder == me {
            Take::Renew
        } else {
            let seen_for = self.seen_for(record);
            let theirs = spec.lease_duration_seconds.map_or(settings.duration, |s| {
                Duration::from_secs(u64::try_from(s.max(0)).unwrap_or(0))
            });
            decide(&holder, seen_for, theirs)
        };
        let mut lease = found;
        let mut next = spec;
        match decision {
            Take::Wait => return Ok(Round::Other(holder)),
            Take::Renew => {
                next.renew_time = Some(now);
                next.lease_duration_seconds = Some(seconds);
            }
            Take::Over => {
                next.holder_identity = Some(me.to_string());
                next.acquire_time = Some(now.clone());
                next.renew_time = Some(now);
                next.lease_duration_seconds = Some(seconds);
                next.lease_transitions =
                    Some(next.lease_transitions.unwrap_or(0).saturating_add(1));
            }
        }
        lease.spec = Some(next);
        // The resourceVersion read above travels with the object: the
        // replace fails (409) if anyone wrote the Lease since.
        match self
            .bounded(
                self.leases
                    .replace(&settings.name, &PostParams::default(), &lease),
            )
            .await
        {
            Ok(_) => Ok(Round::Held),
            Err(CallError::Conflict) => Ok(Round::Other(
                "(another replica wrote the Lease first)".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// How long this replica has seen `record` unchanged.
    fn seen_for(&self, record: String) -> Duration {
        let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        match &*observed {
            Some((seen, since)) if *seen == record => since.elapsed(),
            _ => {
                *observed = Some((record, Instant::now()));
                Duration::ZERO
            }
        }
    }

    /// Gives the Lease up: an empty holder, which another replica takes at
    /// its next round. Only if it is still ours (a replace with the
    /// resourceVersion read).
    async fn release(&self) {
        let settings = &self.leadership.settings;
        self.set_ours(false);
        let Ok(Some(mut lease)) = self.bounded(self.leases.get_opt(&settings.name)).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        lease.spec = Some(spec);
        match self
            .bounded(
                self.leases
                    .replace(&settings.name, &PostParams::default(), &lease),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(lease = %self.leadership.describe(), "gave the scheduler's Lease up")
            }
            Err(e) => {
                tracing::info!(error = %e, "could not give the scheduler's Lease up; another replica takes it when it runs out")
            }
        }
    }
}

/// Why a call about the Lease failed.
#[derive(Debug)]
enum CallError {
    /// 409: someone else created or wrote the Lease first.
    Conflict,
    /// Anything else (refused, unreachable, too slow).
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Conflict => f.write_str("another writer changed the Lease first"),
            CallError::Failed(e) => f.write_str(e),
        }
    }
}

/// What to do with a Lease another holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    /// Ours: renew it.
    Renew,
    /// Free, or its holder stopped renewing: take it.
    Over,
    /// Its holder renews it: wait.
    Wait,
}

/// Whether a Lease held by `holder`, whose record this replica has seen
/// unchanged for `seen_for`, with the holder's `duration`, may be taken.
fn decide(holder: &str, seen_for: Duration, duration: Duration) -> Take {
    if holder.is_empty() || seen_for > duration {
        Take::Over
    } else {
        Take::Wait
    }
}

/// `leaseDurationSeconds` for `duration`: whole seconds, rounded up, so a
/// challenger never waits less than the holder counts on.
fn lease_seconds(duration: Duration) -> i32 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(duration: Duration) -> LeaseSettings {
        LeaseSettings {
            name: "gitfaas-scheduler".into(),
            namespace: "ns".into(),
            duration,
            identity: "pod_1_abc".into(),
        }
    }

    #[test]
    fn a_lease_is_taken_when_free_or_unrenewed_for_its_duration() {
        let d = Duration::from_secs(15);
        assert_eq!(decide("", Duration::ZERO, d), Take::Over);
        assert_eq!(decide("other", Duration::from_secs(14), d), Take::Wait);
        assert_eq!(decide("other", Duration::from_secs(15), d), Take::Wait);
        assert_eq!(
            decide("other", Duration::from_millis(15_001), d),
            Take::Over
        );
    }

    #[test]
    fn lease_seconds_round_up() {
        assert_eq!(lease_seconds(Duration::from_secs(15)), 15);
        assert_eq!(lease_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(lease_seconds(Duration::ZERO), 1);
    }

    /// The holder's right to fire ends a margin before the lease duration
    /// after it sent its last renew, on the monotonic clock (a frozen
    /// process' clock runs on): before any challenger may take over.
    #[tokio::test(start_paused = true)]
    async fn the_right_to_fire_ends_before_another_may_take_the_lease() {
        let leadership = Leadership::new(settings(Duration::from_secs(15)));
        assert!(!leadership.leads());
        let sent = Instant::now();
        leadership.renewed(sent);
        assert_eq!(leadership.term(), Some(1));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            leadership.leads(),
            "15 s − 3 s margin: still leading at 11 s"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!leadership.leads(), "not at 12 s, 3 s before a challenger");
        assert_eq!(leadership.remaining(), Duration::ZERO);
        // A renew after the right ran out starts a new term.
        leadership.renewed(Instant::now());
        assert_eq!(leadership.term(), Some(2));
        // A renew within the term keeps it.
        tokio::time::advance(Duration::from_secs(5)).await;
        leadership.renewed(Instant::now());
        assert_eq!(leadership.term(), Some(2));
        leadership.lost("test");
        assert!(!leadership.leads());
    }

    #[test]
    fn an_identity_names_the_host_and_the_process() {
        let id = identity();
        assert!(id.contains(&format!("_{}_", std::process::id())), "{id}");
        assert_ne!(id, identity(), "a random suffix tells two elections apart");
    }
}
