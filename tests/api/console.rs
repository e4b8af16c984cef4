//! The web console (`/ui/`) in a real browser: tests/console/console.mjs
//! drives Debian's chromium through Playwright's core against a gitfaas
//! serving a repository on the real control plane, with both kinds of
//! token (`--auth kubernetes,tokens`) and `--allowed-hosts` on; it asserts on what the pages show, on the
//! browser's console (no errors, no CSP violation) and runs axe-core at
//! two viewports. This test then checks what the clicks did, through the
//! API and the cluster: the published run succeeded on the real node, the
//! cancelled run's Job is gone, the dry runs and the refused publish
//! applied nothing, and each error the console showed is the API's.
//!
//! `GITFAAS_WRITE_SCREENSHOTS=1` writes the screenshots the README shows
//! into docs/ (otherwise into a temporary directory).

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::Value;
use sha2::Digest;

use futures::future::LocalBoxFuture;

use crate::common::{config, real_node, EXAMPLES_IMAGE, JOB};
use crate::helpers::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// A pipeline's next step, as small as a step gets: one ConfigMap.
const CHILD: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: child-{{RANDOM}}
data:
  payload: "{{PAYLOAD}}"
"#;

/// A Job of the examples image on the real node running `script`.
fn job(name: &str, script: &str) -> String {
    let script: String = script
        .trim()
        .lines()
        .map(|l| format!("              {l}\n"))
        .collect();
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}-{{{{RANDOM}}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: {EXAMPLES_IMAGE}
          imagePullPolicy: IfNotPresent
          command: ["/bin/sh", "-c"]
          args:
            - |
{script}          env:
            - name: PAYLOAD
              value: "{{{{PAYLOAD}}}}"
            - name: FUNCTION_UID
              value: "{{{{FUNCTION_UID}}}}"
            - name: GITFAAS_URL
              value: "{{{{GITFAAS_URL}}}}"
"#
    )
}

/// The test's npm packages (tests/console/package-lock.json), installed
/// once per lock into the user's cache, outside the repository.
fn test_modules() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    let lock =
        std::fs::read(here.join("package-lock.json")).expect("tests/console/package-lock.json");
    let digest: String = sha2::Sha256::digest(&lock)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME")
        .join("gitfaas");
    let dir = cache.join(format!("console-test-{digest}"));
    let modules = dir.join("node_modules");
    if modules.join("playwright-core/package.json").exists()
        && modules.join("axe-core/axe.min.js").exists()
    {
        return modules;
    }
    // Installed beside, then moved in place: a run stopped halfway leaves
    // no half-installed directory that looks whole.
    std::fs::create_dir_all(&cache).expect("the cache directory");
    let staging = tempfile::tempdir_in(&cache).expect("a staging directory");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(here.join(file), staging.path().join(file)).expect("copy the package files");
    }
    let output = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(staging.path())
        .output()
        .expect("npm (scripts/ensure-deps.sh npm installs it)");
    assert!(
        output.status.success(),
        "npm ci of tests/console: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(staging.keep(), &dir).expect("move the packages in place");
    modules
}

