//! The command-line tools besides `serve`: `validate` (lint a functions
//! repository, usable as a pre-commit or CI step), `render` (print what a
//! publish would apply, `{{body.…}}` fields and the topic's filter decided
//! on the payload as a publish decides them) and the HTTP client: `publish`, and `runs`,
//! `logs`, `cancel`, `tree` (in `runs`). Exit codes: 0 ok, 1 problems
//! found or gitfaas refused the call (any non-2xx answer, a 404 too),
//! 2 usage or environment error (gitfaas unreachable among them).

mod client;
mod runs;

pub use client::ClientError;
pub use runs::{cancel, logs, runs, tree};

use std::collections::BTreeSet;
use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;

use crate::catalog::Snapshot;
use crate::cluster;
use crate::policy::Policy;
use crate::publish::{self, Request, RESERVED};
use crate::settings::{PublishArgs, RenderArgs, SourceArgs, ValidateArgs};
use crate::source::{self, SyncError};
use crate::template::{is_body_path, BODY_PREFIX};

/// `{{SCHEDULED_TIME}}` in `validate`'s render of a topic that uses it.
const SAMPLE_SCHEDULED_TIME: &str = "2026-01-01T00:00:00Z";
use client::ApiClient;

/// Problems found.
pub const FINDINGS: u8 = 1;
/// Usage or environment error.
pub const ERROR: u8 = 2;

/// Loads the repository; `lint` when every topic is rendered next
/// ([`source::load_for_lint`]).
async fn load(source: SourceArgs, lint: bool) -> anyhow::Result<Result<Snapshot, SyncError>> {
    let (source, config_path) = source.resolve()?;
    tokio::task::spawn_blocking(move || match lint {
        true => source::load_for_lint(&source, &config_path),
        false => source::load(&source, &config_path),
    })
    .await
    .context("while loading the repository")
}

/// Values for every variable a topic uses, for linting: the given params,
/// else a harmless sample.
fn sample_params(
    snapshot: &Snapshot,
    topic: &str,
    given: &[(String, String)],
) -> Vec<(String, String)> {
    let mut names = BTreeSet::new();
    if let Some(t) = snapshot.topic(topic) {
        for m in &t.manifests {
            names.extend(m.template.variables().iter().cloned());
        }
    }
    names
        .into_iter()
        .filter(|n| !RESERVED.contains(&n.as_str()) && !is_body_path(n))
        .map(|n| {
            let v = given
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "sample".into());
            (n, v)
        })
        .collect()
}

/// A JSON body that fills every `{{body.…}}` variable of `topic` with a
/// sample string, for linting. A path used both as a value and as an
/// object (`body.a` and `body.a.b`) gets the object, and the render then
/// says `body.a` can never be a value.
fn sample_body(snapshot: &Snapshot, topic: &str) -> Vec<u8> {
    let mut root = serde_json::Map::new();
    let paths: BTreeSet<&str> = snapshot
        .topic(topic)
        .iter()
        .flat_map(|t| &t.manifests)
        .flat_map(|m| m.template.variables())
        .map(String::as_str)
        .filter(|v| is_body_path(v))
        .collect();
    for path in paths {
        let mut node = &mut root;
        let mut segments = path.trim_start_matches(BODY_PREFIX).split('.').peekable();
        while let Some(segment) = segments.next() {
            if segments.peek().is_none() {
                node.entry(segment)
                    .or_insert_with(|| serde_json::Value::String("sample".into()));
                break;
            }
            let next = node
                .entry(segment)
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if !next.is_object() {
                *next = serde_json::Value::Object(Default::default());
            }
            let serde_json::Value::Object(next) = next else {
                break;
            };
            node = next;
        }
    }
    if root.is_empty() {
        Vec::new()
    } else {
        serde_json::Value::Object(root).to_string().into_bytes()
    }
}

