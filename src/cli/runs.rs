//! `gitfaas runs`, `logs`, `cancel` and `tree`: the history of runs and
//! what can be done to one, through the API (`/requests…`). Tables for
//! people; `-o json` prints the server's JSON as it is, for scripts.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::Value;

use super::client::{self, ApiClient, ClientError};
use crate::settings::{CancelArgs, LogsArgs, Output, RunsArgs, TreeArgs};

/// `runs --all` stops after this many runs (its `next` then says where to
/// go on): a history is bounded by the expiration time, not by this CLI's
/// memory.
pub const ALL_RUNS_BOUND: usize = 10_000;
/// And after this many pages: a page may hold no run and still have a
/// `next` (the server stops looking after 5,000 entries).
const ALL_PAGES_BOUND: usize = 1_000;
/// The server's largest page.
const LARGEST_PAGE: u32 = 500;
/// A JSON call (not a log stream) gives up after this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One run as the history (and a run's view) shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    request_uid: String,
    topic: String,
    status: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    parent: Option<String>,
}

/// One run of `GET /requests/{uid}/tree`, with the runs it published.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    request_uid: String,
    topic: String,
    status: String,
    #[serde(default)]
    children: Vec<Node>,
}

fn shape(url: &Url, why: impl std::fmt::Display) -> ClientError {
    ClientError::Shape {
        url: url.clone(),
        why: why.to_string(),
    }
}

