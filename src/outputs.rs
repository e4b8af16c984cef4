//! What a finished run leaves behind for when its pods are gone: the end of
//! each container's log, kept in the store (`--log-archive-bytes` of each)
//! so `GET /requests/{uid}/logs` still answers after
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
use crate::store::{LogTail, Store, StoreError, StoredRequest};

/// The least read of a log whose last line becomes a response, whatever
/// `--log-archive-bytes` says: a JSON result of a few KiB is common.
pub const RESULT_BYTES: usize = 64 * 1024;

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
/// at most `archive_bytes` of each log (none at 0), and, when the run
/// `succeeded` and its topic takes results from stdout, the responses its
/// functions did not post. Idempotent: a second call writes the same logs
/// again, and a response stands once recorded.
pub async fn keep(
    applier: &Applier,
    store: &Store,
    record: &StoredRequest,
    archive_bytes: usize,
    succeeded: bool,
) -> Result<(), OutputsError> {
    let results = record.result_from_stdout && succeeded;
    let read = if results {
        archive_bytes.max(RESULT_BYTES)
    } else {
        archive_bytes
    };
    let objects = crate::lifecycle::objects_of(record);
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
        let kept = tails
            .into_iter()
            .map(|t| archived(t, archive_bytes))
            .collect();
        store.put_logs(record, kept).await?;
    }
    Ok(())
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
    record: &StoredRequest,
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
            function_uid: format!("f-{job}"),
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
}
