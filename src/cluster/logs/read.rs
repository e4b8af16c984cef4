//! Reading container logs: one container's log line by line (bounded
//! lines, prefixed), the tails kept when a run finishes, and the reading
//! of every container of a run as one stream.

use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncBufRead, AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use tokio::sync::mpsc;

use super::pods::{Instance, PodState, Target};
use super::wakes::Wakes;
use super::{LogOptions, RunJob, LINGER, LOOK_AGAIN, MAX_FOLLOWED, MAX_LINE_BYTES};
use crate::cluster::{Applier, ApplyError};
use crate::object::ObjectRef;

/// The end of one container's log ([`Applier::log_tails`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerTail {
    /// The pod's namespace.
    pub namespace: String,
    /// The Job the pod ran for.
    pub job: String,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// An init container.
    pub init: bool,
    /// Its pod ended Succeeded.
    pub succeeded: bool,
    /// The end of its log (invalid UTF-8 replaced), from a line start.
    pub text: String,
    /// Whether earlier output was left out.
    pub truncated: bool,
}

/// The longest one container's tail is read for.
pub const TAIL_READ_FOR: Duration = Duration::from_secs(30);

/// Reads `reader` to its end keeping at most its last `max` bytes, from a
/// line start (a last line longer than `max` is kept as its end); whether
/// anything was left out. Memory stays below twice `max`.
pub(super) async fn read_tail<R: AsyncBufRead + Unpin>(
    mut reader: R,
    max: usize,
) -> std::io::Result<(String, bool)> {
    let mut kept: Vec<u8> = Vec::with_capacity(max.min(64 * 1024));
    // The byte before what is kept, once something was left out.
    let mut before: Option<u8> = None;
    let mut drop_to = |kept: &mut Vec<u8>, len: usize| {
        let cut = kept.len() - len;
        before = Some(kept[cut - 1]);
        kept.drain(..cut);
    };
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            break;
        }
        let n = available.len();
        kept.extend_from_slice(available);
        reader.consume_unpin(n);
        if kept.len() > max.saturating_mul(2).max(max + 4096) {
            drop_to(&mut kept, max);
        }
    }
    if kept.len() > max {
        drop_to(&mut kept, max);
    }
    let dropped = before.is_some();
    if before.is_some_and(|b| b != b'\n') {
        // From the first whole line, unless that would leave nothing.
        if let Some(nl) = kept.iter().position(|b| *b == b'\n') {
            if nl + 1 < kept.len() {
                kept.drain(..=nl);
            }
        }
    }
    Ok((String::from_utf8_lossy(&kept).into_owned(), dropped))
}

/// How reading one container's log ended.
pub(super) enum ReadEnd {
    /// Its log ended (the container ended, or without follow, the end of
    /// what it has written).
    Done,
    /// The API server says the container has not started after all (its
    /// status was ahead of the kubelet): to be read again later.
    NotStarted(Instance),
    /// The stream's receiver is gone.
    Closed,
}

/// What a read needs while it streams.
pub(super) struct Read {
    pub(super) applier: Arc<Applier>,
    pub(super) options: LogOptions,
    pub(super) jobs: Vec<RunJob>,
    pub(super) client: kube::Client,
    pub(super) selector: String,
    pub(super) tx: mpsc::Sender<Bytes>,
}

impl Read {
    pub(super) fn params(&self, container: &str) -> LogParams {
        LogParams {
            container: Some(container.to_string()),
            follow: self.options.follow,
            tail_lines: self.options.tail,
            ..LogParams::default()
        }
    }

    /// Without follow: each container in turn, pods oldest first.
    pub(super) async fn read_all(&self, pods: &[PodState]) {
        let progress = Rc::new(Cell::new(tokio::time::Instant::now()));
        for target in pods.iter().flat_map(|p| p.started(&self.options.container)) {
            let params = self.params(&target.container);
            let end = read_container(
                Arc::clone(&self.applier),
                self.client.clone(),
                target,
                params,
                self.tx.clone(),
                Rc::clone(&progress),
            )
            .await;
            if matches!(end, ReadEnd::Closed) {
                return;
            }
        }
    }

