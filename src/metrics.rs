//! Prometheus metrics: publishes by topic and outcome (and those a filter
//! skipped), render and apply
//! latency, sync status and store size, served as OpenMetrics text on
//! `GET /metrics`.
//!
//! Counters and histograms are process-wide (one gitfaas per process, like
//! Prometheus' own clients' default registry), so the modules that time work
//! record it without threading a handle through every call; gauges about
//! state are set from that state when scraped.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a publish.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublishLabels {
    /// The topic (`unknown` for topics the config does not have, to bound cardinality).
    pub topic: String,
    /// applied, failed, refused, dry_run, replayed, filtered.
    pub outcome: String,
}

/// Labels of a topic's metric (filtered publishes, a schedule's ticks).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// The topic (one the config has, so the label set is bounded).
    pub topic: String,
}

/// Labels of a sync.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitLabels {
    /// The commit serving.
    pub commit: String,
}

/// Labels of a review of a caller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// `token` (TokenReview) or `access` (SubjectAccessReview).
    pub kind: String,
}

/// Labels of a caller's call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallerLabels {
    /// The username (at most 100 distinct, then `other`).
    pub user: String,
    /// `publish` or `cancel`.
    pub action: String,
}

/// Every metric.
pub struct Metrics {
    registry: std::sync::Mutex<Registry>,
    /// Publishes by topic and outcome.
    pub publishes: Family<PublishLabels, Counter>,
    /// Publishes their topic's filter skipped, by topic.
    pub filtered: Family<TopicLabels, Counter>,
    /// Time to render and check one topic.
    pub render_seconds: Histogram,
    /// Time of one server-side apply.
    pub apply_seconds: Histogram,
    /// 1 for the commit serving.
    pub commit: Family<CommitLabels, Gauge>,
    /// Unix time of the last successful sync.
    pub last_success: Gauge,
    /// Failed syncs since the last success.
    pub consecutive_failures: Gauge,
    /// Requests in the store.
    pub stored_requests: Gauge,
    /// Ticks this replica fired (a run was made), by topic.
    pub schedule_fired: Family<TopicLabels, Counter>,
    /// Ticks skipped because no replica fired them in time, by topic.
    pub schedule_missed: Family<TopicLabels, Counter>,
    /// Ticks whose publish was refused (no run), by topic.
    pub schedule_failed: Family<TopicLabels, Counter>,
    /// 1 while this replica holds the scheduler's Lease.
    pub scheduler_leader: Gauge,
    /// Reviews asked of the API server (cache misses), by kind.
    pub auth_reviews: Family<ReviewLabels, Counter>,
    /// Publishes and cancels let through, by caller.
    pub callers: Family<CallerLabels, Counter>,
}

/// The process' metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("gitfaas");
        let m = Metrics {
            registry: std::sync::Mutex::new(Registry::default()),
            publishes: Family::default(),
            filtered: Family::default(),
            render_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            apply_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            commit: Family::default(),
            last_success: Gauge::default(),
            consecutive_failures: Gauge::default(),
            stored_requests: Gauge::default(),
            schedule_fired: Family::default(),
            schedule_missed: Family::default(),
            schedule_failed: Family::default(),
            scheduler_leader: Gauge::default(),
            auth_reviews: Family::default(),
            callers: Family::default(),
        };
        registry.register(
            "publishes",
            "Publishes by topic and outcome",
            m.publishes.clone(),
        );
        registry.register(
            "publishes_filtered",
            "Publishes their topic's filter skipped (nothing applied, no run recorded), by topic",
            m.filtered.clone(),
        );
        registry.register(
            "render_seconds",
            "Time to render, structure-check and policy-check a topic",
            m.render_seconds.clone(),
        );
        registry.register(
            "apply_seconds",
            "Time of one server-side apply (dry runs included)",
            m.apply_seconds.clone(),
        );
        registry.register(
            "sync_commit",
            "The commit serving (value 1)",
            m.commit.clone(),
        );
        registry.register(
            "sync_last_success_timestamp_seconds",
            "Unix time of the last successful sync",
            m.last_success.clone(),
        );
        registry.register(
            "sync_consecutive_failures",
            "Failed syncs since the last success",
            m.consecutive_failures.clone(),
        );
        registry.register(
            "store_requests",
            "Requests kept in the store",
            m.stored_requests.clone(),
        );
        registry.register(
            "schedule_ticks_fired",
            "Schedule ticks this replica fired (a run was made), by topic",
            m.schedule_fired.clone(),
        );
        registry.register(
            "schedule_ticks_missed",
            "Schedule ticks skipped because no replica fired them within startingDeadlineSeconds, by topic",
            m.schedule_missed.clone(),
        );
        registry.register(
            "schedule_ticks_failed",
            "Schedule ticks whose publish was refused (no run), by topic",
            m.schedule_failed.clone(),
        );
        registry.register(
            "scheduler_leader",
            "1 while this replica holds the scheduler's Lease and fires the schedules",
            m.scheduler_leader.clone(),
        );
        registry.register(
            "auth_reviews",
            "TokenReviews (kind token) and SubjectAccessReviews (kind access) asked of the API server: the callers' cache misses",
            m.auth_reviews.clone(),
        );
        registry.register(
            "caller_requests",
            "Publishes and cancels let through, by the caller's username (at most 100 distinct, then other) and action",
            m.callers.clone(),
        );
        if let Ok(mut r) = m.registry.lock() {
            *r = registry;
        }
        m
    })
}

impl Metrics {
    /// Counts one publish.
    pub fn publish(&self, topic: &str, outcome: &str) {
        self.publishes
            .get_or_create(&PublishLabels {
                topic: topic.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one publish its topic's filter skipped.
    pub fn filtered(&self, topic: &str) {
        self.filtered
            .get_or_create(&TopicLabels {
                topic: topic.to_string(),
            })
            .inc();
    }

    /// Counts a schedule's tick: `fired` or `failed`.
    pub fn schedule_tick(&self, topic: &str, outcome: &str) {
        let family = match outcome {
            "fired" => &self.schedule_fired,
            _ => &self.schedule_failed,
        };
        family
            .get_or_create(&TopicLabels {
                topic: topic.to_string(),
            })
            .inc();
    }

    /// Counts `n` skipped ticks of a schedule.
    pub fn schedule_ticks_missed(&self, topic: &str, n: u64) {
        self.schedule_missed
            .get_or_create(&TopicLabels {
                topic: topic.to_string(),
            })
            .inc_by(n);
    }

    /// Counts a review asked of the API server (`token` or `access`).
    pub fn review(&self, kind: &str) {
        self.auth_reviews
            .get_or_create(&ReviewLabels { kind: kind.into() })
            .inc();
    }

    /// Counts a publish or cancel by `user`.
    pub fn caller(&self, user: &str, action: &str) {
        self.callers
            .get_or_create(&CallerLabels {
                user: user.into(),
                action: action.into(),
            })
            .inc();
    }

    /// Records how long a render took.
    pub fn rendered(&self, took: Duration) {
        self.render_seconds.observe(took.as_secs_f64());
    }

    /// Records how long an apply took.
    pub fn applied(&self, took: Duration) {
        self.apply_seconds.observe(took.as_secs_f64());
    }

    /// Sets the commit serving.
    pub fn set_commit(&self, commit: &str) {
        self.commit.clear();
        self.commit
            .get_or_create(&CommitLabels {
                commit: commit.to_string(),
            })
            .set(1);
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}
