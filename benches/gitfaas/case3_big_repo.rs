//! Case 3, a 1,000-topic × 10-manifest repository: cold, unchanged and
//! incremental sync (each in a fresh child process), RSS, `gitfaas validate`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use crate::common::{free_port, GitDaemon};
use crate::support::{
    bare_repo, cpu_seconds, create_namespace, delete_namespace, env_num, mb, ms, pct, publish,
    sorted, status_kb, wait_for_quiet_machine, Bench, Res, Server,
};

fn big_repo_files(topics: usize, per_topic: usize) -> Vec<(String, String)> {
    let mut files = Vec::with_capacity(topics * per_topic + 1);
    let mut config = Vec::with_capacity(topics);
    for t in 0..topics {
        let mut configs = Vec::with_capacity(per_topic);
        for j in 0..per_topic {
            let path = format!("t{t:04}/step-{j}.yaml");
            files.push((
                path.clone(),
                format!(
                    r#"apiVersion: batch/v1
kind: Job
metadata:
  name: t{t:04}-step{j}-{{{{RANDOM}}}}
  labels:
    step: "s{j}"
spec:
  backoffLimit: 1
  ttlSecondsAfterFinished: 600
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: registry.example.com/t{t:04}/step{j}:1.0
          args: ["--step", "{j}", "--topic", "{{{{TOPIC}}}}"]
          env:
            - name: PAYLOAD
              value: "{{{{PAYLOAD}}}}"
            - name: FUNCTION_UID
              value: "{{{{FUNCTION_UID}}}}"
            - name: GITFAAS_URL
              value: "{{{{GITFAAS_URL}}}}"
"#
                ),
            ));
            configs.push(path);
        }
        config.push(json!({"name": format!("t{t:04}"), "configs": configs}));
    }
    files.push((
        "config.json".into(),
        json!({ "topics": config }).to_string(),
    ));
    files
}

fn syncer_for(url: &str, cache: &Path) -> Res<gitfaas::source::Syncer> {
    let argv = [
        "gitfaas",
        "serve",
        "--git-url",
        url,
        "--cache-dir",
        &cache.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--auth",
        "none",
    ];
    let gitfaas::settings::Command::Serve(args) =
        gitfaas::settings::Cli::try_parse_from(argv)?.command
    else {
        return Err("`gitfaas serve …` did not parse as serve".into());
    };
    let settings = args.validate(|_| None)?;
    Ok(gitfaas::source::Syncer::new(
        settings.source.clone(),
        settings.config_path.clone(),
    ))
}

/// Sync timings of one source: cold (empty cache), unchanged commits, and
/// commits that change one manifest or config.json alone (ms from the fetch
/// done to the new snapshot); the child's memory after its cold sync.
struct SyncRuns {
    cold: Vec<f64>,
    cold_cpu: Vec<f64>,
    unchanged: Vec<f64>,
    one_manifest: Vec<f64>,
    config_only: Vec<f64>,
    /// The whole sync of a one-manifest commit, fetch included.
    one_manifest_sync: Vec<f64>,
    /// RSS after the cold sync and the peak until then, MB.
    cold_rss: Vec<f64>,
    cold_hwm: Vec<f64>,
}

/// Set (to the URL) in the bench's own child process that measures syncs.
pub(crate) const SYNC_CHILD: &str = "GITFAAS_BENCH_SYNC_URL";

