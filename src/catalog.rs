//! The functions catalog: the `config.json` model, its validation, and the
//! immutable [`Snapshot`] built from one commit of the repository.
//!
//! A snapshot is built whole or not at all: every problem of a commit (config
//! syntax, duplicate or invalid topic names, paths escaping the repository,
//! missing files, templates that do not parse or render) is collected, so a
//! user fixes them in one go. Files are read through [`FileTree`], which the
//! `source` module implements for a git commit and for a plain directory; this
//! module does no I/O of its own.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::filter::Filter;
use crate::schedule::cron::Cron;
use crate::template::Template;

/// Why a file could not be read from a tree.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// No such file at that path.
    #[error("file not found")]
    NotFound,
    /// The path is a directory, a symlink or a submodule.
    #[error("is a {0}, not a regular file")]
    NotAFile(&'static str),
    /// Reading failed.
    #[error("cannot be read: {0}")]
    Io(String),
}

/// Read access to the files of one version of the repository.
pub trait FileTree {
    /// Reads the regular file at `path` (relative to the repository root).
    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, FileError>;
}

/// One problem found in a commit, located as `file:line` where known.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// The file the problem is in.
    pub file: String,
    /// 1-based line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Errors of building a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The commit holds problems; none of it is served.
    #[error("{}", summarize(.0))]
    Invalid(Vec<Problem>),
}

fn summarize(problems: &[Problem]) -> String {
    const SHOWN: usize = 5;
    let mut s = problems
        .iter()
        .take(SHOWN)
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        s.push_str(&format!(" (and {} more)", problems.len() - SHOWN));
    }
    s
}

/// A topic name: non-empty, at most 63 characters, a valid Kubernetes label
/// value (it becomes the `gitfaas.io/topic` label).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct TopicName(String);

impl TopicName {
    /// Parses a topic name, saying what is wrong with it.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("a topic name cannot be empty".into());
        }
        if s.len() > 63 {
            return Err(format!(
                "topic name `{s}` is {} characters long; the maximum is 63 (it is used as a Kubernetes label value)",
                s.len()
            ));
        }
        let ok_inner = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        let ends_ok = s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok_inner || !ends_ok {
            return Err(format!(
                "topic name `{s}` is not a valid Kubernetes label value: use letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"
            ));
        }
        Ok(TopicName(s.to_string()))
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A normalized path inside the repository: relative, `/`-separated, with no
/// `.`, `..` or empty components. It cannot name anything outside the repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RepoPath(String);

impl RepoPath {
    /// Parses a path as written in config.json (`./a.yaml` and `a.yaml` are the same).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("a path cannot be empty".into());
        }
        if s.starts_with('/') || s.starts_with('\\') || s.contains('\0') {
            return Err(format!(
                "`{s}` is an absolute path: write it relative to the repository root"
            ));
        }
        let mut parts = Vec::new();
        for part in s.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    return Err(format!(
                        "`{s}` contains `..`: paths must stay inside the repository"
                    ))
                }
                p if p.contains('\\') => {
                    return Err(format!(
                        "`{s}` contains a backslash: use `/` between folders"
                    ))
                }
                ".git" => return Err(format!("`{s}` points into the .git folder")),
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return Err(format!("`{s}` does not name a file"));
        }
        Ok(RepoPath(parts.join("/")))
    }

    /// The path's components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl AsRef<str> for RepoPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic's `retry` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryEntry {
    attempts: u32,
    #[serde(default)]
    backoff: Option<String>,
    #[serde(default, rename = "maxBackoff")]
    max_backoff: Option<String>,
}

/// How a topic's runs are tried again after a transient failure of their
/// apply (the API server unreachable, throttling or failing): `attempts`
/// in all, waiting `backoff` and then twice as long each time, at most
/// `max_backoff`, each wait with up to half of it again as jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Applies in all, the first included.
    pub attempts: u32,
    /// The first wait.
    pub backoff: std::time::Duration,
    /// The longest wait.
    pub max_backoff: std::time::Duration,
}

/// The most attempts a `retry` may ask for.
pub const MAX_RETRY_ATTEMPTS: u32 = 100;

impl Retry {
    /// A queued topic without `retry`: a run that waited for its slot is
    /// tried for minutes (0.5 s doubling to 30 s, 20 attempts: about 8 min)
    /// before it is a dead letter.
    pub const QUEUED: Retry = Retry {
        attempts: 20,
        backoff: std::time::Duration::from_millis(500),
        max_backoff: std::time::Duration::from_secs(30),
    };

    /// The wait before attempt `attempt + 1` (`attempt` from 1), without jitter.
    pub fn delay(&self, attempt: u32) -> std::time::Duration {
        let doubled = self
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        doubled.min(self.max_backoff)
    }
}

fn topic_retry(name: &TopicName, entry: &TopicEntry) -> Result<Option<Retry>, String> {
    let Some(r) = &entry.retry else {
        return Ok(None);
    };
    if r.attempts == 0 || r.attempts > MAX_RETRY_ATTEMPTS {
        return Err(format!(
            "topic `{name}`: retry.attempts must be from 1 to {MAX_RETRY_ATTEMPTS} (the first apply counts)"
        ));
    }
    let duration = |field: &str, text: Option<&str>, default: std::time::Duration| {
        match text {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t)
            .ok()
            .filter(|d| {
                (std::time::Duration::from_millis(10)..=std::time::Duration::from_secs(3600))
                    .contains(d)
            })
            .ok_or_else(|| {
                format!("topic `{name}`: retry.{field} `{t}` is not a duration from 10ms to 1h (e.g. \"500ms\", \"30s\")")
            }),
    }
    };
    let backoff = duration("backoff", r.backoff.as_deref(), Retry::QUEUED.backoff)?;
    let max_backoff = duration(
        "maxBackoff",
        r.max_backoff.as_deref(),
        Retry::QUEUED.max_backoff.max(backoff),
    )?;
    if max_backoff < backoff {
        return Err(format!(
            "topic `{name}`: retry.maxBackoff must be at least retry.backoff"
        ));
    }
    Ok(Some(Retry {
        attempts: r.attempts,
        backoff,
        max_backoff,
    }))
}

