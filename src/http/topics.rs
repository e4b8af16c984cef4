//! `GET /topics`: the serving commit's topics, each as config.json declares
//! it. `GET /topics/{topic}`: one topic with its manifests' text as the
//! repository holds it, before rendering.
//!
//! Both read the live snapshot only: what they show is what a publish at
//! that moment would use. Field names and values are spelled as config.json
//! spells them, so what a user reads is what they would write.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::catalog::{Overflow, ResultSource, Retry, Schedule, Snapshot, Topic, TopicName};
use crate::error::Code;
use crate::identity::Permission;

use super::{ApiError, AppState, Authenticated};

/// The body of `GET /topics`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopicList {
    /// The commit serving; null before the first sync succeeded (and then
    /// no topics: `GET /status` says why).
    #[schema(required = true)]
    pub commit: Option<String>,
    /// The topics, sorted by name.
    pub topics: Vec<TopicSummary>,
}

/// One topic, as config.json declares it (defaults filled in).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicSummary {
    /// The topic's name.
    pub name: TopicName,
    /// Its manifests' paths in the repository (`configs`, normalized:
    /// `./a.yaml` is `a.yaml`), in the order a publish applies them.
    pub files: Vec<String>,
    /// At most this many of its runs unfinished at once; null: no limit.
    #[schema(required = true)]
    pub max_concurrent: Option<u32>,
    /// What a publish beyond `maxConcurrent` gets: `reject` (429, also
    /// when config.json leaves it out) or `queue`.
    #[schema(pattern = "^(reject|queue)$")]
    pub overflow: &'static str,
    /// With `queue`: at most this many runs wait; null otherwise.
    #[schema(required = true)]
    pub max_queued: Option<u32>,
    /// With `queue`: at most this many bytes of runs wait; null otherwise.
    #[schema(required = true)]
    pub max_queued_bytes: Option<u64>,
    /// How a run whose apply met a transient failure is tried again; null
    /// when config.json has no `retry`.
    #[schema(required = true)]
    pub retry: Option<RetryInfo>,
    /// `stdout`: a function's last stdout line is its response when it
    /// posts none; null (left out in config.json): only what it posts.
    #[schema(required = true, pattern = "^stdout$")]
    pub result: Option<&'static str>,
    /// The CEL expression a publish must meet to run, as written; null: none.
    #[schema(required = true)]
    pub filter: Option<String>,
    /// When it runs by itself; null: only when published.
    #[schema(required = true)]
    pub schedule: Option<TopicSchedule>,
}

/// A topic's `retry`, its defaults filled in; durations as humantime
/// writes them (`500ms`, `30s`, `1m 30s`), which config.json takes back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryInfo {
    /// Applies in all, the first included.
    pub attempts: u32,
    /// The first wait.
    pub backoff: String,
    /// The longest wait.
    pub max_backoff: String,
}

/// A topic's `schedule`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicSchedule {
    /// The cron expression, as written.
    pub cron: String,
    /// The IANA time zone of its ticks (`UTC` when config.json gives none).
    pub timezone: String,
    /// Its next tick after now (RFC 3339, UTC); null if it never ticks again.
    #[schema(required = true)]
    pub next_tick: Option<String>,
    /// How late a missed tick may still fire, in seconds.
    pub starting_deadline_seconds: u64,
}

/// The body of `GET /topics/{topic}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopicDetail<'a> {
    /// The commit serving, whose files `manifests` shows.
    pub commit: String,
    /// The topic.
    #[serde(flatten)]
    pub topic: TopicSummary,
    /// Its manifests in the order of `files`.
    pub manifests: Vec<ManifestText<'a>>,
}

/// One manifest file of a topic.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ManifestText<'a> {
    /// Its path in the repository.
    pub path: String,
    /// Its text exactly as the commit holds it, before rendering (the
    /// `{{…}}` variables as written).
    pub text: &'a str,
}

impl TopicSummary {
    fn of(topic: &Topic, now: jiff::Timestamp) -> Self {
        let (overflow, max_queued, max_queued_bytes) = match topic.overflow {
            Overflow::Reject => ("reject", None, None),
            Overflow::Queue {
                max_queued,
                max_queued_bytes,
            } => ("queue", Some(max_queued), Some(max_queued_bytes)),
        };
        TopicSummary {
            name: topic.name.clone(),
            files: topic.manifests.iter().map(|m| m.path.to_string()).collect(),
            max_concurrent: topic.max_concurrent,
            overflow,
            max_queued,
            max_queued_bytes,
            retry: topic.retry.as_ref().map(RetryInfo::of),
            result: match topic.result {
                ResultSource::Posted => None,
                ResultSource::Stdout => Some("stdout"),
            },
            filter: topic.filter.as_ref().map(|f| f.source().to_string()),
            schedule: topic.schedule.as_ref().map(|s| TopicSchedule::of(s, now)),
        }
    }
}

