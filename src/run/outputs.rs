//! What a finished run leaves behind for when its pods are gone: the end of
//! each container's log, kept in the store (`--log-archive-bytes` of each,
//! and [`run_archive_bytes`] of them all, shared fairly between its
//! containers) so `GET /requests/{uid}/logs` still answers after
//! `ttlSecondsAfterFinished` deleted the Job; and, for a topic with
//! `"result": "stdout"`, the response of each function that posted none,
//! taken from the last line its main container wrote (OpenWhisk's
//! contract).
//!
//! Both are read once the run's Jobs have finished, before the run's end is
//! recorded (so a reader who sees a final state finds them), and before a
//! cancel deletes its Jobs. A Job deleted at the moment it finishes
//! (`ttlSecondsAfterFinished: 0`) may take its pods with it first: then
//! there is nothing to keep. Keeping is best effort: a failure is logged and
//! the run's end recorded all the same.

use serde_json::Value;

use crate::cluster::{Applier, ApplyError, ContainerTail};
use crate::store::{LogTail, RunRecord, Store, StoreError};

/// The least read of a log whose last line becomes a response, whatever
/// `--log-archive-bytes` says: a JSON result of a few KiB is common.
pub const RESULT_BYTES: usize = 64 * 1024;

/// How many containers' worth of `--log-archive-bytes` a run keeps at most.
pub const RUN_ARCHIVE_SHARES: usize = 4;

/// The most a run's kept logs take, whatever `--log-archive-bytes` says:
/// a run's tails are one value in the store, read whole.
pub const MAX_RUN_ARCHIVE_BYTES: usize = 1024 * 1024;

/// The bound of a run's kept logs, all containers together, for
/// `per_container` bytes of each (`--log-archive-bytes`): four containers'
/// worth, at most [`MAX_RUN_ARCHIVE_BYTES`] (and never below one
/// container's). A run of up to four containers keeps each one's tail
/// whole; a run of twelve keeps a third of each instead of twelve whole
/// ones in one record.
pub fn run_archive_bytes(per_container: usize) -> usize {
    per_container
        .saturating_mul(RUN_ARCHIVE_SHARES)
        .min(MAX_RUN_ARCHIVE_BYTES)
        .max(per_container)
}