/// A topic's `overflow`, `maxQueued` and `maxQueuedBytes`, checked against
/// its `maxConcurrent`.
fn topic_overflow(name: &TopicName, entry: &TopicEntry) -> Result<Overflow, String> {
    let bounds = entry.max_queued.is_some() || entry.max_queued_bytes.is_some();
    match (entry.overflow.as_deref(), entry.max_queued) {
        (None | Some("reject"), _) if !bounds => Ok(Overflow::Reject),
        (None | Some("reject"), _) => Err(format!(
            "topic `{name}`: maxQueued and maxQueuedBytes need \"overflow\": \"queue\" (without it a publish beyond maxConcurrent gets 429)"
        )),
        (Some("queue"), max_queued) => {
            if entry.max_concurrent.is_none() {
                return Err(format!(
                    "topic `{name}`: \"overflow\": \"queue\" needs maxConcurrent (a queue forms only beyond a limit)"
                ));
            }
            let max_queued = max_queued.unwrap_or(DEFAULT_MAX_QUEUED);
            if max_queued == 0 || max_queued > MAX_MAX_QUEUED {
                return Err(format!(
                    "topic `{name}`: maxQueued must be from 1 to {MAX_MAX_QUEUED} (leave it out for {DEFAULT_MAX_QUEUED})"
                ));
            }
            let max_queued_bytes = entry.max_queued_bytes.unwrap_or(DEFAULT_MAX_QUEUED_BYTES);
            if !(MIN_MAX_QUEUED_BYTES..=MAX_MAX_QUEUED_BYTES).contains(&max_queued_bytes) {
                return Err(format!(
                    "topic `{name}`: maxQueuedBytes must be from {MIN_MAX_QUEUED_BYTES} (64 KiB) to {MAX_MAX_QUEUED_BYTES} (1 GiB) (leave it out for {DEFAULT_MAX_QUEUED_BYTES}, 64 MiB)"
                ));
            }
            Ok(Overflow::Queue {
                max_queued,
                max_queued_bytes,
            })
        }
        (Some(other), _) => Err(format!(
            "topic `{name}`: overflow `{other}` is not known; use \"queue\" (wait for a free slot) or \"reject\" (429, the default)"
        )),
    }
}

/// `config.json` as written by users of the Python gitfaas. Unknown fields
/// are ignored so repositories with extra keys keep working.
#[derive(Debug, Deserialize)]
struct ConfigFile<'a> {
    #[serde(borrow)]
    topics: Vec<TopicEntry<'a>>,
}

#[derive(Debug, Deserialize)]
struct TopicEntry<'a> {
    name: String,
    configs: Vec<String>,
    /// At most this many of the topic's Jobs may be active at once.
    #[serde(default, rename = "maxConcurrent")]
    max_concurrent: Option<u32>,
    /// What a publish beyond `maxConcurrent` gets: `"reject"` (429, the
    /// default) or `"queue"`.
    #[serde(default)]
    overflow: Option<String>,
    /// With `"overflow": "queue"`: at most this many runs wait.
    #[serde(default, rename = "maxQueued")]
    max_queued: Option<u32>,
    /// With `"overflow": "queue"`: at most this many bytes of runs wait.
    #[serde(default, rename = "maxQueuedBytes")]
    max_queued_bytes: Option<u64>,
    /// How a run whose apply meets a transient failure is tried again.
    #[serde(default)]
    retry: Option<RetryEntry>,
    /// Where a function's response comes from: `"stdout"`, or left out.
    #[serde(default)]
    result: Option<String>,
    /// A CEL expression a publish must meet to run (see [`crate::filter`]);
    /// any JSON here, so that one that is not a string is a problem of the
    /// commit with its line, among the others.
    #[serde(default)]
    filter: Option<serde_json::Value>,
    /// When the topic runs by itself: read as written, so that its
    /// problems name its line in config.json ([`ScheduleEntry`]).
    #[serde(default, borrow)]
    schedule: Option<&'a serde_json::value::RawValue>,
}

/// A topic's `schedule` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleEntry {
    cron: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    params: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "startingDeadlineSeconds")]
    starting_deadline_seconds: Option<u64>,
}

/// When a topic runs by itself (`schedule`), checked: its ticks, and what
/// each publishes.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The ticks: the expression in its time zone.
    pub cron: Cron,
    /// The body each tick publishes (`{{PAYLOAD}}`).
    pub body: String,
    /// The template variables each tick sets, as query parameters would.
    pub params: Vec<(String, String)>,
    /// How late a tick missed while no replica led may still fire
    /// (`startingDeadlineSeconds`).
    pub starting_deadline: std::time::Duration,
    /// Its line in config.json.
    pub line: usize,
}

/// `startingDeadlineSeconds` when a schedule leaves it out (CronJob has
/// none, so a missed tick of a CronJob fires however late; gitfaas bounds
/// it, as the issue asks).
pub const DEFAULT_STARTING_DEADLINE_SECONDS: u64 = 60;

/// The range of `startingDeadlineSeconds`: at least the time a replica may
/// take to notice a tick, at most a week.
pub const STARTING_DEADLINE_SECONDS: std::ops::RangeInclusive<u64> = 10..=604_800;

/// The longest body a schedule may give (the default `--max-payload-bytes`).
pub const MAX_SCHEDULE_BODY_BYTES: usize = 1024 * 1024;

/// `{{SCHEDULED_TIME}}` when a commit's schedules are checked.
const SAMPLE_SCHEDULED_TIME: &str = "2026-01-01T00:00:00Z";