/// `gitfaas validate`.
pub async fn validate(mut args: ValidateArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = args.path.take() {
        args.source.dir = Some(path);
    }
    let snapshot = match load(args.source, true).await? {
        Ok(s) => s,
        Err(SyncError::Rejected { problems, .. }) => {
            for p in &problems {
                println!("{p}");
            }
            eprintln!(
                "{} problem{}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            return Ok(ExitCode::from(FINDINGS));
        }
        Err(e) => anyhow::bail!(e),
    };
    let policy = args.policy.policy()?;
    let payload = args.payload.as_deref().map(read_data).transpose()?;
    // The renders are kept only for the server-side dry run.
    let (mut problems, rendered) = render_all(
        &snapshot,
        &policy,
        &args.params,
        payload.as_deref(),
        args.kubeconfig.is_some(),
    );
    if let Some(kubeconfig) = &args.kubeconfig {
        let applier = cluster::connect(
            Some(kubeconfig),
            args.namespace.as_deref(),
            std::time::Duration::from_secs(10),
        )
        .await
        .context("while connecting to Kubernetes")?;
        for topic in &rendered {
            for m in &topic.manifests {
                let path = &m.path;
                for (i, doc) in m.objects.iter().enumerate() {
                    let result = match applier.target(doc).await {
                        Ok(target) => applier
                            .server_side_apply(&target, doc, None, true)
                            .await
                            .map(|_| ()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = result {
                        problems.insert(format!("{path}: document {}: {e}", i + 1));
                    }
                }
            }
        }
    }
    for p in &problems {
        println!("{p}");
    }
    let (topics, manifests) = (snapshot.topics.len(), snapshot.manifest_count());
    // The process ends next, which frees the snapshot at once; freeing its
    // thousands of rendered templates one by one would only add to the wall
    // time (3 % of the CPU of validating 10,000 manifests).
    std::mem::forget(snapshot);
    if problems.is_empty() {
        eprintln!(
            "ok: {topics} topics, {manifests} manifests{}",
            if args.kubeconfig.is_some() {
                ", server-side dry run passed"
            } else {
                ""
            }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} problem{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        Ok(ExitCode::from(FINDINGS))
    }
}

/// Renders every topic of `snapshot` as a dry-run publish would: the
/// problems, and the renders when `keep`. Renders are independent, so the
/// topics are split over the machine's cores (a repository of thousands of
/// manifests is linted in a fraction of the time); the problems are a set
/// and the renders keep the topics' order, so the result is the same.
fn render_all(
    snapshot: &Snapshot,
    policy: &Policy,
    given: &[(String, String)],
    payload: Option<&[u8]>,
    keep: bool,
) -> (BTreeSet<String>, Vec<publish::RenderedTopic>) {
    // A topic that reads a CloudEvent's attributes is linted with a sample
    // event; one that does not, ignores it.
    let event = crate::cloudevent::Attributes::sample();
    let render = |topics: &[&crate::catalog::TopicName]| {
        let mut problems = BTreeSet::new();
        let mut rendered = Vec::new();
        for topic in topics {
            let params = sample_params(snapshot, topic.as_ref(), given);
            let body = match payload {
                Some(p) => p.to_vec(),
                None => sample_body(snapshot, topic.as_ref()),
            };
            let req = Request {
                topic: topic.as_ref(),
                body: &body,
                params,
                dry_run: true,
                trace_id: None,
                cloudevent: Some(&event),
                // A lint: any tick will do for a topic a schedule runs.
                scheduled_time: Some(SAMPLE_SCHEDULED_TIME),
            };
            match publish::render_topic(
                snapshot,
                policy,
                "http://gitfaas:5000",
                &req,
                &publish::new_request_uid(),
            ) {
                Ok(r) if keep => rendered.push(r),
                Ok(_) => {}
                Err(e) => {
                    problems.insert(e.to_string());
                }
            }
        }
        (problems, rendered)
    };
    let topics: Vec<&crate::catalog::TopicName> = snapshot.topics.keys().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, RENDER_THREADS);
    if threads == 1 || topics.len() < 2 * RENDER_PER_THREAD {
        return render(&topics);
    }
    let chunk = topics.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = topics
            .chunks(chunk)
            .map(|part| scope.spawn(move || render(part)))
            .collect();
        let mut all = (BTreeSet::new(), Vec::new());
        for worker in workers {
            let (problems, rendered) = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            all.0.extend(problems);
            all.1.extend(rendered);
        }
        all
    })
}

/// At most this many threads render in `validate`.
const RENDER_THREADS: usize = 8;

/// Fewer topics than twice this are rendered on the calling thread.
const RENDER_PER_THREAD: usize = 32;

fn read_data(spec: &str) -> anyhow::Result<Vec<u8>> {
    match spec.strip_prefix('@') {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("while reading standard input")?;
            Ok(buf)
        }
        Some(file) => std::fs::read(file).with_context(|| format!("while reading {file}")),
        None => Ok(spec.as_bytes().to_vec()),
    }
}

