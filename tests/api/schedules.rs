//! Schedules against the real API server: ticks fired once each by the
//! replica holding the Lease (two gitfaas processes on one Redis, one of
//! them killed -9 or frozen with SIGSTOP), and schedules changed by
//! commits. A schedule's unit is the minute, so these tests take minutes:
//! each waits for real ticks (never for a speed), bounded by
//! [`TICKS_WITHIN`] per tick, with a short `--lease-duration`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};

use crate::common::eventually;
use crate::common::free_port;
use crate::helpers::OpenUnlessChosen as _;
use crate::helpers::{env, kubeconfig_path, redis_database, Endpoint, Fixture, Process};

/// A tick comes within a minute; a loaded machine gets some more.
const TICKS_WITHIN: Duration = Duration::from_secs(100);

/// The Lease of these tests: short, so that a replica takes over a dead
/// one within seconds.
const LEASE: &str = "4s";

/// A suspended Job (no pod ever runs) that shows its tick and a value.
const TICK_JOB: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: tick-{{RANDOM}}
  annotations:
    gitfaas.test/scheduled-time: "{{SCHEDULED_TIME}}"
spec:
  suspend: true
  ttlSecondsAfterFinished: 600
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: busybox
          env:
            - name: VALUE
              value: "{{v}}"
            - name: PAYLOAD
              value: "{{PAYLOAD}}"
"#;

/// config.json with topic `tick` (TICK_JOB) scheduled as `schedule`
/// (none when Null), and topic `plain` without a schedule.
fn tick_config(schedule: Value) -> String {
    let mut tick = json!({"name": "tick", "configs": ["tick.yaml"]});
    if !schedule.is_null() {
        tick["schedule"] = schedule;
    }
    // Pretty, so that the schedule has a line of its own.
    serde_json::to_string_pretty(&json!({"topics": [
        {"name": "plain", "configs": ["tick.yaml"]},
        tick,
    ]}))
    .expect("json")
}

fn every_minute(v: &str) -> Value {
    json!({"cron": "* * * * *", "body": "from the schedule", "params": {"v": v}})
}

/// The topic's Jobs by scheduled time: how many, and their VALUE.
async fn ticks(jobs: &Api<Job>) -> BTreeMap<String, Vec<String>> {
    let list = jobs
        .list(&ListParams::default().labels("gitfaas.io/topic=tick"))
        .await
        .expect("list Jobs");
    let mut by_tick: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in list.items {
        let at = job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("gitfaas.test/scheduled-time"))
            .cloned()
            .unwrap_or_default();
        by_tick
            .entry(at)
            .or_default()
            .push(env(&job, "VALUE").unwrap_or_default());
    }
    by_tick
}

/// Waits until the topic has Jobs for `n` ticks; the Jobs by tick.
async fn wait_for_ticks(jobs: &Api<Job>, n: usize, what: &str) -> BTreeMap<String, Vec<String>> {
    eventually(what, TICKS_WITHIN * n as u32, || async {
        let t = ticks(jobs).await;
        (t.len() >= n).then_some(t)
    })
    .await
}

/// Every tick has exactly one Job, and the ticks are consecutive minutes
/// (none lost).
fn assert_one_run_per_tick_and_none_lost(by_tick: &BTreeMap<String, Vec<String>>) {
    for (tick, jobs) in by_tick {
        assert_eq!(
            jobs.len(),
            1,
            "tick {tick} has {} runs: {by_tick:?}",
            jobs.len()
        );
    }
    let times: Vec<jiff::Timestamp> = by_tick
        .keys()
        .map(|t| t.parse().unwrap_or_else(|e| panic!("tick {t:?}: {e}")))
        .collect();
    for pair in times.windows(2) {
        assert_eq!(
            pair[1].duration_since(pair[0]),
            jiff::SignedDuration::from_secs(60),
            "a tick was lost between {} and {}: {by_tick:?}",
            pair[0],
            pair[1]
        );
    }
}