/// Reads a topic's `schedule` (its text is `raw`), saying what is wrong.
fn topic_schedule(name: &TopicName, raw: &str, line: usize) -> Result<Schedule, String> {
    let entry: ScheduleEntry = serde_json::from_str(raw).map_err(|e| {
        format!(
            "topic `{name}`: schedule: {e}; expected {{\"cron\": \"*/5 * * * *\"}}, optionally with \"timezone\", \"body\", \"params\" (an object of strings) and \"startingDeadlineSeconds\""
        )
    })?;
    let cron = Cron::parse(&entry.cron, entry.timezone.as_deref())
        .map_err(|e| format!("topic `{name}`: schedule: {e}"))?;
    let deadline = entry
        .starting_deadline_seconds
        .unwrap_or(DEFAULT_STARTING_DEADLINE_SECONDS);
    if !STARTING_DEADLINE_SECONDS.contains(&deadline) {
        return Err(format!(
            "topic `{name}`: schedule: startingDeadlineSeconds must be from {} to {} (a week); leave it out for {DEFAULT_STARTING_DEADLINE_SECONDS}",
            STARTING_DEADLINE_SECONDS.start(),
            STARTING_DEADLINE_SECONDS.end()
        ));
    }
    let body = entry.body.unwrap_or_default();
    if body.len() > MAX_SCHEDULE_BODY_BYTES {
        return Err(format!(
            "topic `{name}`: schedule: body is {} bytes; at most {MAX_SCHEDULE_BODY_BYTES} (1 MiB)",
            body.len()
        ));
    }
    let mut params = Vec::new();
    for (k, v) in entry.params.unwrap_or_default() {
        if crate::template::RESERVED.contains(&k.as_str()) {
            return Err(format!(
                "topic `{name}`: schedule: params.{k} is reserved: gitfaas sets {{{{{k}}}}} itself; rename the variable in the manifests"
            ));
        }
        if !crate::template::is_variable_name(&k) {
            return Err(format!(
                "topic `{name}`: schedule: params `{k}` is not a valid variable name: use letters, digits, `_` and `-` (at most 128)"
            ));
        }
        params.push((k, v));
    }
    Ok(Schedule {
        cron,
        body,
        params,
        starting_deadline: std::time::Duration::from_secs(deadline),
        line,
    })
}

/// Renders every manifest of a scheduled topic as a tick will, with the
/// schedule's body and parameters (and sample values of the variables
/// gitfaas sets), checking the same as a publish does: every variable
/// given, no value that changes a manifest's structure. A tick that could
/// only fail is a problem of the commit, not of each tick.
fn check_schedule(
    name: &TopicName,
    schedule: &Schedule,
    manifests: &[Arc<Manifest>],
) -> Result<(), String> {
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD.encode(schedule.body.as_bytes());
    let param = |k: &str| {
        schedule
            .params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let mut missing: Vec<&str> = Vec::new();
    for m in manifests {
        for v in m.template.variables() {
            let given = crate::template::RESERVED.contains(&v.as_str()) || param(v).is_some();
            if !given && !missing.contains(&v.as_str()) {
                missing.push(v);
            }
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "topic `{name}`: schedule: its manifests use {}, which the schedule does not give: add {} to schedule.params",
            missing.iter().map(|v| format!("{{{{{v}}}}}")).collect::<Vec<_>>().join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ));
    }
    for m in manifests {
        let lookup = |v: &str| -> Option<&str> {
            match v {
                "PAYLOAD" | "MESSAGE" => Some(payload.as_str()),
                crate::template::SCHEDULED_TIME => Some(SAMPLE_SCHEDULED_TIME),
                "TOPIC" => Some(name.as_ref()),
                reserved if crate::template::RESERVED.contains(&reserved) => Some("sample"),
                other => param(other),
            }
        };
        m.template.render_checked(lookup).map_err(|e| {
            format!(
                "topic `{name}`: schedule: {} does not render with the schedule's body and params: {e}",
                m.path
            )
        })?;
    }
    Ok(())
}

/// The 1-based line of the byte at `offset` in `text`.
fn line_at(text: &[u8], offset: usize) -> usize {
    text.iter().take(offset).filter(|b| **b == b'\n').count() + 1
}

/// Where a topic's functions' responses come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResultSource {
    /// What a function POSTs to `/response/{functionUid}`; none otherwise.
    #[default]
    Posted,
    /// Also, when its Job succeeds and it posted nothing, the last line its
    /// main container wrote to stdout (OpenWhisk's contract): JSON when it
    /// parses as JSON, a string otherwise.
    Stdout,
}

/// What a publish beyond a topic's `maxConcurrent` gets (`overflow`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overflow {
    /// 429 with `Retry-After` (the default, as before queues existed).
    #[default]
    Reject,
    /// 202, status `Queued`: applied first-in first-out as the topic's
    /// runs finish; beyond `max_queued` waiting, or `max_queued_bytes` of
    /// them in the store, 429.
    Queue {
        /// `maxQueued`.
        max_queued: u32,
        /// `maxQueuedBytes`: what the waiting runs may take in the store
        /// together (each its rendered manifests and its body, once).
        max_queued_bytes: u64,
    },
}

/// `maxQueuedBytes` when a queueing topic leaves it out: 64 MiB, a hundred
/// runs of half a MiB, or 70 of the largest body (1 MiB by default).
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 64 * 1024 * 1024;

/// The largest `maxQueuedBytes`: every queue lives in the store's memory
/// (Redis) or file.
pub const MAX_MAX_QUEUED_BYTES: u64 = 1024 * 1024 * 1024;

/// The smallest `maxQueuedBytes`: below it hardly a run fits.
pub const MIN_MAX_QUEUED_BYTES: u64 = 64 * 1024;

/// `maxQueued` when a queueing topic leaves it out.
pub const DEFAULT_MAX_QUEUED: u32 = 100;

/// The largest `maxQueued`: each waiting run keeps its rendered manifests
/// in the store.
pub const MAX_MAX_QUEUED: u32 = 100_000;

/// One manifest file of a topic, parsed and validated.
#[derive(Debug)]
pub struct Manifest {
    /// Where the file is in the repository.
    pub path: RepoPath,
    /// The file's text as the commit holds it, before rendering (`GET
    /// /topics/{topic}` shows it). Read once per file: topics listing the
    /// same file share its [`Manifest`], and so this text. It costs its
    /// length and 32 bytes a file: 6.0 MB for the bench's 10,000-manifest
    /// repository (5.72 MB of text), whose snapshot holds 22.7 MB in all.
    pub text: Arc<str>,
    /// The parsed template.
    pub template: Template,
}

/// A topic: its name and the manifests a publish applies, in config order.
#[derive(Debug)]
pub struct Topic {
    /// The topic's name.
    pub name: TopicName,
    /// Its manifests; a file listed by several topics is shared.
    pub manifests: Vec<Arc<Manifest>>,
    /// At most this many of its runs unfinished at once (`maxConcurrent`).
    pub max_concurrent: Option<u32>,
    /// What a publish beyond `max_concurrent` gets (`overflow`).
    pub overflow: Overflow,
    /// How a run whose apply met a transient failure is tried again.
    pub retry: Option<Retry>,
    /// Where its functions' responses come from (`result`).
    pub result: ResultSource,
    /// What a publish must meet to run (`filter`), compiled.
    pub filter: Option<Filter>,
    /// When it runs by itself, if ever (`schedule`).
    pub schedule: Option<Schedule>,
}