/// Errors of keeping a run's outputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputsError {
    /// The cluster failed.
    #[error(transparent)]
    Cluster(#[from] ApplyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads the end of the logs of `record`'s pods and keeps what is asked:
/// at most `archive_bytes` of each log (none at 0) and
/// [`run_archive_bytes`] of them all, and, when the run
/// `succeeded` and its topic takes results from stdout, the responses its
/// functions did not post. Idempotent: a second call writes the same logs
/// again, and a response stands once recorded.
pub async fn keep(
    applier: &Applier,
    store: &Store,
    record: &RunRecord,
    archive_bytes: usize,
    succeeded: bool,
) -> Result<(), OutputsError> {
    let results = record.result_from_stdout && succeeded;
    let read = if results {
        archive_bytes.max(RESULT_BYTES)
    } else {
        archive_bytes
    };
    let objects = record.objects();
    if read == 0 || !objects.iter().any(|o| o.is_job()) {
        return Ok(());
    }
    let tails = applier
        .log_tails(&record.request_uid, &objects, read)
        .await?;
    if results {
        record_results(store, record, &tails).await?;
    }
    // No log at all (no pod started, or they went first): nothing to
    // write, and a run without Jobs costs no store write.
    if archive_bytes > 0 && !tails.is_empty() {
        store
            .put_logs(record, archive(tails, archive_bytes))
            .await?;
    }
    Ok(())
}

/// The tails as the store keeps them: the end of each, at most
/// `per_container` bytes, and at most [`run_archive_bytes`] together,
/// shared fairly: the last lines of every container, the short ones whole.
fn archive(tails: Vec<ContainerTail>, per_container: usize) -> Vec<LogTail> {
    let lens: Vec<usize> = tails
        .iter()
        .map(|t| t.text.len().min(per_container))
        .collect();
    let shares = fair_shares(&lens, run_archive_bytes(per_container));
    tails
        .into_iter()
        .zip(shares)
        .map(|(t, share)| archived(t, share))
        .collect()
}

/// How many bytes of each of `lens` to keep so that they sum to at most
/// `budget`: all of each when they fit; else every one gets the same cap,
/// the largest that fits, and one shorter than it is kept whole.
fn fair_shares(lens: &[usize], budget: usize) -> Vec<usize> {
    if lens.iter().sum::<usize>() <= budget {
        return lens.to_vec();
    }
    let mut sorted = lens.to_vec();
    sorted.sort_unstable();
    let (mut left, mut count) = (budget, sorted.len());
    let mut cap = 0;
    for len in sorted {
        let even = left / count;
        if len > even {
            // This one and every longer one: the even share of what is left.
            cap = even;
            break;
        }
        left -= len;
        count -= 1;
    }
    lens.iter().map(|&len| len.min(cap)).collect()
}

/// A tail as the store keeps it, at most `max` bytes of it.
fn archived(t: ContainerTail, max: usize) -> LogTail {
    let (text, cut) = last_bytes(&t.text, max);
    LogTail {
        namespace: t.namespace,
        job: t.job,
        pod: t.pod,
        container: t.container,
        init: t.init,
        succeeded: t.succeeded,
        text: text.to_string(),
        truncated: t.truncated || cut,
    }
}

/// The end of `text` of at most `max` bytes, from a line start when it
/// has to be cut (and from a character start always); whether it was cut.
fn last_bytes(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let rest = &text[start..];
    if text.as_bytes()[start - 1] == b'\n' {
        return (rest, true);
    }
    match rest.find('\n') {
        Some(nl) if nl + 1 < rest.len() => (&rest[nl + 1..], true),
        _ => (rest, true),
    }
}

/// For each function without a response: the last line of its Job's main
/// container (the first that is not an init container) in the last pod
/// that succeeded, as JSON when it parses, as a string otherwise.
async fn record_results(
    store: &Store,
    record: &RunRecord,
    tails: &[ContainerTail],
) -> Result<(), StoreError> {
    let responses = store.responses(record).await?;
    for (function, response) in record.functions.iter().zip(responses) {
        if response.is_some() {
            continue;
        }
        let Some(line) = result_line(function, tails) else {
            continue;
        };
        let body =
            serde_json::from_str::<Value>(line).unwrap_or_else(|_| Value::String(line.to_string()));
        match store
            .put_response(&function.function_uid, body, line.as_bytes())
            .await
        {
            // Posted meanwhile (the function, or another call of this):
            // the first stands.
            Ok(()) | Err(StoreError::AlreadyAnswered(_) | StoreError::UnknownFunction(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The line that becomes `function`'s response, if its Job wrote one.
fn result_line<'a>(
    function: &crate::store::StoredFunction,
    tails: &'a [ContainerTail],
) -> Option<&'a str> {
    let ours = |t: &&ContainerTail| {
        t.succeeded
            && !t.init
            && function.objects.iter().any(|o| {
                o.is_job()
                    && o.name == t.job
                    && o.namespace.as_deref().is_none_or(|ns| ns == t.namespace)
            })
    };
    // Pods come oldest first: the last one that succeeded, its first
    // container.
    let pod = &tails.iter().rev().find(ours)?.pod;
    let main = tails.iter().filter(ours).find(|t| &t.pod == pod)?;
    main.text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::ObjectRef;
    use crate::store::StoredFunction;

    fn tail(job: &str, pod: &str, container: &str, succeeded: bool, text: &str) -> ContainerTail {
        ContainerTail {
            namespace: "ns".into(),
            job: job.into(),
            pod: pod.into(),
            container: container.into(),
            init: container.starts_with("init"),
            succeeded,
            text: text.into(),
            truncated: false,
        }
    }

    fn function(job: &str, namespace: Option<&str>) -> StoredFunction {
        StoredFunction {
            function_uid: format!("f-{job}").into(),
            path: format!("{job}.yaml"),
            objects: vec![ObjectRef {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                namespace: namespace.map(Into::into),
                name: job.into(),
            }],
        }
    }

    #[test]
    fn the_result_is_the_last_line_of_the_main_container_of_the_last_pod_that_succeeded() {
        let tails = [
            tail("a", "a-1", "main", false, "{\"try\": 1}\n"),
            tail("a", "a-2", "init-fetch", true, "fetched\n"),
            tail("a", "a-2", "main", true, "working\n{\"rows\": 3}\n\n"),
            tail("a", "a-2", "sidecar", true, "sidecar says bye\n"),
            tail("b", "b-1", "main", true, "the b result\n"),
        ];
        assert_eq!(
            result_line(&function("a", Some("ns")), &tails),
            Some("{\"rows\": 3}")
        );
        assert_eq!(
            result_line(&function("b", None), &tails),
            Some("the b result")
        );
        // Another namespace's Job of that name is not this function's.
        assert_eq!(result_line(&function("b", Some("other")), &tails), None);
        // Only failed pods, or nothing written: no result.
        assert_eq!(
            result_line(&function("a", None), &tails[..1]),
            None,
            "a failed pod's line is no result"
        );
        let silent = [tail("c", "c-1", "main", true, "\n  \n")];
        assert_eq!(result_line(&function("c", None), &silent), None);
    }

    #[test]
    fn a_kept_log_is_cut_at_a_line_start_and_never_inside_a_character() {
        assert_eq!(last_bytes("one\ntwo\n", 64), ("one\ntwo\n", false));
        assert_eq!(last_bytes("one\ntwo\nthree\n", 10), ("two\nthree\n", true));
        assert_eq!(last_bytes("one\ntwo\nthree\n", 9), ("three\n", true));
        assert_eq!(
            last_bytes("one\ntwo\nthree\n", 6),
            ("three\n", true),
            "a cut at a line start"
        );
        // A last line longer than the bound: its end.
        assert_eq!(last_bytes("abcdefghij", 4), ("ghij", true));
        // "é" is two bytes; a cut inside it moves past it.
        let (kept, cut) = last_bytes("ééé", 3);
        assert!(cut);
        assert_eq!(kept, "é");
        let t = archived(tail("a", "a-1", "main", true, "x\ny\n"), 2);
        assert_eq!((t.text.as_str(), t.truncated), ("y\n", true));
    }

    #[test]
    fn the_run_bound_is_four_containers_worth_within_a_mebibyte() {
        assert_eq!(run_archive_bytes(64 * 1024), 256 * 1024);
        assert_eq!(run_archive_bytes(512 * 1024), 1024 * 1024);
        assert_eq!(run_archive_bytes(1024 * 1024), 1024 * 1024);
        assert_eq!(run_archive_bytes(0), 0);
        assert_eq!(
            run_archive_bytes(usize::MAX),
            usize::MAX,
            "never below one container's"
        );
    }

    #[test]
    fn shares_are_fair_and_stay_within_the_budget() {
        assert_eq!(fair_shares(&[10, 20, 30], 60), [10, 20, 30]);
        assert_eq!(fair_shares(&[10, 20, 30], 45), [10, 17, 17]);
        assert_eq!(fair_shares(&[100, 100, 100], 30), [10, 10, 10]);
        assert_eq!(fair_shares(&[5, 100, 1], 10), [4, 4, 1]);
        assert_eq!(fair_shares(&[7, 9], 0), [0, 0]);
        assert_eq!(fair_shares(&[], 10), Vec::<usize>::new());
        // Every split: within the budget, no share above its length, and
        // a share below its length only at the common cap (no one favoured).
        for lens in [vec![3, 50, 7, 50, 2], vec![1; 40], vec![1000, 1, 999, 500]] {
            for budget in 0..=lens.iter().sum::<usize>() + 1 {
                let shares = fair_shares(&lens, budget);
                assert!(shares.iter().sum::<usize>() <= budget, "{lens:?} {budget}");
                let cut: Vec<usize> = lens
                    .iter()
                    .zip(&shares)
                    .filter(|(l, s)| s < l)
                    .map(|(_, s)| *s)
                    .collect();
                assert!(
                    cut.windows(2).all(|w| w[0] == w[1]),
                    "{lens:?} {budget}: {shares:?}"
                );
                for (l, s) in lens.iter().zip(&shares) {
                    assert!(s <= l);
                    assert!(
                        cut.first().is_none_or(|c| s >= c || s == l),
                        "{lens:?} {budget}: {shares:?}"
                    );
                }
                // Nothing wasted beyond rounding: one byte per container at most.
                assert!(
                    budget.min(lens.iter().sum()) - shares.iter().sum::<usize>()
                        < lens.len().max(1),
                    "{lens:?} {budget}: {shares:?}"
                );
            }
        }
    }

    #[test]
    fn a_run_of_twelve_containers_keeps_the_last_lines_of_each_within_the_run_bound() {
        let per_container = 64 * 1024;
        let line = "x".repeat(99) + "\n";
        let tails: Vec<ContainerTail> = (0..12)
            .map(|i| {
                let text = format!("{i}-first\n") + &line.repeat(700) + &format!("{i}-last\n");
                let mut t = tail(
                    "a",
                    "a-1",
                    &format!("c{i}"),
                    true,
                    &text[text.len() - per_container..],
                );
                t.truncated = true;
                t
            })
            .chain([tail("a", "a-1", "short", true, "all of it\n")])
            .collect();
        let kept = archive(tails, per_container);
        let total: usize = kept.iter().map(|t| t.text.len()).sum();
        assert!(total <= run_archive_bytes(per_container), "{total}");
        assert!(
            total > run_archive_bytes(per_container) - 13 * line.len(),
            "the budget is used: {total}"
        );
        for (i, t) in kept.iter().take(12).enumerate() {
            assert!(t.truncated, "c{i}");
            assert!(
                t.text.ends_with(&format!("{i}-last\n")),
                "c{i} keeps its last line"
            );
            assert!(t.text.starts_with('x'), "c{i} starts at a line start");
            assert!(
                t.text.len() > 20 * 1024,
                "c{i}: a fair share: {}",
                t.text.len()
            );
        }
        assert_eq!(
            (kept[12].text.as_str(), kept[12].truncated),
            ("all of it\n", false)
        );
    }
}