    /// With follow: every container of the Jobs' pods, those that start
    /// later included, until the Jobs have finished and their logs are read.
    pub(super) async fn follow(&self, pods: Vec<PodState>) {
        let applier = &*self.applier;
        let only = &self.options.container;
        let mut opened: HashSet<Instance> = HashSet::new();
        let mut queue: VecDeque<Target> = VecDeque::new();
        let mut waiting = take(&pods, only, &mut opened, &mut queue);
        let mut readers: FuturesUnordered<LocalBoxFuture<'static, ReadEnd>> =
            FuturesUnordered::new();
        let progress = Rc::new(Cell::new(tokio::time::Instant::now()));

        // When the Jobs have finished: the wait of `?wait=`, on the shared
        // watch of each namespace (a wait of its own beyond the bound on
        // watched namespaces).
        let refs: Vec<ObjectRef> = self.jobs.iter().map(|j| j.object.clone()).collect();
        let now = tokio::time::Instant::now();
        let far = now
            .checked_add(Duration::from_secs(365 * 86400))
            .unwrap_or(now);
        let mut finished: LocalBoxFuture<'_, Result<bool, ApplyError>> =
            Box::pin(applier.wait_finished(&refs, &self.selector, far));
        let mut pause = Duration::from_secs(1);
        let mut jobs_done = false;

        // What wakes a look at the pods: a change of one of the Jobs on
        // the same watches.
        let mut wakes = Wakes::new(applier, &self.jobs);
        let mut look_again = now + LOOK_AGAIN;

        loop {
            while readers.len() < MAX_FOLLOWED {
                let Some(target) = queue.pop_front() else {
                    break;
                };
                let params = self.params(&target.container);
                readers.push(Box::pin(read_container(
                    Arc::clone(&self.applier),
                    self.client.clone(),
                    target,
                    params,
                    self.tx.clone(),
                    Rc::clone(&progress),
                )));
            }
            if jobs_done && readers.is_empty() && queue.is_empty() {
                return;
            }
            let mut relist = false;
            tokio::select! {
                Some(end) = readers.next(), if !readers.is_empty() => match end {
                    ReadEnd::Done => {}
                    ReadEnd::Closed => return,
                    ReadEnd::NotStarted(instance) => {
                        opened.remove(&instance);
                        waiting = true;
                    }
                },
                result = &mut finished, if !jobs_done => match result {
                    Ok(true) => {
                        jobs_done = true;
                        // Silence is counted from here (LINGER).
                        progress.set(tokio::time::Instant::now());
                        // One last look: a pod that started and ended
                        // between two looks is read now.
                        relist = true;
                    }
                    // The watch stopped: gitfaas is shutting down.
                    Ok(false) => return,
                    Err(e) => {
                        tracing::info!(error = %e, "looking at the Jobs of a log stream failed; trying again");
                        let wait = pause;
                        pause = (pause * 2).min(Duration::from_secs(30));
                        let (refs, selector) = (&refs, &self.selector);
                        finished = Box::pin(async move {
                            tokio::time::sleep(wait).await;
                            applier.wait_finished(refs, selector, far).await
                        });
                    }
                },
                changed = wakes.changed(), if !jobs_done => relist = changed,
                () = tokio::time::sleep_until(look_again), if !jobs_done && (waiting || wakes.blind) => relist = true,
                () = tokio::time::sleep_until(progress.get() + LINGER), if jobs_done => {
                    tracing::info!("the Jobs of a log stream have finished and its open logs are silent; ending it");
                    return;
                }
            }
            if relist {
                look_again = tokio::time::Instant::now() + LOOK_AGAIN;
                let mut pods = Vec::new();
                let mut failed = false;
                for job in &self.jobs {
                    match applier.pods_of(job).await {
                        Ok(p) => pods.extend(p),
                        Err(e) => {
                            tracing::info!(error = %e, "listing the pods of a log stream failed; trying again");
                            failed = true;
                        }
                    }
                }
                waiting = take(&pods, only, &mut opened, &mut queue) || failed;
            }
        }
    }
}