/// `gitfaas render`.
pub async fn render(args: RenderArgs) -> anyhow::Result<ExitCode> {
    let payload = read_data(&args.payload)?;
    let snapshot = match load(args.source, false).await? {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(FINDINGS));
        }
    };
    let policy: Policy = args.policy.policy()?;
    let event = match args.cloudevent.as_slice() {
        [] => None,
        given => {
            // The bound of a publish's values, its --max-param-bytes default.
            let limits = crate::cloudevent::Limits {
                max_value_bytes: 4096,
            };
            match crate::cloudevent::Attributes::from_pairs(given, limits) {
                Ok(event) => Some(event),
                Err(e) => {
                    eprintln!("--ce: {e}");
                    return Ok(ExitCode::from(ERROR));
                }
            }
        }
    };
    if let Some(filter) = snapshot.topic(&args.topic).and_then(|t| t.filter.as_ref()) {
        let params: std::collections::BTreeMap<String, String> =
            args.params.iter().cloned().collect();
        let input = crate::filter::Input {
            body: &payload,
            params: &params,
            envelope: &crate::filter::Envelope {
                headers: Default::default(),
                ce: event
                    .as_ref()
                    .map(|e| e.as_map().clone())
                    .unwrap_or_default(),
            },
        };
        match filter.evaluate(&input) {
            Ok(true) => {}
            Ok(false) => {
                eprintln!(
                    "the filter of topic `{}` ({}) is false for this payload and these parameters: a publish would apply nothing (no headers nor CloudEvent attributes here)",
                    args.topic,
                    filter.source()
                );
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => {
                eprintln!(
                    "the filter of topic `{}` ({}) cannot decide on this payload: {e} (no headers nor CloudEvent attributes here)",
                    args.topic,
                    filter.source()
                );
                return Ok(ExitCode::from(FINDINGS));
            }
        }
    }
    let req = Request {
        topic: &args.topic,
        body: &payload,
        params: args.params,
        dry_run: true,
        trace_id: None,
        cloudevent: event.as_ref(),
        scheduled_time: args.scheduled_time.as_deref(),
    };
    let rendered = match publish::render_topic(
        &snapshot,
        &policy,
        &args.public_url,
        &req,
        &publish::new_request_uid(),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(FINDINGS));
        }
    };
    let mut out = String::new();
    for m in &rendered.manifests {
        for doc in &m.objects {
            out.push_str(&format!("---\n# Source: {}\n", m.path));
            out.push_str(&serde_saphyr::to_string(doc).context("while printing YAML")?);
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `gitfaas publish`.
pub async fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let body = read_data(&args.data)?;
    let timeout = args.wait.unwrap_or_default() + std::time::Duration::from_secs(60);
    let client = ApiClient::new(&args.client, Some(timeout))?;
    let mut url = client.endpoint(&["publish", &args.topic]);
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in &args.params {
            q.append_pair(k, v);
        }
        if let Some(w) = args.wait {
            q.append_pair("wait", &format!("{}s", w.as_secs()));
        }
        if args.dry_run {
            q.append_pair("dryRun", "true");
        }
    }
    let mut req = client
        .request(reqwest::Method::POST, url.clone())
        .header("content-type", "application/octet-stream")
        .body(body);
    if let Some(k) = &args.idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = client.send(req, &url).await?;
    let status = resp.status();
    let text = client::read_text(resp, &url).await?;
    if status.is_success() {
        client::print_body(&text);
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(client::refused(status, &text, true))
    }
}