impl RetryInfo {
    fn of(retry: &Retry) -> Self {
        RetryInfo {
            attempts: retry.attempts,
            backoff: humantime::format_duration(retry.backoff).to_string(),
            max_backoff: humantime::format_duration(retry.max_backoff).to_string(),
        }
    }
}

impl TopicSchedule {
    fn of(schedule: &Schedule, now: jiff::Timestamp) -> Self {
        TopicSchedule {
            cron: schedule.cron.expression().to_string(),
            timezone: schedule.cron.timezone().to_string(),
            next_tick: schedule
                .cron
                .next_after(now)
                .map(crate::schedule::cron::rfc3339),
            starting_deadline_seconds: schedule.starting_deadline.as_secs(),
        }
    }
}

/// The list of `snapshot` (none: no commit, no topics) at `now`.
fn list_of(snapshot: Option<&Snapshot>, now: jiff::Timestamp) -> TopicList {
    TopicList {
        commit: snapshot.map(|s| s.commit.clone()),
        // A BTreeMap by name: sorted by name.
        topics: snapshot
            .map(|s| {
                s.topics
                    .values()
                    .map(|t| TopicSummary::of(t, now))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// `name` of `snapshot`, with its manifests' text, or why not.
fn detail_of<'a>(
    snapshot: &'a Snapshot,
    name: &str,
    now: jiff::Timestamp,
) -> Result<TopicDetail<'a>, ApiError> {
    let Some(topic) = snapshot.topic(name) else {
        // Named as a log would name it (a function uid sent by mistake is a
        // credential, cut to its prefix), and never more than a name's length.
        let shown = crate::telemetry::access_path(name);
        let shown: String = shown.chars().take(64).collect();
        let why = if TopicName::parse(name).is_ok() {
            format!("the serving commit {} has no such topic", snapshot.commit)
        } else {
            "not a topic name (letters, digits, `-`, `_` and `.`, at most 63, starting and ending with a letter or digit)".to_string()
        };
        return Err(ApiError::refused(
            Code::UnknownTopic,
            format!("unknown topic `{shown}`: {why}; GET /topics lists the topics"),
        ));
    };
    Ok(TopicDetail {
        commit: snapshot.commit.clone(),
        topic: TopicSummary::of(topic, now),
        manifests: topic
            .manifests
            .iter()
            .map(|m| ManifestText {
                path: m.path.to_string(),
                text: &m.text,
            })
            .collect(),
    })
}

#[utoipa::path(
    get,
    path = "/topics",
    operation_id = "listTopics",
    tag = "topics",
    summary = "The serving commit's topics",
    description = "Every topic of the commit serving, sorted by name, as config.json declares it (its defaults filled in): manifest paths, `maxConcurrent`, `overflow`, `retry`, `result`, `filter` and `schedule` (with its next tick). Before the first sync succeeded: `commit` null and no topics (`GET /status` says why). Under `--auth kubernetes`: `list` on `topics`.",
    responses(
        (status = 200, body = TopicList, description = "The topics",
            links(
                ("getTopic" = (operation_id = "getTopic", parameters(("topic" = "$response.body#/topics/0/name")),
                    description = "The first topic, with its manifests")),
            ),
        ),
    ),
    security(("bearer" = []), ()),
)]
pub async fn list(
    auth: Authenticated,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth.may(&state, Permission::list_topics()).await?;
    let snapshot = state.services.syncer().snapshot();
    Ok(HttpResponse::Ok().json(list_of(snapshot.as_deref(), jiff::Timestamp::now())))
}