/// A gitfaas process whose log goes to a file (the tests read which
/// replica fired what).
struct Replica {
    process: Process,
    log: PathBuf,
}

impl Replica {
    async fn start(args: &[&str], log: PathBuf) -> Replica {
        let port = free_port();
        let file = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_gitfaas"))
            .arg("serve")
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--kubeconfig"])
            .arg(kubeconfig_path())
            .args(["--log-format", "json"])
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .open_unless_chosen()
            .spawn()
            .expect("start gitfaas");
        let address = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually("gitfaas to answer", Duration::from_secs(30), || async {
            let r = http.get(format!("{address}/healthz")).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        Replica {
            process: Process {
                child,
                endpoint: Endpoint::new(address),
            },
            log,
        }
    }

    async fn leads(&self) -> bool {
        let status = self.process.get("/status").await;
        status["scheduler"]["leader"] == true
    }

    /// The ticks this replica fired itself (its log's "firing" lines).
    fn fired(&self) -> Vec<String> {
        fired_in(&self.log)
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.process.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }
}

/// The scheduled times of the ticks whose run a log says its replica
/// started. A replica that takes the Lease over while the old holder's
/// publish of a tick is still under way tries that tick too; its key
/// (`<topic>@<tick>`) makes that attempt a replay of the same run ("the
/// tick had fired already"), so one replica starts each tick's run.
fn fired_in(log: &Path) -> Vec<String> {
    logged(log, |m| m.starts_with("the schedule's tick fired"))
}

/// The scheduled times of the ticks a log says its replica tried to fire.
fn attempted_in(log: &Path) -> Vec<String> {
    logged(log, |m| m == "firing a schedule's tick")
}

fn logged(log: &Path, message: impl Fn(&str) -> bool) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"].as_str().is_some_and(&message))
        .filter_map(|l| l["span"]["scheduled_time"].as_str().map(str::to_string))
        .collect()
}

/// Starts two replicas on Redis database `db`, both serving `fx`'s
/// scheduled topic, the Lease in the test's namespace.
async fn two_replicas(fx: &Fixture, db: u8) -> (Replica, Replica) {
    let redis = redis_database(db).await;
    let dir = fx.dir_arg();
    let args = [
        "--dir",
        &dir,
        "--redis-url",
        &redis,
        "--namespace",
        &fx.ns,
        "--lease-namespace",
        &fx.ns,
        "--lease-duration",
        LEASE,
        "--log-level",
        "info",
    ];
    let a = Replica::start(&args, fx.data.path().join("a.log")).await;
    let b = Replica::start(&args, fx.data.path().join("b.log")).await;
    (a, b)
}

/// The replica that holds the Lease, once one does; the other second.
async fn leader_first(a: Replica, b: Replica) -> (Replica, Replica) {
    eventually(
        "a replica to hold the Lease",
        Duration::from_secs(30),
        || async { (a.leads().await || b.leads().await).then_some(()) },
    )
    .await;
    if a.leads().await {
        (a, b)
    } else {
        (b, a)
    }
}

/// Two replicas on one Redis, `* * * * *`: two ticks fired once each
/// while both run; the Lease holder killed (-9) right after the second;
/// the other fires the third. Every tick has one run (one Job), none is
/// lost, and the third was the survivor's.
#[tokio::test]
async fn two_replicas_fire_each_tick_once_and_the_survivor_of_a_kill_fires_the_next() {
    let fx = Fixture::new(&[
        ("config.json", &tick_config(every_minute("one"))),
        ("tick.yaml", TICK_JOB),
    ])
    .await;
    let (a, b) = two_replicas(&fx, 9).await;
    let (mut leader, survivor) = leader_first(a, b).await;
    let jobs = fx.jobs();
    wait_for_ticks(&jobs, 2, "two ticks fired").await;

    leader
        .process
        .child
        .kill()
        .expect("kill -9 the Lease holder");
    let _ = leader.process.child.wait();
    let before = ticks(&jobs).await;
    eventually(
        "the survivor to hold the Lease",
        Duration::from_secs(30),
        || async { survivor.leads().await.then_some(()) },
    )
    .await;
    let after = wait_for_ticks(
        &jobs,
        before.len() + 1,
        "the survivor to fire the next tick",
    )
    .await;
    // A moment more: a tick fired twice would show now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = {
        let again = ticks(&jobs).await;
        assert!(again.len() >= after.len());
        again
    };
    assert_one_run_per_tick_and_none_lost(&after);
    assert!(after.len() >= 3, "at least three ticks: {after:?}");
    let last = after.keys().last().expect("a tick").clone();
    assert!(
        survivor.fired().contains(&last),
        "the survivor fired {last}: it fired {:?}",
        survivor.fired()
    );
    assert!(!fired_in(&leader.log).contains(&last));
    // Each of the first ticks was fired by one replica only.
    for tick in before.keys() {
        let by = usize::from(fired_in(&leader.log).contains(tick))
            + usize::from(survivor.fired().contains(tick));
        assert_eq!(by, 1, "tick {tick} fired by {by} replicas");
    }
    // The run is an ordinary one, started by the schedule.
    let history = survivor
        .process
        .get("/requests?trigger=schedule&topic=tick")
        .await;
    history.assert_status(200);
    let runs = history["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), after.len(), "{history}");
    let uid = runs[0]["requestUid"].as_str().expect("uid").to_string();
    let view = survivor.process.run(&uid).await;
    assert_eq!(view["trigger"], "schedule", "{view}");
    assert_eq!(view["scheduledTime"], json!(last), "{view}");
    let metrics = survivor.process.metrics().await;
    assert!(
        metrics.contains("gitfaas_schedule_ticks_fired_total{topic=\"tick\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("gitfaas_scheduler_leader 1"), "{metrics}");
    drop(survivor);
    fx.cleanup().await;
}

/// The Lease holder frozen (SIGSTOP) right after a tick, past its lease:
/// the other replica takes the Lease and fires the next tick; the frozen
/// one, resumed (SIGCONT), fires none of the ticks its successor fired.
#[tokio::test]
async fn a_frozen_leader_resumed_does_not_fire_the_ticks_its_successor_fired() {
    let fx = Fixture::new(&[
        ("config.json", &tick_config(every_minute("one"))),
        ("tick.yaml", TICK_JOB),
    ])
    .await;
    let (a, b) = two_replicas(&fx, 10).await;
    let (frozen, other) = leader_first(a, b).await;
    let jobs = fx.jobs();
    let first = wait_for_ticks(&jobs, 1, "a first tick fired").await;

    frozen.signal("STOP");
    eventually(
        "the other replica to hold the Lease",
        Duration::from_secs(30),
        || async { other.leads().await.then_some(()) },
    )
    .await;
    let second = wait_for_ticks(&jobs, first.len() + 1, "the other to fire the next tick").await;
    frozen.signal("CONT");
    let third = wait_for_ticks(&jobs, second.len() + 1, "one more tick after the resume").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = ticks(&jobs).await;
    assert!(all.len() >= third.len());
    assert_one_run_per_tick_and_none_lost(&all);
    let by_other = other.fired();
    // Not even tried: the resumed replica knows its right to fire ended.
    let by_frozen = attempted_in(&frozen.log);
    for tick in all.keys().filter(|t| !first.contains_key(*t)) {
        assert!(
            by_other.contains(tick),
            "{tick} was the successor's: {by_other:?}"
        );
        assert!(
            !by_frozen.contains(tick),
            "the resumed replica fired {tick}, which its successor fired: {by_frozen:?}"
        );
    }
    assert!(!frozen.leads().await, "the resumed replica does not lead");
    drop(frozen);
    drop(other);
    fx.cleanup().await;
}

/// A schedule added by a commit fires; a bad one is rejected (the line of
/// config.json named) while the old one fires on; a changed one fires
/// with its new parameters; a removed one fires no more. A publish of the
/// topic by hand is refused: only a tick sets {{SCHEDULED_TIME}}. (The
/// functions are a directory: a changed directory is a new commit.)
#[tokio::test]
async fn a_schedule_is_added_rejected_changed_and_removed_by_commits() {
    let fx = Fixture::new(&[
        ("config.json", &tick_config(Value::Null)),
        ("tick.yaml", TICK_JOB),
    ])
    .await;
    let commit = |schedule: Value| {
        std::fs::write(fx.dir.path().join("config.json"), tick_config(schedule))
            .expect("write config.json");
    };
    let (dir, data) = (fx.dir_arg(), fx.data_arg());
    let app = Replica::start(
        &[
            "--dir",
            &dir,
            "--data-dir",
            &data,
            "--namespace",
            &fx.ns,
            "--lease-namespace",
            &fx.ns,
            "--lease-duration",
            LEASE,
        ],
        fx.data.path().join("app.log"),
    )
    .await;
    let app_ = &app.process;
    let jobs = fx.jobs();

    // Added.
    commit(every_minute("one"));
    app_.refresh().await.assert_status(200);
    let status = app_.get("/status").await;
    let schedule = &status["topics"][1]["schedule"];
    assert_eq!(schedule["cron"], "* * * * *", "{status}");
    assert_eq!(schedule["timezone"], "UTC", "{status}");
    assert!(
        schedule["nextTick"]
            .as_str()
            .is_some_and(|t| t.ends_with(":00Z")),
        "{status}"
    );
    let added = wait_for_ticks(&jobs, 1, "the added schedule to fire").await;
    assert!(
        added.values().all(|v| v == &["one".to_string()]),
        "{added:?}"
    );

    // By hand: refused, nothing applied.
    let by_hand = app_.publish("tick", "v=x", "x").await;
    by_hand.assert_error(400, "missing_variable");
    by_hand.assert_message_contains("SCHEDULED_TIME");

    // Rejected: a seconds field. The old schedule serves on.
    commit(json!({"cron": "*/10 * * * * *", "params": {"v": "bad"}}));
    let refused = app_.refresh().await;
    refused.assert_error(422, "repository_rejected");
    let line = tick_config(json!({"cron": "x"}))
        .lines()
        .position(|l| l.contains("\"schedule\""))
        .expect("a schedule line")
        + 1;
    refused.assert_message_contains(&format!(
        "config.json:{line}: topic `tick`: schedule: cron `*/10 * * * * *` has 6 fields"
    ));
    let status = app_.get("/status").await;
    let problems = status["sync"]["lastError"]["problems"].to_string();
    assert!(
        problems.contains("more often than once a minute"),
        "{status}"
    );
    let served = wait_for_ticks(&jobs, added.len() + 1, "the old schedule to fire on").await;
    assert!(
        served.values().all(|v| v == &["one".to_string()]),
        "{served:?}"
    );

    // Changed: its parameters.
    commit(every_minute("two"));
    app_.refresh().await.assert_status(200);
    let changed = wait_for_ticks(&jobs, served.len() + 1, "the changed schedule to fire").await;
    let newest = changed.values().last().expect("a tick");
    assert_eq!(newest, &["two".to_string()], "{changed:?}");

    // Removed: no tick after the next minute boundary.
    commit(Value::Null);
    app_.refresh().await.assert_status(200);
    let removed_at = jiff::Timestamp::now();
    let boundary = removed_at
        .checked_add(jiff::SignedDuration::from_secs(
            60 - removed_at.as_second().rem_euclid(60) + 5,
        ))
        .expect("time");
    while jiff::Timestamp::now() < boundary {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = ticks(&jobs).await;
    assert_eq!(
        after.len(),
        changed.len(),
        "no tick after the removal: {after:?}"
    );
    assert_one_run_per_tick_and_none_lost(&after);
    assert!(app_.get("/status").await["topics"][1]
        .get("schedule")
        .is_none());
    drop(app);
    fx.cleanup().await;
}