/// The real Syncer, three times, each in a fresh process (as gitfaas syncs
/// at start, and without the heap and threads cases 1 and 2 left in this
/// one, which doubled the CPU time of the same sync): a cold sync into an
/// empty cache, then five unchanged ones. CPU is the child's own.
async fn cold_and_unchanged(b: &Bench, url: &str, repo: &Path, label: &str) -> Res<SyncRuns> {
    let (mut cold, mut cold_cpu, mut unchanged) = (Vec::new(), Vec::new(), Vec::new());
    let (mut one_manifest, mut config_only, mut one_manifest_sync) =
        (Vec::new(), Vec::new(), Vec::new());
    let (mut cold_rss, mut cold_hwm) = (Vec::new(), Vec::new());
    let list = |r: &Value, key: &str| -> Res<Vec<f64>> {
        r[key]
            .as_array()
            .ok_or_else(|| key.to_string())?
            .iter()
            .map(|v| v.as_f64().ok_or_else(|| key.into()))
            .collect()
    };
    for i in 0..3 {
        let cache = b.work.path().join(format!("cache3-{label}-{i}"));
        let out = Command::new(std::env::current_exe()?)
            .arg("--bench")
            .env(SYNC_CHILD, url)
            .env("GITFAAS_BENCH_SYNC_REPO", repo)
            .env("GITFAAS_BENCH_SYNC_CACHE", &cache)
            .env("GITFAAS_BENCH_CLK_TCK", b.clk_tck.to_string())
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(format!("sync child for {url} failed").into());
        }
        let r: Value = serde_json::from_slice(&out.stdout)?;
        cold.push(r["coldMs"].as_f64().ok_or("coldMs")?);
        cold_cpu.push(r["coldCpuMs"].as_f64().ok_or("coldCpuMs")?);
        unchanged.extend(list(&r, "unchangedMs")?);
        one_manifest.extend(list(&r, "oneManifestMs")?);
        config_only.extend(list(&r, "configOnlyMs")?);
        one_manifest_sync.extend(list(&r, "oneManifestSyncMs")?);
        cold_rss.push(r["coldRssMb"].as_f64().ok_or("coldRssMb")?);
        cold_hwm.push(r["coldPeakMb"].as_f64().ok_or("coldPeakMb")?);
        let _ = std::fs::remove_dir_all(&cache);
    }
    let runs = SyncRuns {
        cold: sorted(cold),
        cold_cpu: sorted(cold_cpu),
        unchanged: sorted(unchanged),
        one_manifest: sorted(one_manifest),
        config_only: sorted(config_only),
        one_manifest_sync: sorted(one_manifest_sync),
        cold_rss: sorted(cold_rss),
        cold_hwm: sorted(cold_hwm),
    };
    eprintln!(
        "bench: case 3: {label}: cold syncs {:?} ms, CPU {:?} ms, RSS after {:?} MB (peak {:?} MB), unchanged {:?} ms, one manifest changed {:?} ms (whole sync {:?} ms), config.json only {:?} ms",
        runs.cold,
        runs.cold_cpu,
        runs.cold_rss,
        runs.cold_hwm,
        runs.unchanged,
        runs.one_manifest,
        runs.one_manifest_sync,
        runs.config_only
    );
    Ok(runs)
}

/// Commits `content` at `path` on top of refs/heads/main of `repo`, the
/// rest of the tree as it is (a push that changes one file).
fn commit_one(repo: &git2::Repository, path: &str, content: &[u8], message: &str) -> Res<()> {
    fn replace(
        repo: &git2::Repository,
        tree: &git2::Tree,
        path: &str,
        blob: git2::Oid,
    ) -> Res<git2::Oid> {
        let mut builder = repo.treebuilder(Some(tree))?;
        match path.split_once('/') {
            None => builder.insert(path, blob, 0o100644)?,
            Some((dir, rest)) => {
                let sub = tree
                    .get_name(dir)
                    .ok_or_else(|| format!("no folder {dir}"))?
                    .to_object(repo)?
                    .peel_to_tree()?;
                let oid = replace(repo, &sub, rest, blob)?;
                builder.insert(dir, oid, 0o040000)?
            }
        };
        Ok(builder.write()?)
    }
    let parent = repo.find_commit(repo.refname_to_id("refs/heads/main")?)?;
    let blob = repo.blob(content)?;
    let tree = repo.find_tree(replace(repo, &parent.tree()?, path, blob)?)?;
    let sig = git2::Signature::now("bench", "bench@example.com")?;
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        message,
        &tree,
        &[&parent],
    )?;
    Ok(())
}