/// `gitfaas runs`.
pub async fn runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.client, Some(CALL_TIMEOUT))?;
    let json = args.output == Output::Json;
    let page_size = match (args.limit, args.all) {
        (Some(n), _) => Some(n),
        // Fewer round trips when every page is wanted.
        (None, true) => Some(LARGEST_PAGE),
        (None, false) => None,
    };
    let mut runs: Vec<Value> = Vec::new();
    let mut cursor = args.cursor.clone();
    let mut first: Option<Value> = None;
    for page_number in 0.. {
        let mut url = client.endpoint(&["requests"]);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in [
                ("topic", &args.topic),
                ("status", &args.status),
                ("since", &args.since),
                ("cursor", &cursor),
            ] {
                if let Some(v) = v {
                    q.append_pair(k, v);
                }
            }
            if let Some(n) = page_size {
                // The last page of --all asks for no more than the bound
                // leaves, so its `next` is exactly where the listing stopped.
                let left = ALL_RUNS_BOUND.saturating_sub(runs.len());
                let n = if args.all {
                    n.min(u32::try_from(left).unwrap_or(u32::MAX))
                } else {
                    n
                };
                q.append_pair("limit", &n.to_string());
            }
        }
        let page = match client.json(Method::GET, &url, json).await? {
            Ok(p) => p,
            Err(code) => return Ok(code),
        };
        let Some(these) = page.get("runs").and_then(Value::as_array) else {
            return Err(shape(&url, "no `runs` list").into());
        };
        runs.extend(these.iter().cloned());
        cursor = page.get("next").and_then(Value::as_str).map(String::from);
        if !args.all {
            first = Some(page);
            break;
        }
        if cursor.is_none() {
            break;
        }
        if runs.len() >= ALL_RUNS_BOUND || page_number + 1 >= ALL_PAGES_BOUND {
            eprintln!(
                "stopped after {} runs in {} pages: go on with --cursor {}",
                runs.len(),
                page_number + 1,
                cursor.as_deref().unwrap_or_default()
            );
            break;
        }
    }
    if json {
        // One page: the server's answer as it is; all pages: the same shape,
        // with every run and the `next` where the listing stopped.
        let out = first
            .unwrap_or_else(|| serde_json::json!({"error": false, "runs": runs, "next": cursor}));
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let parsed: Vec<Run> = runs
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()
        .map_err(|e| shape(&client.endpoint(&["requests"]), e))?;
    print!("{}", runs_table(&parsed));
    if let (false, Some(next)) = (args.all, cursor) {
        eprintln!("more: --cursor {next} (or --all)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `gitfaas cancel`.
pub async fn cancel(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.client, Some(CALL_TIMEOUT))?;
    let url = client.endpoint(&["requests", &args.uid]);
    let json = args.output == Output::Json;
    let view = match client.json(Method::DELETE, &url, json).await? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        let run: Run = serde_json::from_value(view).map_err(|e| shape(&url, e))?;
        print!("{}", runs_table(&[run]));
    }
    Ok(ExitCode::SUCCESS)
}

/// `gitfaas tree`.
pub async fn tree(args: TreeArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.client, Some(CALL_TIMEOUT))?;
    let url = client.endpoint(&["requests", &args.uid, "tree"]);
    let json = args.output == Output::Json;
    let answer = match client.json(Method::GET, &url, json).await? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render_tree(&answer).map_err(|e| shape(&url, e))?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `gitfaas logs`: the body goes to standard output as it arrives, so a
/// follow shows each line when the container prints it.
pub async fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    // No overall timeout: a follow lasts as long as the run's Jobs.
    let client = ApiClient::new(&args.client, None)?;
    let mut url = client.endpoint(&["requests", &args.uid, "logs"]);
    {
        let mut q = url.query_pairs_mut();
        if args.follow {
            q.append_pair("follow", "true");
        }
        if let Some(n) = args.tail {
            q.append_pair("tail", &n.to_string());
        }
        if let Some(c) = &args.container {
            q.append_pair("container", c);
        }
    }
    let mut resp = client
        .send(client.request(Method::GET, url.clone()), &url)
        .await?;
    let status = resp.status();
    if !status.is_success() {
        let text = client::read_text(resp, &url).await?;
        return Ok(client::refused(status, &text, false));
    }
    let run_status = resp
        .headers()
        .get(crate::http::RUN_STATUS_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_string();
    let mut stdout = std::io::stdout().lock();
    let mut empty = true;
    loop {
        let chunk = resp.chunk().await.map_err(|source| ClientError::Read {
            url: url.clone(),
            source,
        })?;
        let Some(chunk) = chunk else { break };
        empty &= chunk.is_empty();
        match stdout.write_all(&chunk).and_then(|()| stdout.flush()) {
            Ok(()) => {}
            // `gitfaas logs … | head`: the reader has what it wanted.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(e.into()),
        }
    }
    if empty {
        // Nothing to show is not an error: say where the run is instead.
        eprintln!("no logs: the run is {run_status}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Columns padded to their widest cell, two spaces apart; the last one
/// unpadded, so no line ends in spaces.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, &w)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push('\n');
    }
    out
}

fn runs_table(runs: &[Run]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.request_uid.clone(),
                r.topic.clone(),
                r.status.clone(),
                r.created_at.clone().unwrap_or_else(|| "-".into()),
                r.parent.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&["UID", "TOPIC", "STATUS", "CREATED", "PARENT"], &rows)
}

/// The tree answer as indented lines: the root, then each child under its
/// parent behind `├─ ` or `└─ ` (the last one), deeper ones behind `│  `.
fn render_tree(answer: &Value) -> Result<String, serde_json::Error> {
    let root = answer.get("root").cloned().unwrap_or(Value::Null);
    let root: Node = serde_json::from_value(root)?;
    let mut out = format!("{}  {}  {}\n", root.request_uid, root.topic, root.status);
    render_children(&root.children, "", &mut out);
    Ok(out)
}

fn render_children(children: &[Node], indent: &str, out: &mut String) {
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let branch = if last { "└─ " } else { "├─ " };
        out.push_str(&format!(
            "{indent}{branch}{}  {}  {}\n",
            child.request_uid, child.topic, child.status
        ));
        let deeper = format!("{indent}{}", if last { "   " } else { "│  " });
        render_children(&child.children, &deeper, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_rendered_indented_under_its_root() {
        let fixture = serde_json::json!({
            "error": false,
            "root": {
                "requestUid": "r-1", "topic": "collect", "status": "Succeeded",
                "createdAt": "2025-01-01T00:00:00Z",
                "children": [
                    {"requestUid": "r-2", "topic": "uncompress", "status": "Succeeded",
                     "createdAt": "2025-01-01T00:00:01Z",
                     "children": [
                        {"requestUid": "r-4", "topic": "convert", "status": "Running",
                         "createdAt": "2025-01-01T00:00:02Z", "children": []}
                     ]},
                    {"requestUid": "r-3", "topic": "uncompress", "status": "Failed",
                     "createdAt": "2025-01-01T00:00:01Z",
                     "children": [
                        {"requestUid": "r-5", "topic": "convert", "status": "Cancelled",
                         "createdAt": "2025-01-01T00:00:03Z", "children": []}
                     ]}
                ]
            }
        });
        assert_eq!(
            render_tree(&fixture).expect("a tree"),
            "r-1  collect  Succeeded\n\
             ├─ r-2  uncompress  Succeeded\n\
             │  └─ r-4  convert  Running\n\
             └─ r-3  uncompress  Failed\n\
             \x20  └─ r-5  convert  Cancelled\n"
        );
        let alone = serde_json::json!({"error": false, "root": {
            "requestUid": "r-9", "topic": "t", "status": "Pending", "createdAt": "x"}});
        assert_eq!(render_tree(&alone).expect("a leaf"), "r-9  t  Pending\n");
        assert!(render_tree(&serde_json::json!({"error": false})).is_err());
    }

    #[test]
    fn runs_are_aligned_in_columns() {
        let runs = [
            Run {
                request_uid: "r-long-uid".into(),
                topic: "t".into(),
                status: "Succeeded".into(),
                created_at: Some("2025-01-01T00:00:00Z".into()),
                parent: None,
            },
            Run {
                request_uid: "r-1".into(),
                topic: "collect".into(),
                status: "Failed".into(),
                created_at: Some("2025-01-01T00:00:01Z".into()),
                parent: Some("r-long-uid".into()),
            },
        ];
        assert_eq!(
            runs_table(&runs),
            "UID         TOPIC    STATUS     CREATED               PARENT\n\
             r-long-uid  t        Succeeded  2025-01-01T00:00:00Z  -\n\
             r-1         collect  Failed     2025-01-01T00:00:01Z  r-long-uid\n"
        );
    }
}