/// One validated version of the catalog. Immutable; a sync replaces it whole.
#[derive(Debug)]
pub struct Snapshot {
    /// The commit (or, for a directory source, the content digest) it was built from.
    pub commit: String,
    /// Topics by name.
    pub topics: BTreeMap<TopicName, Topic>,
}

impl Snapshot {
    /// Looks a topic up by the name a request used.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        TopicName::parse(name)
            .ok()
            .and_then(|n| self.topics.get(&n))
    }

    /// How many distinct manifest files the snapshot holds.
    pub fn manifest_count(&self) -> usize {
        let mut seen = std::collections::BTreeSet::new();
        for t in self.topics.values() {
            for m in &t.manifests {
                seen.insert(&m.path);
            }
        }
        seen.len()
    }
}

/// Builds a snapshot from `config_path` and the files it lists. Every problem is
/// reported; the snapshot exists only if there are none.
pub fn build(
    tree: &dyn FileTree,
    config_path: &RepoPath,
    commit: &str,
) -> Result<Snapshot, CatalogError> {
    let config_name = config_path.to_string();
    let problem = |file: &str, line: Option<usize>, message: String| Problem {
        file: file.to_string(),
        line,
        message,
    };
    let raw = tree.read(config_path).map_err(|e| {
        CatalogError::Invalid(vec![problem(
            &config_name,
            None,
            match e {
                FileError::NotFound => "file not found: the repository must hold the topics configuration here (see --config-path / APPLY_CONFIG_PATH)".to_string(),
                other => other.to_string(),
            },
        )])
    })?;
    let config: ConfigFile = serde_json::from_slice(&raw).map_err(|e| {
        CatalogError::Invalid(vec![problem(
            &config_name,
            Some(e.line()).filter(|l| *l > 0),
            format!(
                "invalid config: {e}; expected {{\"topics\": [{{\"name\": \"…\", \"configs\": [\"file.yaml\"]}}]}}"
            ),
        )])
    })?;

    // Files are read here, in config order (a tree need not be shareable
    // across threads), and parsed afterwards, in parallel; a file's problem
    // keeps its place in `problems` (where the file is first listed).
    let mut problems: Vec<Pending> = Vec::new();
    let mut files: Vec<(RepoPath, Result<Arc<str>, Problem>)> = Vec::new();
    let mut file_index: BTreeMap<RepoPath, usize> = BTreeMap::new();
    type Parsed = (
        Vec<usize>,
        Option<u32>,
        Overflow,
        Option<Retry>,
        ResultSource,
        Option<Filter>,
        Option<Schedule>,
    );
    let mut topics: BTreeMap<TopicName, Parsed> = BTreeMap::new();
    let problem = |file: &str, line: Option<usize>, message: String| {
        Pending::Problem(problem(file, line, message))
    };
    for (index, entry) in config.topics.into_iter().enumerate() {
        let name = match TopicName::parse(&entry.name) {
            Ok(n) => n,
            Err(msg) => {
                problems.push(problem(&config_name, None, msg));
                continue;
            }
        };
        if topics.contains_key(&name) {
            problems.push(problem(
                &config_name,
                None,
                format!("topic `{name}` is declared twice: merge its configs into one entry"),
            ));
            continue;
        }
        if entry.max_concurrent == Some(0) {
            problems.push(problem(
                &config_name,
                None,
                format!(
                    "topic `{name}`: maxConcurrent must be at least 1 (leave it out for no limit)"
                ),
            ));
            continue;
        }
        let overflow = match topic_overflow(&name, &entry) {
            Ok(o) => o,
            Err(msg) => {
                problems.push(problem(&config_name, None, msg));
                continue;
            }
        };
        let retry = match topic_retry(&name, &entry) {
            Ok(r) => r,
            Err(msg) => {
                problems.push(problem(&config_name, None, msg));
                continue;
            }
        };
        let result = match entry.result.as_deref() {
            None => ResultSource::Posted,
            Some("stdout") => ResultSource::Stdout,
            Some(other) => {
                problems.push(problem(
                    &config_name,
                    None,
                    format!(
                        "topic `{name}`: result `{other}` is not known; use \"result\": \"stdout\" (the last line a function writes becomes its response) or leave result out"
                    ),
                ));
                continue;
            }
        };
        let filter = match topic_filter(&name, entry.filter.as_ref()) {
            Ok(f) => f,
            Err(msg) => {
                let line = topic_key_line(&raw, index, "filter");
                problems.push(problem(&config_name, line, msg));
                continue;
            }
        };
        let schedule = match entry.schedule {
            None => None,
            Some(raw_schedule) => {
                // The value borrows from `raw`: where it starts is its line.
                let offset =
                    (raw_schedule.get().as_ptr() as usize).saturating_sub(raw.as_ptr() as usize);
                let line = line_at(&raw, offset);
                match topic_schedule(&name, raw_schedule.get(), line) {
                    Ok(s) => Some(s),
                    Err(msg) => {
                        problems.push(problem(&config_name, Some(line), msg));
                        continue;
                    }
                }
            }
        };
        if entry.configs.is_empty() {
            problems.push(problem(
                &config_name,
                None,
                format!("topic `{name}` lists no manifest in `configs`"),
            ));
            continue;
        }
        let mut topic_manifests = Vec::with_capacity(entry.configs.len());
        for raw_path in &entry.configs {
            let path = match RepoPath::parse(raw_path) {
                Ok(p) => p,
                Err(msg) => {
                    problems.push(problem(
                        &config_name,
                        None,
                        format!("topic `{name}`: {msg}"),
                    ));
                    continue;
                }
            };
            let i = match file_index.get(&path) {
                Some(&i) => i,
                None => {
                    let i = files.len();
                    files.push((path.clone(), read_manifest(tree, &path)));
                    file_index.insert(path, i);
                    problems.push(Pending::File(i));
                    i
                }
            };
            topic_manifests.push(i);
        }
        topics.insert(
            name,
            (
                topic_manifests,
                entry.max_concurrent,
                overflow,
                retry,
                result,
                filter,
                schedule,
            ),
        );
    }

    let parsed = parse_all(files, PARSE_THREADS);
    let mut problems: Vec<Problem> = problems
        .into_iter()
        .filter_map(|p| match p {
            Pending::Problem(p) => Some(p),
            Pending::File(i) => parsed[i].as_ref().err().cloned(),
        })
        .collect();
    // A schedule renders its topic once its manifests are known good.
    for (name, (indexes, .., schedule)) in &topics {
        let Some(schedule) = schedule else { continue };
        let manifests: Option<Vec<Arc<Manifest>>> = indexes
            .iter()
            .map(|i| parsed[*i].as_ref().ok().map(Arc::clone))
            .collect();
        if let Some(manifests) = manifests {
            if let Err(msg) = check_schedule(name, schedule, &manifests) {
                problems.push(Problem {
                    file: config_name.clone(),
                    line: Some(schedule.line),
                    message: msg,
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(CatalogError::Invalid(problems));
    }
    let topics = topics
        .into_iter()
        .map(
            |(name, (indexes, max_concurrent, overflow, retry, result, filter, schedule))| {
                let manifests = indexes
                    .into_iter()
                    .filter_map(|i| parsed[i].as_ref().ok().map(Arc::clone))
                    .collect();
                let topic = Topic {
                    name: name.clone(),
                    manifests,
                    max_concurrent,
                    overflow,
                    retry,
                    result,
                    filter,
                    schedule,
                };
                (name, topic)
            },
        )
        .collect();
    Ok(Snapshot {
        commit: commit.to_string(),
        topics,
    })
}

/// A topic's `filter`, compiled: a string, a CEL expression that keeps to
/// what a filter may be.
fn topic_filter(
    name: &TopicName,
    filter: Option<&serde_json::Value>,
) -> Result<Option<Filter>, String> {
    match filter {
        None => Ok(None),
        Some(serde_json::Value::String(source)) => Filter::compile(source)
            .map(Some)
            .map_err(|e| format!("topic `{name}`: {e}")),
        Some(other) => Err(format!(
            "topic `{name}`: filter must be a string holding a CEL expression (e.g. \"body.action == 'opened'\"), not {}",
            match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Array(_) => "a list",
                serde_json::Value::Object(_) => "an object",
                serde_json::Value::String(_) => "a string",
            }
        )),
    }
}

/// The 1-based line of `key` in the object at `index` of the `topics` list
/// of `raw`, a config.json serde_json has read already (so valid JSON):
/// where a problem of that topic's field is reported. None when not found.
fn topic_key_line(raw: &[u8], index: usize, key: &str) -> Option<usize> {
    let mut scan = JsonScan {
        text: raw,
        at: 0,
        line: 1,
    };
    scan.space();
    if !scan.eat(b'{') {
        return None;
    }
    loop {
        scan.space();
        let name = scan.string()?;
        scan.space();
        scan.eat(b':').then_some(())?;
        scan.space();
        if name == "topics" && scan.eat(b'[') {
            for i in 0.. {
                scan.space();
                if i == index {
                    return scan.key_line(key);
                }
                scan.skip()?;
                scan.space();
                scan.eat(b',').then_some(())?;
            }
        }
        scan.skip()?;
        scan.space();
        scan.eat(b',').then_some(())?;
    }
}

/// A cursor over valid JSON text that knows its line.
struct JsonScan<'a> {
    text: &'a [u8],
    at: usize,
    line: usize,
}

impl JsonScan<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn space(&mut self) {
        while let Some(b) = self.peek().filter(|b| b" \t\r\n".contains(b)) {
            self.line += usize::from(b == b'\n');
            self.at += 1;
        }
    }

    /// A string, decoded; the cursor after it.
    fn string(&mut self) -> Option<String> {
        let start = self.at;
        self.eat(b'"').then_some(())?;
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => break,
                _ => self.at += 1,
            }
        }
        self.at += 1;
        serde_json::from_slice(self.text.get(start..self.at)?).ok()
    }

    /// Skips one value (nesting as deep as serde_json allowed it).
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.at += 1;
                self.space();
                if self.eat(close) {
                    return Some(());
                }
                loop {
                    if open == b'{' {
                        self.string()?;
                        self.space();
                        self.eat(b':').then_some(())?;
                        self.space();
                    }
                    self.skip()?;
                    self.space();
                    if self.eat(close) {
                        return Some(());
                    }
                    self.eat(b',').then_some(())?;
                    self.space();
                }
            }
            _ => {
                while self.peek().is_some_and(|b| !b",]} \t\r\n".contains(&b)) {
                    self.at += 1;
                }
                Some(())
            }
        }
    }

    /// In the object at the cursor, the line of `key`.
    fn key_line(&mut self, key: &str) -> Option<usize> {
        self.eat(b'{').then_some(())?;
        loop {
            self.space();
            let line = self.line;
            if self.string()? == key {
                return Some(line);
            }
            self.space();
            self.eat(b':').then_some(())?;
            self.space();
            self.skip()?;
            self.space();
            self.eat(b',').then_some(())?;
        }
    }
}