/// The text of `path` at refs/heads/main of `repo`.
fn read_head(repo: &git2::Repository, path: &str) -> Res<Vec<u8>> {
    let tree = repo
        .find_commit(repo.refname_to_id("refs/heads/main")?)?
        .tree()?;
    let blob = tree
        .get_path(Path::new(path))?
        .to_object(repo)?
        .peel_to_blob()?;
    Ok(blob.content().to_vec())
}

/// Syncs the new commit: (ms from the fetch done to the new snapshot, ms of
/// the whole sync).
async fn timed_sync(syncer: &gitfaas::source::Syncer) -> Res<(f64, f64)> {
    let t = Instant::now();
    let out = syncer.sync().await?;
    let whole = ms(t.elapsed());
    if !out.changed {
        return Err("a new commit synced as unchanged".into());
    }
    let built = syncer.last_build_time().ok_or("no build time")?;
    Ok((ms(built), whole))
}

/// In the child: one cold sync and five unchanged ones, as JSON.
pub(crate) async fn child_sync(url: &str) -> Res<Value> {
    let cache = PathBuf::from(std::env::var("GITFAAS_BENCH_SYNC_CACHE")?);
    let clk_tck: f64 = std::env::var("GITFAAS_BENCH_CLK_TCK")?.parse()?;
    let me = std::process::id();
    let syncer = syncer_for(url, &cache)?;
    let (t, c) = (Instant::now(), cpu_seconds(me, clk_tck));
    let out = syncer.sync().await?;
    let cold = ms(t.elapsed());
    let cold_cpu = (cpu_seconds(me, clk_tck) - c) * 1000.0;
    if !out.changed {
        return Err("cold sync reported no change".into());
    }
    let cold_rss = mb(status_kb(me, "VmRSS"));
    let cold_peak = mb(status_kb(me, "VmHWM"));
    let mut unchanged = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = syncer.sync().await?;
        unchanged.push(ms(t.elapsed()));
        if out.changed {
            return Err("unchanged sync reported a change".into());
        }
    }

    // Pushes: one manifest changed (its image tag), then config.json alone
    // (one topic's maxConcurrent), five of each; then main is put back.
    let repo = git2::Repository::open_bare(std::env::var("GITFAAS_BENCH_SYNC_REPO")?)?;
    let original = repo.refname_to_id("refs/heads/main")?;
    let manifest = "t0500/step-3.yaml";
    let text = String::from_utf8(read_head(&repo, manifest)?)?;
    let config: Value = serde_json::from_slice(&read_head(&repo, "config.json")?)?;
    let (mut one, mut one_sync, mut config_only) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=5 {
        let edited = text.replace("step3:1.0", &format!("step3:1.{round}"));
        commit_one(&repo, manifest, edited.as_bytes(), "one manifest")?;
        let (built, whole) = timed_sync(&syncer).await?;
        one.push(built);
        one_sync.push(whole);
        let mut edited = config.clone();
        edited["topics"][500]["maxConcurrent"] = json!(round);
        commit_one(
            &repo,
            "config.json",
            &serde_json::to_vec(&edited)?,
            "config",
        )?;
        config_only.push(timed_sync(&syncer).await?.0);
    }
    repo.reference("refs/heads/main", original, true, "bench: back")?;
    Ok(json!({
        "coldMs": cold,
        "coldCpuMs": cold_cpu,
        "coldRssMb": cold_rss,
        "coldPeakMb": cold_peak,
        "unchangedMs": unchanged,
        "oneManifestMs": one,
        "oneManifestSyncMs": one_sync,
        "configOnlyMs": config_only,
    }))
}