#[utoipa::path(
    get,
    path = "/topics/{topic}",
    operation_id = "getTopic",
    tag = "topics",
    summary = "One topic and its manifests",
    description = "The topic as `GET /topics` lists it, with the commit serving and each manifest's text exactly as that commit holds it, before rendering. 404 `unknown_topic` when the serving commit has no such topic; 503 `not_ready` before the first sync succeeded. Under `--auth kubernetes`: `get` on `topics`, the topic its resource name (asked before the topic is looked up).",
    params(("topic" = String, Path, min_length = 1, description = "The topic, as config.json names it")),
    responses(
        (status = 200, body = TopicDetail, description = "The topic"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn get(
    auth: Authenticated,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth.may(&state, Permission::read_topic(&path)).await?;
    let Some(snapshot) = state.services.syncer().snapshot() else {
        return Err(ApiError::not_ready(
            "no functions loaded yet: the first sync of the repository has not succeeded; see GET /status",
        ));
    };
    let detail = detail_of(&snapshot, &path, jiff::Timestamp::now())?;
    Ok(HttpResponse::Ok().json(detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{FileError, FileTree, RepoPath};

    struct Files(Vec<(&'static str, &'static str)>);

    impl FileTree for Files {
        fn read(&self, path: &RepoPath) -> Result<Vec<u8>, FileError> {
            self.0
                .iter()
                .find(|(p, _)| *p == path.as_ref())
                .map(|(_, t)| t.as_bytes().to_vec())
                .ok_or(FileError::NotFound)
        }
    }

    const JOB: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j-{{RANDOM}}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: main\n          image: busybox\n";

    const CONFIG: &str = r#"{"topics": [
      {"name": "zeta", "configs": ["./j.yaml"]},
      {"name": "alpha", "configs": ["j.yaml", "k.yaml"], "maxConcurrent": 2,
       "overflow": "queue", "maxQueued": 7, "retry": {"attempts": 3, "backoff": "1500ms"},
       "result": "stdout", "filter": "body.action == 'opened'",
       "schedule": {"cron": "0 3 * * *", "timezone": "Europe/Paris", "startingDeadlineSeconds": 120}}
    ]}"#;

    fn snapshot() -> Snapshot {
        let files = Files(vec![
            ("config.json", CONFIG),
            ("j.yaml", JOB),
            (
                "k.yaml",
                "kind: ConfigMap\r\napiVersion: v1\r\nmetadata:\r\n  name: c-{{RANDOM}}",
            ),
        ]);
        crate::catalog::build(&files, &RepoPath::parse("config.json").expect("path"), "c1")
            .expect("valid")
    }

    fn now() -> jiff::Timestamp {
        "2026-12-07T12:00:00Z".parse().expect("a time")
    }

    #[test]
    fn the_list_spells_each_topic_as_config_json_does_sorted_by_name() {
        let list = serde_json::to_value(list_of(Some(&snapshot()), now())).expect("JSON");
        assert_eq!(
            list,
            serde_json::json!({
                "commit": "c1",
                "topics": [
                    {
                        "name": "alpha",
                        "files": ["j.yaml", "k.yaml"],
                        "maxConcurrent": 2,
                        "overflow": "queue",
                        "maxQueued": 7,
                        "maxQueuedBytes": crate::catalog::DEFAULT_MAX_QUEUED_BYTES,
                        "retry": {"attempts": 3, "backoff": "1s 500ms", "maxBackoff": "30s"},
                        "result": "stdout",
                        "filter": "body.action == 'opened'",
                        "schedule": {
                            "cron": "0 3 * * *",
                            "timezone": "Europe/Paris",
                            "nextTick": "2026-12-08T02:00:00Z",
                            "startingDeadlineSeconds": 120
                        }
                    },
                    {
                        "name": "zeta",
                        "files": ["j.yaml"],
                        "maxConcurrent": null,
                        "overflow": "reject",
                        "maxQueued": null,
                        "maxQueuedBytes": null,
                        "retry": null,
                        "result": null,
                        "filter": null,
                        "schedule": null
                    }
                ]
            })
        );
    }

    #[test]
    fn before_the_first_sync_the_list_is_empty_with_no_commit() {
        let list = serde_json::to_value(list_of(None, now())).expect("JSON");
        assert_eq!(list, serde_json::json!({"commit": null, "topics": []}));
    }

    #[test]
    fn a_topic_shows_its_manifests_text_as_committed() {
        let s = snapshot();
        let detail = detail_of(&s, "alpha", now()).expect("alpha");
        let value = serde_json::to_value(&detail).expect("JSON");
        assert_eq!(value["commit"], "c1");
        assert_eq!(value["name"], "alpha");
        assert_eq!(value["overflow"], "queue");
        assert_eq!(
            value["manifests"],
            serde_json::json!([
                {"path": "j.yaml", "text": JOB},
                {"path": "k.yaml", "text": "kind: ConfigMap\r\napiVersion: v1\r\nmetadata:\r\n  name: c-{{RANDOM}}"},
            ])
        );
    }

    #[test]
    fn an_unknown_topic_is_unknown_topic_saying_why() {
        let s = snapshot();
        let missing = detail_of(&s, "beta", now()).expect_err("no beta");
        assert_eq!(missing.code(), Code::UnknownTopic);
        assert!(
            missing.to_string().contains("commit c1 has no such topic"),
            "{missing}"
        );
        let invalid = detail_of(&s, "-x", now()).expect_err("not a name");
        assert_eq!(invalid.code(), Code::UnknownTopic);
        assert!(
            invalid.to_string().contains("`-x`: not a topic name"),
            "{invalid}"
        );
    }
}