/// Runs one phase of the browser script, doing what it asks of the test
/// (a push, a publish by another client: `answer` gets what it asked and
/// its argument, and gives the text it is answered); what it saw.
async fn browse<'a>(
    address: &str,
    token: &str,
    out: &Path,
    phase: &str,
    env: &[(&str, &str)],
    mut answer: impl FnMut(&str, String) -> LocalBoxFuture<'a, String>,
) -> Value {
    let modules = test_modules();
    let asks = tempfile::tempdir().expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/console.mjs");
    let mut child = std::process::Command::new("node")
        .arg(script)
        .env("CONSOLE_PHASE", phase)
        .env("CONSOLE_URL", address)
        .env("CONSOLE_TOKEN", token)
        .env("CONSOLE_NODE_MODULES", modules)
        .env("CONSOLE_OUT", out)
        .env("CONSOLE_ASKS", asks.path())
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("node runs (scripts/ensure-deps.sh npm installs it)");
    // The script's line of JSON is small: read when it has exited.
    let status = loop {
        if let Some(status) = child.try_wait().expect("the browser script") {
            break status;
        }
        for entry in std::fs::read_dir(asks.path()).expect("the questions' directory") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "ask") {
                let what = path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                let argument = std::fs::read_to_string(&path).expect("the question");
                std::fs::remove_file(&path).expect("remove the question");
                let reply = answer(&what, argument).await;
                std::fs::write(asks.path().join(format!("{what}.done")), reply).expect("answer");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut stdout)
        .expect("the script's output");
    assert!(
        status.success(),
        "the browser test ({phase}) failed: {stdout}"
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Publishes `child` as the next step of run `parent` (`Gitfaas-Parent`:
/// its function's uid, which only its own Job holds); the child's uid.
async fn publish_child(app: &TestApp, token: &str, parent: String) -> String {
    let view = read(app, token, &format!("/requests/{parent}")).await;
    let job = app
        .job(view["objects"][0]["name"].as_str().expect("a Job"))
        .await;
    let function = env(&job, "FUNCTION_UID").expect("the Job's FUNCTION_UID");
    let child = app
        .http
        .post(format!("{}/publish/child", app.address))
        .bearer_auth(token)
        .header("Gitfaas-Parent", function)
        .body("next")
        .send()
        .await
        .expect("request");
    let child = Answer::read(child).await;
    child.assert_status(202);
    child.request_uid()
}

/// `GET path` with the token.
async fn read(app: &TestApp, token: &str, path: &str) -> Answer {
    let resp = app
        .http
        .get(format!("{}{path}", app.address))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    Answer::read(resp).await
}

fn text<'a>(seen: &'a Value, key: &str) -> &'a str {
    seen[key]
        .as_str()
        .unwrap_or_else(|| panic!("the browser test saw no {key}: {seen}"))
}

#[tokio::test]
async fn the_console_in_a_real_browser_publishes_follows_cancels_and_shows_the_apis_errors() {
    let kube = kube::Client::try_default().await.expect("kube client");
    let Some(node) = real_node(&kube).await else {
        return;
    };
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: scripts/ensure-deps.sh chromium installs Debian's chromium (make test does)"
    );
    let secrets = tempfile::tempdir().expect("temp dir");
    let token = format!("console-{}", std::process::id());
    let tokens = secrets.path().join("tokens");
    std::fs::write(&tokens, format!("{token}\n")).expect("the token file");
    let hello = job(
        "hello",
        r#"
echo "hello from the console"
echo '<img src=x onerror="document.title=1">markup stays text'
sleep 3
echo "payload: $(printf '%s' "$PAYLOAD" | base64 -d)"
wget -q -O /dev/null --header 'Content-Type: text/plain' --post-data "done" "$GITFAAS_URL/response/$FUNCTION_UID"
"#,
    );
    let slow = job("slow", "echo started\nsleep 600");
    // The Job controller's selector label on its pods: the policy refuses it.
    let refused = JOB.replace(
        "  template:\n    spec:\n",
        "  template:\n    metadata:\n      labels:\n        batch.kubernetes.io/controller-uid: \"0b3e9d2c-8f61-4e0a-9a55-1c2b3d4e5f60\"\n    spec:\n",
    );
    // A negative parallelism: the API server refuses it (422) when it is
    // applied, so a publish of it is a dead letter.
    let dead = JOB.replace("  backoffLimit: 0", "  backoffLimit: 0\n  parallelism: -1");
    let files = [
        (
            "config.json",
            config(&[
                ("hello", &["hello.yaml"]),
                ("slow", &["slow.yaml"]),
                ("refused", &["refused.yaml"]),
                ("dead", &["dead.yaml"]),
                ("child", &["child.yaml"]),
            ]),
        ),
        ("hello.yaml", hello),
        ("slow.yaml", slow),
        ("refused.yaml", refused),
        ("dead.yaml", dead),
        ("child.yaml", CHILD.to_string()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let token_arg = tokens.display().to_string();
    // Both kinds of token: the file's, and a Kubernetes service account's
    // (`console-viewer`, allowed to read runs only) reviewed in gitfaas'
    // own namespace, `home`.
    let home = namespace(&kube).await;
    crate::identity::service_account(&kube, &home, "console-viewer").await;
    crate::identity::grant(
        &kube,
        &home,
        "console-viewer",
        "console-viewer",
        &[("get", "runs", None), ("list", "runs", None)],
    )
    .await;
    let viewer = crate::identity::token(&kube, &home, "console-viewer", &["gitfaas"]).await;
    let kubeconfig = crate::identity::kubeconfig_in(&home, secrets.path(), None)
        .display()
        .to_string();
    let app = spawn_app_on_real_node(
        &files,
        &[
            "--auth",
            "kubernetes,tokens",
            "--kubeconfig",
            &kubeconfig,
            "--api-token-file",
            &token_arg,
            "--allowed-hosts",
            &node.ip,
            "--max-payload-bytes",
            "4096",
        ],
        &node,
    )
    .await;
    let shots = tempfile::tempdir().expect("temp dir");
    let out = match std::env::var_os("GITFAAS_WRITE_SCREENSHOTS") {
        Some(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"),
        None => shots.path().to_path_buf(),
    };
    std::fs::create_dir_all(&out).expect("the screenshots' directory");

    // A dead letter, published by another client, for the console to retry.
    let dead = app
        .http
        .post(format!("{}/publish/dead", app.address))
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .expect("request");
    let dead = Answer::read(dead).await;
    dead.assert_error(422, "object_rejected");
    let dead = dead.request_uid();

    let (app_ref, token_ref) = (&app, token.as_str());
    let seen = browse(
        &app.address,
        &token,
        &out,
        "main",
        &[("CONSOLE_DEAD_LETTER", &dead)],
        |what, parent| match what {
            // A pipeline's next step: a run published by a step of the
            // run the browser published, naming it as its parent.
            "child" => Box::pin(publish_child(app_ref, token_ref, parent)),
            other => panic!("main asked for {other}"),
        },
    )
    .await;
    eprintln!("the browser saw: {seen}");

    // The published run succeeded, on the real node, and the console showed
    // its log.
    let succeeded = text(&seen, "succeeded");
    let view = read(&app, &token, &format!("/requests/{succeeded}")).await;
    view.assert_status(200);
    assert_eq!(view["status"], "Succeeded", "{view}");
    assert_eq!(view["functions"][0]["response"], "done", "{view}");
    let job_name = view["objects"][0]["name"]
        .as_str()
        .expect("a Job")
        .to_string();
    let pods: Api<Pod> = Api::namespaced(app.kube.clone(), &app.namespace);
    let pod = pods
        .list(&ListParams::default().labels(&format!("job-name={job_name}")))
        .await
        .expect("pods")
        .items
        .into_iter()
        .next()
        .expect("the Job's pod");
    assert_eq!(
        pod.spec.and_then(|s| s.node_name),
        Some(node.name.clone()),
        "it ran on the real node"
    );
    // The topics page read GET /topics, and a topic's page showed its
    // manifest as the repository has it.
    assert_eq!(seen["topicsApi"], true, "{seen}");
    let hello_yaml = files
        .iter()
        .find(|(p, _)| *p == "hello.yaml")
        .expect("hello.yaml")
        .1;
    assert_eq!(
        text(&seen, "manifest").trim_end(),
        hello_yaml.trim_end(),
        "{seen}"
    );
    let log = text(&seen, "log");
    assert!(log.contains(": hello from the console"), "{log}");
    // Markup a function prints is shown as its text, never made an element.
    assert!(
        log.contains(r#": <img src=x onerror="document.title=1">markup stays text"#),
        "{log}"
    );
    assert!(log.contains(": payload: from the browser"), "{log}");

    // The cancelled run: recorded so, its Job gone.
    let cancelled = text(&seen, "cancelled");
    let view = read(&app, &token, &format!("/requests/{cancelled}")).await;
    assert_eq!(view["status"], "Cancelled", "{view}");
    let slow_job = view["objects"][0]["name"]
        .as_str()
        .expect("a Job")
        .to_string();
    app.wait_until_job_gone(&slow_job, Duration::from_secs(60))
        .await;

    // The child the console showed in the pipeline tree.
    let child = text(&seen, "child");
    let view = read(&app, &token, &format!("/requests/{child}")).await;
    assert_eq!(view["parent"], succeeded, "{view}");

    // The retry the console confirmed: a new run of the dead letter.
    let retried = text(&seen, "retried");
    let view = read(&app, &token, &format!("/requests/{retried}")).await;
    assert_eq!(view["retryOf"], dead.as_str(), "{view}");
    assert_eq!(view["status"], "Failed", "{view}");

    // Dry runs and the refusals applied and recorded nothing: the five runs
    // above, the dry-run's Job name never created, and only the published
    // Job left.
    let runs = read(&app, &token, "/requests").await;
    let uids: Vec<&str> = runs["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["requestUid"].as_str())
        .collect();
    assert_eq!(
        uids,
        [retried, cancelled, child, succeeded, dead.as_str()],
        "{runs}"
    );
    let dry = text(&seen, "dryRunJob");
    assert!(
        app.jobs().get_opt(dry).await.expect("get").is_none(),
        "the dry run applied {dry}"
    );
    let jobs: Vec<String> = app
        .jobs()
        .list(&ListParams::default())
        .await
        .expect("jobs")
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    assert_eq!(jobs, [job_name], "only the published Job");

    // Each error the console showed is the API's own message and code.
    let policy = app
        .http
        .post(format!("{}/publish/refused?dryRun=true", app.address))
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .expect("request");
    let policy = Answer::read(policy).await;
    policy.assert_error(403, "policy_violation");
    // (The object's name is the topic's {{RANDOM}}: one per dry run.)
    let (object, why) = policy
        .message()
        .split_once(": spec.")
        .expect("the policy's words");
    let shown = text(&seen, "policy");
    assert!(
        shown.contains(object.trim_end_matches(|c: char| c.is_ascii_alphanumeric()))
            && shown.contains(why),
        "the console showed {shown:?}, the API says {policy}"
    );
    let wrong = read(&app, "not-the-token", "/requests?limit=1").await;
    wrong.assert_error(401, "unauthorized");
    assert!(
        text(&seen, "wrongToken").contains(wrong.message()),
        "{seen}"
    );
    let missing = read(&app, &token, "/requests/r-0000000000000000000000000000").await;
    missing.assert_error(404, "not_found");
    assert!(
        text(&seen, "notFound").contains(missing.message()),
        "{seen}"
    );
    assert!(
        text(&seen, "tooLarge").contains("payload_too_large"),
        "{seen}"
    );
    assert!(seen["axeChecks"].as_u64().unwrap_or(0) >= 10, "{seen}");

    // Pushes while the console is open: a topic removed under its form
    // (404 `unknown_topic`, nothing applied), then a bad commit, which the
    // console's refresh shows rejected with its problems while the previous
    // commit serves on.
    let broken = JOB.replace("name: collect-{{RANDOM}}", "name: collect-{{#if x}}");
    let without_slow = config(&[("hello", &["hello.yaml"]), ("refused", &["refused.yaml"])]);
    let mut removed = String::new();
    let mut bad = String::new();
    let seen = browse(
        &app.address,
        &token,
        &out,
        "pushes",
        &[("CONSOLE_K8S_TOKEN", &viewer)],
        |what, _| {
            Box::pin(std::future::ready(match what {
                "remove-slow" => {
                    removed = app
                        .repo
                        .commit(&[("config.json", &without_slow)], "slow removed");
                    removed.clone()
                }
                "bad-push" => {
                    let with_broken = config(&[
                        ("hello", &["hello.yaml"]),
                        ("refused", &["refused.yaml"]),
                        ("broken", &["broken.yaml"]),
                    ]);
                    bad = app.repo.commit(
                        &[("config.json", &with_broken), ("broken.yaml", &broken)],
                        "a broken template",
                    );
                    bad.clone()
                }
                other => panic!("the browser asked for {other}"),
            }))
        },
    )
    .await;
    // The service account's token: runs read, a publish refused naming the
    // permission, as the API words it.
    let denied = app
        .http
        .post(format!("{}/publish/hello?dryRun=true", app.address))
        .bearer_auth(&viewer)
        .body("x")
        .send()
        .await
        .expect("request");
    let denied = Answer::read(denied).await;
    denied.assert_error(403, "access_denied");
    assert!(
        text(&seen, "accessDenied").contains(denied.message()),
        "{seen}"
    );
    let gone = app
        .http
        .post(format!("{}/publish/slow?dryRun=true", app.address))
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .expect("request");
    let gone = Answer::read(gone).await;
    gone.assert_error(404, "unknown_topic");
    assert!(text(&seen, "removed").contains(gone.message()), "{seen}");
    assert!(text(&seen, "problems").contains("broken.yaml:"), "{seen}");
    assert!(
        text(&seen, "refresh").contains("repository_rejected"),
        "{seen}"
    );
    let status = read(&app, &token, "/status").await;
    assert_eq!(
        status["commit"],
        removed.as_str(),
        "the last good commit serves: {status}"
    );
    assert_eq!(
        status["sync"]["lastError"]["commit"],
        bad.as_str(),
        "{status}"
    );
    let runs = read(&app, &token, "/requests").await;
    assert_eq!(
        runs["runs"].as_array().map(Vec::len),
        Some(5),
        "nothing more was published: {runs}"
    );
    for shot in ["console-runs.png", "console-run.png", "console-phone.png"] {
        let size = std::fs::metadata(out.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
    app.cleanup().await;
}

/// The history stays usable at the size the issue names: with 100,000
/// runs in the store (filled through the store's own API, as `make
/// bench`'s case 6 does), the console's runs page, its next pages and a
/// topic's filter each show their 50 runs quickly, since each is one cursor
/// page of `GET /requests`. Also the open API (`--auth none`): the prompt's
/// "Continue without a token".
#[tokio::test]
async fn the_runs_page_stays_fast_with_100000_runs_in_the_store() {
    use gitfaas::store::{Clock, Durability, RunState, Store};
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: scripts/ensure-deps.sh chromium"
    );
    let runs: u64 = std::env::var("GITFAAS_CONSOLE_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let fixture = Fixture::new(&[("config.json", r#"{"topics": []}"#)]).await;
    let started = std::time::Instant::now();
    {
        let store = std::sync::Arc::new(
            Store::open_embedded(
                fixture.data.path(),
                Clock::system(),
                Duration::from_secs(2 * 86400),
            )
            .await
            .expect("the store"),
        );
        let mut tasks = tokio::task::JoinSet::new();
        let workers = 8;
        for w in 0..workers {
            let store = std::sync::Arc::clone(&store);
            tasks.spawn(async move {
                let mut i = w;
                while i < runs {
                    // One in a hundred of topic `history`, the others over
                    // ten topics, in every state.
                    let topic = match i % 100 {
                        0 => "history".to_string(),
                        n => format!("t{}", n % 10),
                    };
                    let uid = format!("r-{}", uuid::Uuid::new_v4());
                    let uid = gitfaas::uid::RequestUid::parse(&uid).expect("a uid");
                    let mut run = store.new_run(&uid, &topic, "c0ffee");
                    run.state = RunState::ALL[(i % 5) as usize];
                    store
                        .save_run(&run, Durability::Soon)
                        .await
                        .expect("a run stored");
                    i += workers;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a filler");
        }
        store.flush().await.expect("flushed");
    }
    eprintln!(
        "{runs} runs stored in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let (dir, data) = (fixture.dir_arg(), fixture.data_arg());
    let server = spawn_process(&[
        "--dir",
        &dir,
        "--data-dir",
        &data,
        "--namespace",
        &fixture.ns,
        "--auth",
        "none",
    ])
    .await;
    let shots = tempfile::tempdir().expect("temp dir");
    let seen = browse(
        &server.address,
        "",
        shots.path(),
        "history",
        &[],
        |what, _| panic!("history asked for {what}"),
    )
    .await;
    eprintln!("the browser saw: {seen}");
    let timings = seen["timings"].as_object().expect("timings");
    for (what, ms) in timings {
        let ms = ms.as_f64().expect("milliseconds");
        assert!(ms < 3000.0, "{what} took {ms} ms with {runs} runs stored");
    }
    drop(server);
    fixture.cleanup().await;
}