/// `gitfaas validate` of the repository (read in place), wall time, ms.
fn validate_ms(url: &str) -> Res<f64> {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_gitfaas"))
        .args(["validate", "--git-url", url])
        .stdout(Stdio::null())
        .output()?;
    let took = ms(t.elapsed());
    if !out.status.success() {
        return Err(format!(
            "gitfaas validate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(took)
}

pub(crate) async fn case_big_repo(b: &mut Bench) -> Res<()> {
    let topics = env_num("BENCH_TOPICS", 1000) as usize;
    let per_topic = env_num("BENCH_FILES_PER_TOPIC", 10) as usize;
    eprintln!("bench: case 3: repository of {topics} topics × {per_topic} manifests");
    let repo = b.work.path().join("big.git");
    let t = Instant::now();
    let files = big_repo_files(topics, per_topic);
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    bare_repo(&repo, &files)?;
    drop(files);
    eprintln!(
        "bench: case 3: generated {} files ({:.1} MB) in {:.1} s",
        topics * per_topic + 1,
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // A served repository is packed (as after `git gc`); loose objects would
    // make the fetch measure the filesystem instead.
    let packed = Command::new("git")
        .args(["-C", &repo.display().to_string(), "repack", "-adq"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !packed {
        eprintln!("bench: case 3: `git repack` failed or git is missing: the source repository stays loose");
    }

    // A real git server for the remote case: `git daemon` (git's own
    // pack-objects answers, as on a forge); a local path is read in place.
    // The sync is CPU-bound: measure it, not the cleanup of case 2's
    // thousands of Jobs that the controllers may still be doing.
    wait_for_quiet_machine().await;
    let daemon = GitDaemon::start(&repo, free_port()).await?;
    let local_url = repo.display().to_string();
    let local = cold_and_unchanged(b, &local_url, &repo, "local").await?;
    let remote = cold_and_unchanged(b, &daemon.url, &repo, "git").await?;
    let validate = sorted(
        (0..3)
            .map(|_| validate_ms(&local_url))
            .collect::<Res<Vec<f64>>>()?,
    );
    eprintln!("bench: case 3: gitfaas validate {validate:?} ms");
    // Of which fetch: a bare fetch of the same refspec with git2 alone.
    let me = std::process::id();
    let (mut fetch_ms, mut fetch_cpu) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let dir = b.work.path().join(format!("fetch3-{i}"));
        let (t, c) = (Instant::now(), cpu_seconds(me, b.clk_tck));
        let r = git2::Repository::init_bare(&dir)?;
        r.remote_anonymous(&daemon.url)?.fetch(
            &["+refs/heads/main:refs/remotes/origin/main"],
            None,
            None,
        )?;
        fetch_ms.push(ms(t.elapsed()));
        fetch_cpu.push((cpu_seconds(me, b.clk_tck) - c) * 1000.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
    drop(daemon);
    let (fetch_ms, fetch_cpu) = (sorted(fetch_ms), sorted(fetch_cpu));
    eprintln!("bench: case 3: git protocol fetch alone {fetch_ms:?} ms, CPU {fetch_cpu:?} ms");

    // The binary: start with an empty cache, refresh unchanged, memory.
    let ns = create_namespace(&b.kube, "bigrepo").await?;
    let cache = b.work.path().join("cache3-server");
    let mut server = Server::start(
        b,
        "case3",
        &[
            "--git-url",
            &local_url,
            "--cache-dir",
            &cache.display().to_string(),
            "--namespace",
            &ns,
        ],
    )?;
    let start_to_ready = server.ready(&b.http, Duration::from_secs(120)).await?;
    let rss_start = status_kb(server.pid(), "VmRSS");
    let mut refresh = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let r = b.http.get(format!("{}/refresh", server.url)).send().await?;
        let status = r.status().as_u16();
        let body: Value = r.json().await?;
        refresh.push(ms(t.elapsed()));
        if status != 200 || body["changed"] != json!(false) {
            return Err(format!("refresh: {status} {body}").into());
        }
    }
    let (status, report) = publish(
        &b.http,
        &server.url,
        &format!("t{:04}", topics / 2),
        "?dryRun=true",
    )
    .await?;
    if status != 200 {
        return Err(format!("dry run publish of a big-repo topic: {status} {report}").into());
    }
    let rss_busy = status_kb(server.pid(), "VmRSS");
    // gitfaas gives freed heap back to the OS when idle (every 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let rss = status_kb(server.pid(), "VmRSS");
    let hwm = status_kb(server.pid(), "VmHWM");
    server.stop();
    delete_namespace(&b.kube, &ns).await;
    let refresh = sorted(refresh);
    eprintln!("bench: case 3: binary start→ready {start_to_ready:?}, RSS at ready {:.1} MB, after refreshes and a publish {:.1} MB, 6 s later {:.1} MB (peak {:.1} MB)", mb(rss_start), mb(rss_busy), mb(rss), mb(hwm));

    let c = "3 big repository";
    let shape = format!("{topics} topics × {per_topic} manifests");
    b.row(
        c,
        &format!("cold sync, local repository (read in place + snapshot), {shape}, median of 3"),
        format!(
            "{:.0} ms, CPU {:.0} ms",
            pct(&local.cold, 50.0),
            pct(&local.cold_cpu, 50.0)
        ),
        "< 500 ms",
        Some(pct(&local.cold, 50.0) < 500.0),
    );
    b.row(
        c,
        "cold sync, git:// remote (fetch into an empty cache + snapshot), median of 3",
        format!(
            "{:.0} ms, CPU {:.0} ms (fetch alone {:.0} ms, CPU {:.0} ms)",
            pct(&remote.cold, 50.0),
            pct(&remote.cold_cpu, 50.0),
            pct(&fetch_ms, 50.0),
            pct(&fetch_cpu, 50.0)
        ),
        "< 500 ms",
        Some(pct(&remote.cold, 50.0) < 500.0),
    );
    b.row(
        c,
        "cold sync, local: RSS of the syncing process after / peak, median of 3",
        format!(
            "{:.1} / {:.1} MB",
            pct(&local.cold_rss, 50.0),
            pct(&local.cold_hwm, 50.0)
        ),
        "< 60 MB",
        Some(pct(&local.cold_hwm, 50.0) < 60.0),
    );
    for (source, runs) in [("local", &local), ("git://", &remote)] {
        b.row(
            c,
            &format!("unchanged-commit sync, {source}, median / max of 15"),
            format!(
                "{:.1} / {:.1} ms",
                pct(&runs.unchanged, 50.0),
                pct(&runs.unchanged, 100.0)
            ),
            "< 1 s",
            Some(pct(&runs.unchanged, 100.0) < 1000.0),
        );
    }
    for (source, runs) in [("local", &local), ("git://", &remote)] {
        b.row(
            c,
            &format!("incremental sync, one manifest changed, {source}: fetch done → new snapshot, median / max of 15"),
            format!(
                "{:.1} / {:.1} ms (whole sync {:.1} ms)",
                pct(&runs.one_manifest, 50.0),
                pct(&runs.one_manifest, 100.0),
                pct(&runs.one_manifest_sync, 50.0)
            ),
            "< 50 ms",
            Some(pct(&runs.one_manifest, 50.0) < 50.0),
        );
        b.row(
            c,
            &format!("incremental sync, config.json alone changed, {source}: fetch done → new snapshot, median / max of 15"),
            format!(
                "{:.1} / {:.1} ms",
                pct(&runs.config_only, 50.0),
                pct(&runs.config_only, 100.0)
            ),
            "< 50 ms",
            Some(pct(&runs.config_only, 50.0) < 50.0),
        );
    }
    b.row(
        c,
        "`gitfaas validate` of the repository (local), wall time, median of 3",
        format!("{:.0} ms", pct(&validate, 50.0)),
        "< 1 s",
        Some(pct(&validate, 50.0) < 1000.0),
    );
    b.row(
        c,
        "`GET /refresh`, unchanged, median of 10 (binary)",
        format!("{:.1} ms", pct(&refresh, 50.0)),
        "< 1 s",
        Some(pct(&refresh, 50.0) < 1000.0),
    );
    b.row(
        c,
        "binary start → ready (cluster probe + cold sync)",
        format!("{:.0} ms", ms(start_to_ready)),
        "",
        None,
    );
    b.row(
        c,
        "gitfaas RSS after sync, refreshes and a publish: at once / idle 6 s (peak)",
        format!(
            "{:.1} / {:.1} MB ({:.1} MB)",
            mb(rss_busy),
            mb(rss),
            mb(hwm)
        ),
        "< 100 MB",
        Some(mb(rss) < 100.0),
    );
    Ok(())
}