/// A problem of the config, or the problem (if any) of the file at an index.
enum Pending {
    Problem(Problem),
    File(usize),
}

/// Threads that parse templates: a snapshot of thousands of manifests is
/// built in a fraction of the time on a machine with several cores.
const PARSE_THREADS: usize = 4;

/// Fewer files than this are parsed on the calling thread.
const PARALLEL_FROM: usize = 64;

/// Parses every file, on up to `threads` threads (bounded by the machine's
/// cores); results are in the order of `files`.
fn parse_all(
    files: Vec<(RepoPath, Result<Arc<str>, Problem>)>,
    threads: usize,
) -> Vec<Result<Arc<Manifest>, Problem>> {
    let parse = |(path, text): &(RepoPath, Result<Arc<str>, Problem>)| match text {
        Ok(t) => parse_manifest(path, t).map(Arc::new),
        Err(p) => Err(p.clone()),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = threads.min(cores).max(1);
    if threads == 1 || files.len() < PARALLEL_FROM {
        return files.iter().map(parse).collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(parse).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn read_manifest(tree: &dyn FileTree, path: &RepoPath) -> Result<Arc<str>, Problem> {
    let file = path.to_string();
    let bytes = tree.read(path).map_err(|e| Problem {
        file: file.clone(),
        line: None,
        message: match e {
            FileError::NotFound => "file not found (listed in the topics configuration)".into(),
            other => other.to_string(),
        },
    })?;
    String::from_utf8(bytes)
        .map(Arc::from)
        .map_err(|_| Problem {
            file,
            line: None,
            message: "not UTF-8 text".into(),
        })
}

fn parse_manifest(path: &RepoPath, text: &Arc<str>) -> Result<Manifest, Problem> {
    let file = path.to_string();
    let template = Template::parse(text).map_err(|e| {
        let (line, message) = match &e {
            crate::template::TemplateError::Syntax { line, reason } => {
                (Some(*line).filter(|l| *l > 0), reason.clone())
            }
            crate::template::TemplateError::Unsupported { line, .. } => {
                (Some(*line).filter(|l| *l > 0), e.to_string())
            }
            _ => (None, e.to_string()),
        };
        Problem {
            file: file.clone(),
            line,
            message,
        }
    })?;
    Ok(Manifest {
        path: path.clone(),
        text: Arc::clone(text),
        template,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MemTree(HashMap<&'static str, Result<&'static str, &'static str>>);

    impl FileTree for MemTree {
        fn read(&self, path: &RepoPath) -> Result<Vec<u8>, FileError> {
            match self.0.get(path.as_ref()) {
                Some(Ok(s)) => Ok(s.as_bytes().to_vec()),
                Some(Err(kind)) => Err(FileError::NotAFile(kind)),
                None => Err(FileError::NotFound),
            }
        }
    }

    const JOB: &str =
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j-{{RANDOM}}\nspec: {}\n";

    fn tree(files: &[(&'static str, &'static str)]) -> MemTree {
        MemTree(files.iter().map(|(k, v)| (*k, Ok(*v))).collect())
    }

    fn config() -> RepoPath {
        RepoPath::parse("config.json").expect("valid")
    }

    fn problems(t: &MemTree) -> Vec<String> {
        match build(t, &config(), "c1") {
            Ok(_) => vec![],
            Err(CatalogError::Invalid(p)) => p.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn builds_a_snapshot_with_shared_manifests() {
        let t = tree(&[
            (
                "config.json",
                r#"{"topics": [{"name": "a", "configs": ["job.yaml", "./dir/b.yaml"]}, {"name": "b", "configs": ["job.yaml"]}], "extra": 1}"#,
            ),
            ("job.yaml", JOB),
            ("dir/b.yaml", JOB),
        ]);
        let s = build(&t, &config(), "c1").expect("valid");
        assert_eq!(s.commit, "c1");
        assert_eq!(s.topics.len(), 2);
        let a = s.topic("a").expect("topic a");
        assert_eq!(a.manifests[1].path.as_ref(), "dir/b.yaml");
        assert!(Arc::ptr_eq(
            &a.manifests[0],
            &s.topic("b").expect("b").manifests[0]
        ));
        assert_eq!(s.manifest_count(), 2);
    }

    #[test]
    fn a_topic_says_where_its_results_come_from() {
        let t = tree(&[
            (
                "config.json",
                r#"{"topics": [{"name": "a", "configs": ["j.yaml"], "result": "stdout"}, {"name": "b", "configs": ["j.yaml"]}]}"#,
            ),
            ("j.yaml", JOB),
        ]);
        let s = build(&t, &RepoPath::parse("config.json").expect("path"), "c").expect("valid");
        assert_eq!(s.topic("a").map(|t| t.result), Some(ResultSource::Stdout));
        assert_eq!(s.topic("b").map(|t| t.result), Some(ResultSource::Posted));
    }

    #[test]
    fn every_problem_of_a_commit_is_reported() {
        type Files = &'static [(&'static str, &'static str)];
        let cases: &[(&str, Files, &str)] = &[
            ("missing config", &[], "config.json: file not found"),
            (
                "syntax error with line",
                &[("config.json", "{\n\"topics\": [}")],
                "config.json:2: invalid config",
            ),
            (
                "wrong schema",
                &[("config.json", r#"{"topics": {"a": 1}}"#)],
                "invalid config",
            ),
            (
                "missing manifest",
                &[(
                    "config.json",
                    r#"{"topics": [{"name": "a", "configs": ["nope.yaml"]}]}"#,
                )],
                "nope.yaml: file not found",
            ),
            (
                "dotdot escape",
                &[(
                    "config.json",
                    r#"{"topics": [{"name": "a", "configs": ["../etc/passwd"]}]}"#,
                )],
                "contains `..`",
            ),
            (
                "absolute path",
                &[(
                    "config.json",
                    r#"{"topics": [{"name": "a", "configs": ["/etc/passwd"]}]}"#,
                )],
                "absolute path",
            ),
            (
                "bad topic name",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a b", "configs": ["j.yaml"]}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "not a valid Kubernetes label value",
            ),
            (
                "duplicate topic",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"]}, {"name": "a", "configs": ["j.yaml"]}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "declared twice",
            ),
            (
                "no configs",
                &[(
                    "config.json",
                    r#"{"topics": [{"name": "a", "configs": []}]}"#,
                )],
                "lists no manifest",
            ),
            (
                "zero maxConcurrent",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"], "maxConcurrent": 0}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "maxConcurrent must be at least 1",
            ),
            (
                "queue without a limit",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"], "overflow": "queue"}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "needs maxConcurrent",
            ),
            (
                "maxQueued without a queue",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"], "maxConcurrent": 1, "maxQueued": 3}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "maxQueued and maxQueuedBytes need",
            ),
            (
                "maxQueuedBytes without a queue",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"], "maxConcurrent": 1, "maxQueuedBytes": 1048576}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "maxQueued and maxQueuedBytes need \"overflow\": \"queue\"",
            ),
            (
                "maxQueuedBytes beyond its ceiling",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"], "maxConcurrent": 1, "overflow": "queue", "maxQueuedBytes": 1073741825}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "maxQueuedBytes must be from 65536 (64 KiB) to 1073741824 (1 GiB)",
            ),
            (
                "maxQueuedBytes below its floor",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"], "maxConcurrent": 1, "overflow": "queue", "maxQueuedBytes": 1000}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "maxQueuedBytes must be from 65536",
            ),
            (
                "zero maxQueued",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"], "maxConcurrent": 1, "overflow": "queue", "maxQueued": 0}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "maxQueued must be from 1",
            ),
            (
                "unknown overflow",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"], "maxConcurrent": 1, "overflow": "wait"}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "overflow `wait` is not known",
            ),
            (
                "zero retry attempts",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"], "retry": {"attempts": 0}}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "retry.attempts must be from 1",
            ),
            (
                "bad retry backoff",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"], "retry": {"attempts": 3, "backoff": "soon"}}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "retry.backoff `soon` is not a duration",
            ),
            (
                "unknown result",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"], "result": "stderr"}]}"#,
                    ),
                    ("j.yaml", JOB),
                ],
                "result `stderr` is not known",
            ),
            (
                "broken template",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"]}]}"#,
                    ),
                    ("j.yaml", "kind: Job\nmetadata:\n  name: {{lookup a b}}\n"),
                ],
                "j.yaml:3: ",
            ),
            (
                "not yaml after placeholders",
                &[
                    (
                        "config.json",
                        r#"{"topics": [{"name": "a", "configs": ["j.yaml"]}]}"#,
                    ),
                    ("j.yaml", "apiVersion: v1\nkind: [\n"),
                ],
                "not valid YAML",
            ),
        ];
        for (what, files, expected) in cases {
            let found = problems(&tree(files));
            assert!(
                found.iter().any(|p| p.contains(expected)),
                "{what}: expected a problem containing {expected:?}, got {found:?}"
            );
        }
    }

    #[test]
    fn a_schedule_is_read_with_its_defaults() {
        let t = tree(&[
            (
                "config.json",
                r#"{"topics": [
  {"name": "a", "configs": ["j.yaml"], "schedule": {"cron": "*/5 * * * *"}},
  {"name": "b", "configs": ["p.yaml"], "schedule": {"cron": "@daily", "timezone": "Europe/Paris",
     "body": "hello", "params": {"city": "Paris"}, "startingDeadlineSeconds": 300}},
  {"name": "c", "configs": ["j.yaml"]}
]}"#,
            ),
            ("j.yaml", JOB),
            (
                "p.yaml",
                "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j-{{RANDOM}}\n  annotations:\n    at: \"{{SCHEDULED_TIME}}\"\n    city: {{city}}\nspec: {}\n",
            ),
        ]);
        let s = build(&t, &config(), "c1").expect("valid");
        let a = s.topic("a").and_then(|t| t.schedule.clone()).expect("a's");
        assert_eq!(a.cron.expression(), "*/5 * * * *");
        assert_eq!(a.cron.timezone(), "UTC");
        assert_eq!(a.body, "");
        assert_eq!(
            a.starting_deadline.as_secs(),
            DEFAULT_STARTING_DEADLINE_SECONDS
        );
        assert_eq!(a.line, 2);
        let b = s.topic("b").and_then(|t| t.schedule.clone()).expect("b's");
        assert_eq!(b.cron.timezone(), "Europe/Paris");
        assert_eq!(b.body, "hello");
        assert_eq!(b.params, vec![("city".to_string(), "Paris".to_string())]);
        assert_eq!(b.starting_deadline.as_secs(), 300);
        assert_eq!(b.line, 3);
        assert!(s.topic("c").is_some_and(|t| t.schedule.is_none()));
    }

    /// Every problem of a schedule is one of the commit, at the line of
    /// the schedule in config.json.
    #[test]
    fn a_bad_schedule_is_a_problem_of_the_commit_at_its_line() {
        let uses = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j-{{RANDOM}}\n  labels:\n    city: {{city}}\nspec: {}\n";
        let cases: &[(&str, &str)] = &[
            (
                r#""schedule": {"cron": "* * * * * *"}"#,
                "more often than once a minute",
            ),
            (r#""schedule": {"cron": "61 * * * *"}"#, "is not valid"),
            (r#""schedule": {"cron": "@reboot"}"#, "not a known macro"),
            (
                r#""schedule": {"cron": "* * * * *", "timezone": "Europe/Lutece"}"#,
                "not a known IANA time zone",
            ),
            (
                r#""schedule": {"cron": "* * * * *", "startingDeadlineSeconds": 1}"#,
                "startingDeadlineSeconds must be from 10",
            ),
            (
                r#""schedule": {"cron": "* * * * *", "every": "minute"}"#,
                "unknown field `every`",
            ),
            (r#""schedule": {"timezone": "UTC"}"#, "missing field `cron`"),
            (
                r#""schedule": {"cron": "* * * * *", "params": {"city": 7}}"#,
                "invalid type",
            ),
            (
                r#""schedule": {"cron": "* * * * *", "params": {"RANDOM": "x"}}"#,
                "params.RANDOM is reserved",
            ),
            (
                r#""schedule": {"cron": "* * * * *", "params": {"a b": "x"}}"#,
                "not a valid variable name",
            ),
            (
                r#""schedule": {"cron": "* * * * *"}"#,
                "use {{city}}, which the schedule does not give",
            ),
            (
                r#""schedule": {"cron": "* * * * *", "params": {"city": "x\nkind: Secret"}}"#,
                "does not render with the schedule's body and params",
            ),
        ];
        for (schedule, says) in cases {
            let config_text: &'static str = Box::leak(
                format!(
                    "{{\"topics\": [\n  {{\"name\": \"ok\", \"configs\": [\"j.yaml\"]}},\n  {{\"name\": \"a\", \"configs\": [\"c.yaml\"],\n   {schedule}}}\n]}}"
                )
                .into_boxed_str(),
            );
            let found = problems(&tree(&[
                ("config.json", config_text),
                ("j.yaml", JOB),
                ("c.yaml", uses),
            ]));
            assert_eq!(found.len(), 1, "{schedule}: {found:?}");
            assert!(
                found[0].starts_with("config.json:4: topic `a`: schedule: "),
                "{schedule}: {found:?}"
            );
            assert!(
                found[0].contains(says),
                "{schedule}: expected {says:?} in {found:?}"
            );
        }
    }

    #[test]
    fn a_large_repository_is_parsed_in_parallel_with_the_same_result() {
        // Enough files for the parallel path; every 17th is broken, and
        // topics share files, so problem order and sharing are both checked.
        let mut files = vec![];
        let mut topics = vec![];
        for i in 0..300 {
            let path: &'static str = Box::leak(format!("f{i}.yaml").into_boxed_str());
            let text = if i % 17 == 0 { "kind: [\n" } else { JOB };
            files.push((path, text));
            topics.push(serde_json::json!({"name": format!("t{i}"), "configs": [path, "f1.yaml"]}));
        }
        let config_text: &'static str = Box::leak(
            serde_json::json!({ "topics": topics })
                .to_string()
                .into_boxed_str(),
        );
        files.push(("config.json", config_text));
        let found = problems(&tree(&files));
        let expected: Vec<String> = (0..300)
            .filter(|i| i % 17 == 0)
            .map(|i| format!("f{i}.yaml"))
            .collect();
        let found_files: Vec<String> = found
            .iter()
            .map(|p| p.split(':').next().unwrap_or("").to_string())
            .collect();
        assert_eq!(found_files, expected, "{found:?}");

        let read: Vec<(RepoPath, Result<Arc<str>, Problem>)> = (0..300)
            .map(|i| {
                let path = RepoPath::parse(&format!("f{i}.yaml")).expect("path");
                let text = if i % 17 == 0 { "kind: [\n" } else { JOB };
                (path, Ok(Arc::from(text)))
            })
            .collect();
        let outline = |r: Vec<Result<Arc<Manifest>, Problem>>| -> Vec<String> {
            r.into_iter()
                .map(|m| match m {
                    Ok(m) => m.path.to_string(),
                    Err(p) => p.to_string(),
                })
                .collect()
        };
        assert_eq!(
            outline(parse_all(read.clone(), 1)),
            outline(parse_all(read, 4))
        );

        let mut ok = files.clone();
        ok.retain(|(p, _)| *p != "config.json");
        for f in ok.iter_mut() {
            f.1 = JOB;
        }
        ok.push(("config.json", config_text));
        let snapshot = build(&tree(&ok), &config(), "c1").expect("valid");
        assert_eq!(snapshot.topics.len(), 300);
        assert!(Arc::ptr_eq(
            &snapshot.topic("t5").expect("t5").manifests[1],
            &snapshot.topic("t9").expect("t9").manifests[1]
        ));
        assert_eq!(
            snapshot.topic("t7").expect("t7").manifests[0].path.as_ref(),
            "f7.yaml"
        );
    }

    #[test]
    fn a_manifest_keeps_its_text_as_committed_once_for_every_topic_listing_it() {
        // CRLF, a template, trailing spaces and no final newline: kept as is.
        let text = "apiVersion: batch/v1\r\nkind: Job\r\nmetadata:\r\n  name: j-{{RANDOM}}   \r\nspec:\r\n  template:\r\n    spec:\r\n      restartPolicy: Never\r\n      containers:\r\n        - name: main\r\n          image: busybox";
        let config_text = "{\"topics\": [{\"name\": \"a\", \"configs\": [\"./j.yaml\"]}, {\"name\": \"b\", \"configs\": [\"j.yaml\"]}]}";
        let t = tree(&[("config.json", config_text), ("j.yaml", text)]);
        let snapshot = build(&t, &config(), "c1").expect("valid");
        let a = &snapshot.topic("a").expect("a").manifests[0];
        let b = &snapshot.topic("b").expect("b").manifests[0];
        assert_eq!(&*a.text, text);
        assert!(Arc::ptr_eq(&a.text, &b.text), "one copy of the text");
    }

    #[test]
    fn a_topics_filter_is_compiled_and_its_problems_have_their_line() {
        let text = "{\n  \"topics\": [\n    {\"name\": \"a\", \"configs\": [\"j.yaml\"]},\n    {\n      \"name\": \"b\",\n      \"configs\": [\"j.yaml\"],\n      \"filter\": \"body.x ==\"\n    },\n    {\"name\": \"c\", \"configs\": [\"j.yaml\"], \"filter\": 3},\n    {\"name\": \"d\", \"configs\": [\"j.yaml\"], \"x\": {\"filter\": [\"}\"]},\n      \"filter\": \"nope.x\"},\n    {\"name\": \"e\", \"configs\": [\"j.yaml\"], \"filter\": \"body.ok\"}\n  ]\n}\n";
        let t = tree(&[("config.json", text), ("j.yaml", JOB)]);
        let found = problems(&t);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0]
                .starts_with("config.json:7: topic `b`: the filter is not a valid CEL expression"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("config.json:9: topic `c`: filter must be a string"),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("config.json:11: topic `d`: the filter uses `nope`"),
            "{found:?}"
        );
        let ok = tree(&[
            (
                "config.json",
                r#"{"topics": [{"name": "e", "configs": ["j.yaml"], "filter": "body.ok"}, {"name": "f", "configs": ["j.yaml"]}]}"#,
            ),
            ("j.yaml", JOB),
        ]);
        let s = build(&ok, &config(), "c1").expect("valid");
        assert_eq!(
            s.topic("e")
                .and_then(|t| t.filter.as_ref())
                .map(|f| f.source()),
            Some("body.ok")
        );
        assert!(s.topic("f").is_some_and(|t| t.filter.is_none()));
        let long = format!(
            r#"{{"topics": [{{"name": "a", "configs": ["j.yaml"], "filter": "{}"}}]}}"#,
            "x".repeat(5000)
        );
        let long: &'static str = Box::leak(long.into_boxed_str());
        let found = problems(&tree(&[("config.json", long), ("j.yaml", JOB)]));
        assert!(found[0].contains("at most 4096"), "{found:?}");
    }

    #[test]
    fn symlinks_and_directories_are_refused() {
        let mut t = tree(&[(
            "config.json",
            r#"{"topics": [{"name": "a", "configs": ["link.yaml", "dir"]}]}"#,
        )]);
        t.0.insert("link.yaml", Err("symlink"));
        t.0.insert("dir", Err("directory"));
        let found = problems(&t);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("is a symlink"));
        assert!(found[1].contains("is a directory"));
    }

    #[test]
    fn topic_names_follow_label_rules() {
        for ok in ["a", "timeToCollect", "a.b_c-d", &"x".repeat(63)] {
            assert!(TopicName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a/b", "a b", "é", &"x".repeat(64)] {
            assert!(TopicName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repo_paths_are_normalized_and_cannot_escape() {
        assert_eq!(
            RepoPath::parse("./a//b.yaml").map(|p| p.0),
            Ok("a/b.yaml".into())
        );
        for bad in [
            "",
            "/a",
            "a/../b",
            "..",
            ".",
            "a\\b",
            ".git/config",
            "a/.git/x",
        ] {
            assert!(RepoPath::parse(bad).is_err(), "{bad}");
        }
    }
}