/// Queues the started containers of `pods` not read yet; whether a
/// container may still start in one of them.
pub(super) fn take(
    pods: &[PodState],
    only: &Option<String>,
    opened: &mut HashSet<Instance>,
    queue: &mut VecDeque<Target>,
) -> bool {
    let mut waits = false;
    for pod in pods {
        waits |= pod.waiting(only);
        for target in pod.started(only) {
            if opened.insert(target.instance.clone()) {
                queue.push_back(target);
            }
        }
    }
    waits
}

/// Reads one container's log into `tx`, a line per chunk, each with the
/// `<pod>/<container>: ` prefix. A failure is written as a line of its own
/// (the response has begun: the status cannot say it any more).
pub(super) async fn read_container(
    applier: Arc<Applier>,
    client: kube::Client,
    target: Target,
    params: LogParams,
    tx: mpsc::Sender<Bytes>,
    progress: Rc<Cell<tokio::time::Instant>>,
) -> ReadEnd {
    let prefix = format!("{}/{}: ", target.pod, target.container);
    let api: Api<Pod> = Api::namespaced(client, &target.namespace);
    let note = |text: String| Bytes::from(format!("{prefix}[gitfaas] {text}\n"));
    // The opening is a call like any other (bounded in time and in number);
    // what follows is the stream.
    let reader = match applier.bounded(api.log_stream(&target.pod, &params)).await {
        Ok(reader) => reader,
        Err(kube::Error::Api(status)) if params.follow && status.code == 400 => {
            tracing::debug!(
                pod = target.pod,
                container = target.container,
                message = status.message,
                "container not started yet"
            );
            return ReadEnd::NotStarted(target.instance);
        }
        Err(e) => {
            let e = applier.classify(e, &format!("reading the log of {prefix}"));
            return match tx.send(note(format!("cannot read this log: {e}"))).await {
                Ok(()) => ReadEnd::Done,
                Err(_) => ReadEnd::Closed,
            };
        }
    };
    let mut reader = std::pin::pin!(reader);
    let mut line = Vec::with_capacity(256);
    loop {
        let more = match next_line(&mut reader, &mut line, MAX_LINE_BYTES).await {
            Ok(more) => more,
            Err(e) => {
                let text = note(format!("the log stream broke: {e}"));
                return match tx.send(text).await {
                    Ok(()) => ReadEnd::Done,
                    Err(_) => ReadEnd::Closed,
                };
            }
        };
        if !more {
            return ReadEnd::Done;
        }
        let mut chunk = Vec::with_capacity(prefix.len() + line.len() + 1);
        chunk.extend_from_slice(prefix.as_bytes());
        chunk.extend_from_slice(&line);
        if chunk.last() != Some(&b'\n') {
            chunk.push(b'\n');
        }
        if tx.send(Bytes::from(chunk)).await.is_err() {
            return ReadEnd::Closed;
        }
        progress.set(tokio::time::Instant::now());
    }
}

/// Reads the next line of `reader` into `line` (cleared first), newline
/// included, but at most `max` bytes of it: the rest of a longer line is
/// the next "line". False at the end of the stream with nothing read.
pub(super) async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    line.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(!line.is_empty());
        }
        let room = max.saturating_sub(line.len());
        let window = &available[..available.len().min(room)];
        if let Some(end) = window.iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&window[..=end]);
            reader.consume_unpin(end + 1);
            return Ok(true);
        }
        let taken = window.len();
        line.extend_from_slice(window);
        reader.consume_unpin(taken);
        if line.len() >= max {
            return Ok(true);
        }
    }
}
