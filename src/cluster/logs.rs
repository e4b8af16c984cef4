//! The logs of a request's pods, through the API server's `pods/log`, as
//! `kubectl logs --prefix` reads them: every container of every pod of the
//! request's Jobs, each line prefixed with `<pod>/<container>: `.
//!
//! Only what the request created is read: its Jobs are listed by its
//! `gitfaas.io/request-uid` label and kept only when the stored request
//! names them, and their pods are those the Job controls: found by the uid
//! the API server gave each Job (`batch.kubernetes.io/controller-uid`),
//! kept only when their controller ownerReference is that Job — never by
//! name, nor by labels alone, which any manifest may copy.
//!
//! A read is prepared first ([`Applier::logs`]: the Jobs, their pods, the
//! run's status, a bad `container` refused), then streamed
//! ([`Logs::into_stream`]). The stream owns everything it uses: when the
//! HTTP layer drops it (the response ended, or its client went away) every
//! `pods/log` connection it opened closes with it. Nothing is spawned.
//!
//! # Following
//! With `follow`, each container's log is followed until the container
//! ends, and the stream ends once the request's Jobs have finished (as the
//! namespace's shared Job watch, [`super::jobwatch`], sees it: the same
//! wait as `?wait=`) and the logs of their pods have been read. Pods that
//! start later (a retry after a failed pod) are found by listing the Jobs'
//! pods again when one of the Jobs changes on that watch (the Job
//! controller updates a Job's counts when one of its pods is created,
//! becomes ready or ends), and every [`LOOK_AGAIN`] while a pod has a
//! container that has not started. It also ends when the client goes away
//! (the `gone` future the HTTP layer passes in).
//!
//! # Tails
//! [`Applier::log_tails`] reads the end of every container log of a
//! request at once (no follow, no permit: the run trackers that call it are
//! bounded themselves), for what is kept when a run finishes.
//!
//! # Bounds
//! - [`MAX_LOG_STREAMS`] reads at once per gitfaas (an applier); one more
//!   is refused ([`LogError::Busy`]) rather than queued.
//! - [`MAX_FOLLOWED`] containers followed at once per read; more wait for a
//!   slot (their logs are read from the start then: nothing is lost). A
//!   read without `follow` reads one container at a time.
//! - Lines of at most [`MAX_LINE_BYTES`] (a longer one comes in pieces,
//!   each prefixed), through a channel of [`CHANNEL_LINES`] lines: a slow
//!   client holds back the reading, not memory.

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncBufRead, AsyncBufReadExt, Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::jobs::{condition_true, job_finished};
use super::{Applier, ApplyError};
use crate::error::Code;
use crate::object::{ObjectRef, LABEL_REQUEST_UID};
use crate::uid::RequestUid;

/// Log reads served at once by one gitfaas. Each holds up to
/// [`MAX_FOLLOWED`] `pods/log` connections to the API server (long-running
/// requests, like watches).
pub const MAX_LOG_STREAMS: usize = 32;

/// Containers followed at once by one read.
pub const MAX_FOLLOWED: usize = 8;

/// The longest line passed on whole; a longer one is cut into pieces of
/// this size, each on a line of its own with the prefix.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Lines read ahead of the client, per read.
pub const CHANNEL_LINES: usize = 32;

/// How often a follow looks again at pods whose containers have not
/// started (a pod with several containers, or init containers, may start
/// one without its Job changing).
pub const LOOK_AGAIN: Duration = Duration::from_secs(5);

/// How long a follow waits, once the Jobs have finished, for log streams
/// that neither end nor bring a line (a node that went away); then it ends.
pub const LINGER: Duration = Duration::from_secs(30);

/// The label the Job controller sets on a Job's pods: the Job's uid.
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

/// What to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Follow until the Jobs have finished.
    pub follow: bool,
    /// The last lines of each container only.
    pub tail: Option<i64>,
    /// One container only.
    pub container: Option<String>,
}

/// Errors of preparing a log read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The cluster failed.
    #[error(transparent)]
    Cluster(#[from] ApplyError),
    /// No pod of the request has that container.
    #[error("container={container}: the request's pods have no container `{container}`; use one of: {known} (or leave container out for every container)", known = known.join(", "))]
    UnknownContainer {
        /// The container asked for.
        container: String,
        /// The containers the request's Jobs run, in order.
        known: Vec<String>,
    },
    /// [`MAX_LOG_STREAMS`] reads are open.
    #[error("{0} log streams are open on this gitfaas, the most it serves at once: retry later, or end a follow=true stream")]
    Busy(usize),
}

impl LogError {
    /// What kind of failure this is.
    pub fn kind(&self) -> Code {
        match self {
            LogError::Cluster(e) => e.kind(),
            LogError::UnknownContainer { .. } => Code::BadRequest,
            LogError::Busy(_) => Code::TooManyRequests,
        }
    }

    /// Every code [`kind`](Self::kind) can give: what the route table
    /// (`http::routes`) checks each route's documented errors against. The
    /// match has no wildcard, like kind's: a new variant does not compile
    /// until its codes are listed here too.
    pub fn codes() -> Vec<Code> {
        let _every_variant_is_listed = |e: &Self| match e {
            LogError::Cluster(_) | LogError::UnknownContainer { .. } | LogError::Busy(_) => (),
        };
        [
            super::ApplyError::codes(),
            vec![Code::BadRequest, Code::TooManyRequests],
        ]
        .concat()
    }
}

/// Where the request's run is, when its logs are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// The request created no Job: there are no logs.
    NoJobs,
    /// A Job has not finished and no container of its pods has started.
    Pending,
    /// A Job has not finished and a container has started.
    Running,
    /// Every Job still there has finished, none failed.
    Succeeded,
    /// Every Job still there has finished, one failed.
    Failed,
    /// The request's Jobs no longer exist (deleted, or removed by
    /// ttlSecondsAfterFinished): their logs went with their pods.
    Gone,
}

impl RunStatus {
    /// As the `Gitfaas-Run-Status` header says it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::NoJobs => "NoJobs",
            RunStatus::Pending => "Pending",
            RunStatus::Running => "Running",
            RunStatus::Succeeded => "Succeeded",
            RunStatus::Failed => "Failed",
            RunStatus::Gone => "Gone",
        }
    }
}

/// The bound on reads at once, one per applier.
pub(super) struct LogStreams(Arc<Semaphore>);

impl Default for LogStreams {
    fn default() -> Self {
        LogStreams(Arc::new(Semaphore::new(MAX_LOG_STREAMS)))
    }
}

/// One of the request's Jobs, as the API server has it.
#[derive(Debug, Clone)]
struct RunJob {
    object: ObjectRef,
    namespace: String,
    uid: String,
    /// The run's request uid, which the Job's pod template carries.
    request_uid: RequestUid,
}

/// One container of a pod, as the pod's status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContainerState {
    name: String,
    /// It runs or ran: it has a log.
    started: bool,
    /// Which run of it (restartPolicy: OnFailure restarts it in place).
    restarts: i32,
    /// An init container.
    init: bool,
}

/// One pod of a Job.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodState {
    namespace: String,
    name: String,
    uid: String,
    /// Succeeded or Failed: nothing more will start in it.
    terminal: bool,
    /// Succeeded.
    succeeded: bool,
    /// Init containers first, then containers, in the pod's order.
    containers: Vec<ContainerState>,
}

/// One run of one container, whose log is read once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Instance {
    pod_uid: String,
    container: String,
    restarts: i32,
}

/// A container log to read.
#[derive(Debug, Clone)]
struct Target {
    namespace: String,
    pod: String,
    container: String,
    instance: Instance,
}

impl PodState {
    fn of(pod: &Pod, namespace: &str) -> Option<PodState> {
        let name = pod.metadata.name.clone()?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.as_ref()?;
        let status = pod.status.as_ref();
        let statuses: Vec<&k8s_openapi::api::core::v1::ContainerStatus> = status
            .into_iter()
            .flat_map(|s| {
                let init = s.init_container_statuses.iter().flatten();
                init.chain(s.container_statuses.iter().flatten())
            })
            .collect();
        let names = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), true))
            .chain(spec.containers.iter().map(|c| (c.name.clone(), false)));
        let containers = names
            .map(|(name, init)| {
                let s = statuses.iter().find(|s| s.name == name);
                // Running or ended, now or in an earlier run: the kubelet
                // has a log for it. A container still waiting for its first
                // run (pulling its image) has none yet.
                let started = s.is_some_and(|s| {
                    let now = s.state.as_ref();
                    now.is_some_and(|st| st.running.is_some() || st.terminated.is_some())
                        || s.last_state
                            .as_ref()
                            .is_some_and(|st| st.terminated.is_some())
                });
                ContainerState {
                    restarts: s.map_or(0, |s| s.restart_count),
                    name,
                    started,
                    init,
                }
            })
            .collect();
        let phase = status.and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded" | "Failed"));
        let succeeded = phase == Some("Succeeded");
        Some(PodState {
            namespace: namespace.to_string(),
            name,
            uid,
            terminal,
            succeeded,
            containers,
        })
    }

    /// The containers matching `only` whose current run has a log.
    fn started<'a>(&'a self, only: &'a Option<String>) -> impl Iterator<Item = Target> + 'a {
        self.matching(only).filter(|c| c.started).map(|c| Target {
            namespace: self.namespace.clone(),
            pod: self.name.clone(),
            container: c.name.clone(),
            instance: Instance {
                pod_uid: self.uid.clone(),
                container: c.name.clone(),
                restarts: c.restarts,
            },
        })
    }

    /// Whether a container matching `only` may still start.
    fn waiting(&self, only: &Option<String>) -> bool {
        !self.terminal && self.matching(only).any(|c| !c.started)
    }

    fn matching<'a>(
        &'a self,
        only: &'a Option<String>,
    ) -> impl Iterator<Item = &'a ContainerState> + 'a {
        self.containers
            .iter()
            .filter(move |c| only.as_ref().is_none_or(|o| *o == c.name))
    }
}

/// The containers a Job's pods run, from its template: init containers
/// first.
fn template_containers(job: &Job) -> Vec<String> {
    let Some(spec) = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| c.name.clone())
        .collect()
}

/// The run's status from its Jobs (finished, failed) and whether a
/// container of their pods has started.
fn run_status(jobs: &[(bool, bool)], had_jobs: bool, started: bool) -> RunStatus {
    if !had_jobs {
        return RunStatus::NoJobs;
    }
    if jobs.is_empty() {
        return RunStatus::Gone;
    }
    if jobs.iter().any(|(finished, _)| !finished) {
        return if started {
            RunStatus::Running
        } else {
            RunStatus::Pending
        };
    }
    if jobs.iter().any(|(_, failed)| *failed) {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    }
}

/// The request's Jobs found, the status of each, and the containers
/// their pods run.
#[derive(Default)]
struct RequestJobs {
    jobs: Vec<RunJob>,
    /// Each Job: (finished, failed).
    phases: Vec<(bool, bool)>,
    containers: Vec<String>,
}

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
async fn read_tail<R: AsyncBufRead + Unpin>(
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

/// A prepared log read: what was found, and the permit it holds.
pub struct Logs {
    applier: Arc<Applier>,
    permit: OwnedSemaphorePermit,
    status: RunStatus,
    options: LogOptions,
    jobs: Vec<RunJob>,
    pods: Vec<PodState>,
    /// The client reads go through: the worker's calls client without
    /// `follow` (its read timeout cuts a stalled read), the watch client
    /// with it (a followed log is quiet for minutes).
    client: kube::Client,
    selector: String,
}

impl Applier {
    /// Prepares a read of the logs of the request `request_uid`, whose
    /// stored objects are `objects`: finds its Jobs and their pods, and
    /// refuses a `container` none of them runs. Holds one of
    /// [`MAX_LOG_STREAMS`] until the [`Logs`] (or its stream) is dropped.
    pub async fn logs(
        self: &Arc<Self>,
        request_uid: &RequestUid,
        objects: &[ObjectRef],
        options: LogOptions,
    ) -> Result<Logs, LogError> {
        let permit = Arc::clone(&self.log_streams.0)
            .try_acquire_owned()
            .map_err(|_| LogError::Busy(MAX_LOG_STREAMS))?;
        let selector = format!("{LABEL_REQUEST_UID}={request_uid}");
        let refs: Vec<&ObjectRef> = objects.iter().filter(|o| o.is_job()).collect();
        let RequestJobs {
            jobs,
            phases,
            containers,
        } = self.request_jobs(request_uid, &refs).await?;
        if let Some(container) = &options.container {
            // Without a Job left there is nothing to check it against, and
            // nothing to read either.
            if !jobs.is_empty() && !containers.contains(container) {
                return Err(LogError::UnknownContainer {
                    container: container.clone(),
                    known: containers,
                });
            }
        }
        let mut pods = Vec::new();
        for job in &jobs {
            pods.extend(self.pods_of(job).await?);
        }
        let started = pods
            .iter()
            .any(|p| p.started(&options.container).next().is_some());
        let status = run_status(&phases, !refs.is_empty(), started);
        let client = if options.follow {
            self.job_watches.client().clone()
        } else {
            self.calls_client()
        };
        Ok(Logs {
            applier: Arc::clone(self),
            permit,
            status,
            options,
            jobs,
            pods,
            client,
            selector,
        })
    }

    /// The request's Jobs as the API server has them: listed by the
    /// request's label (`selector`), then kept only when `refs` (its stored
    /// objects) name them: a Job that carries the label but that the
    /// request did not create is not read.
    async fn request_jobs(
        &self,
        request_uid: &RequestUid,
        refs: &[&ObjectRef],
    ) -> Result<RequestJobs, ApplyError> {
        let selector = &format!("{LABEL_REQUEST_UID}={request_uid}");
        let mut listed: HashMap<String, Vec<Job>> = HashMap::new();
        let mut found = RequestJobs::default();
        for o in refs {
            let ns = o.namespace.as_deref().unwrap_or(&self.default_namespace);
            if !listed.contains_key(ns) {
                let api: Api<Job> = Api::namespaced(self.calls_client(), ns);
                let list = self
                    .bounded(api.list(&ListParams::default().labels(selector)))
                    .await
                    .map_err(|e| self.classify(e, &format!("listing Jobs in {ns}")))?;
                listed.insert(ns.to_string(), list.items);
            }
            let job = listed.get(ns).and_then(|items| {
                items
                    .iter()
                    .find(|j| j.metadata.name.as_deref() == Some(&o.name))
            });
            let Some((job, uid)) = job.and_then(|j| Some((j, j.metadata.uid.clone()?))) else {
                continue;
            };
            for c in template_containers(job) {
                if !found.containers.contains(&c) {
                    found.containers.push(c);
                }
            }
            found
                .phases
                .push((job_finished(job), condition_true(job, "Failed")));
            found.jobs.push(RunJob {
                object: (*o).clone(),
                namespace: ns.to_string(),
                uid,
                request_uid: request_uid.clone(),
            });
        }
        Ok(found)
    }

    /// The end of every container log of the request's pods (pods oldest
    /// first, init containers first), at most `max_bytes` of each, cut at
    /// a line start: what is kept when the run finishes. Each read is
    /// bounded in time ([`TAIL_READ_FOR`]); a log that cannot be read is
    /// left out (and logged), not an error of the whole.
    pub async fn log_tails(
        &self,
        request_uid: &RequestUid,
        objects: &[ObjectRef],
        max_bytes: usize,
    ) -> Result<Vec<ContainerTail>, ApplyError> {
        let refs: Vec<&ObjectRef> = objects.iter().filter(|o| o.is_job()).collect();
        let found = self.request_jobs(request_uid, &refs).await?;
        let mut tails = Vec::new();
        for job in &found.jobs {
            for pod in self.pods_of(job).await? {
                let api: Api<Pod> = Api::namespaced(self.calls_client(), &pod.namespace);
                for c in pod.containers.iter().filter(|c| c.started) {
                    let params = LogParams {
                        container: Some(c.name.clone()),
                        // A line takes a byte at least: the last
                        // `max_bytes` bytes are within as many lines.
                        tail_lines: Some(i64::try_from(max_bytes).unwrap_or(i64::MAX)),
                        ..LogParams::default()
                    };
                    let read = async {
                        let reader = self
                            .bounded(api.log_stream(&pod.name, &params))
                            .await
                            .map_err(|e| e.to_string())?;
                        read_tail(reader, max_bytes)
                            .await
                            .map_err(|e| e.to_string())
                    };
                    match tokio::time::timeout(TAIL_READ_FOR, read).await {
                        Ok(Ok((text, truncated))) => tails.push(ContainerTail {
                            namespace: pod.namespace.clone(),
                            job: job.object.name.clone(),
                            pod: pod.name.clone(),
                            container: c.name.clone(),
                            init: c.init,
                            succeeded: pod.succeeded,
                            text,
                            truncated,
                        }),
                        Ok(Err(e)) => tracing::info!(
                            pod = pod.name,
                            container = c.name,
                            error = e,
                            "the end of a log could not be read; it is not kept"
                        ),
                        Err(_) => tracing::info!(
                            pod = pod.name,
                            container = c.name,
                            "reading the end of a log took too long; it is not kept"
                        ),
                    }
                }
            }
        }
        Ok(tails)
    }

    /// The pods of `job`, oldest first.
    async fn pods_of(&self, job: &RunJob) -> Result<Vec<PodState>, ApplyError> {
        let ns = &job.namespace;
        let api: Api<Pod> = Api::namespaced(self.calls_client(), ns);
        // The Job's pods carry the run's label (gitfaas marks the pod
        // template); a pod gitfaas applied for another run carries that
        // run's, whatever its manifest said.
        let selector = format!(
            "{CONTROLLER_UID}={},{LABEL_REQUEST_UID}={}",
            job.uid, job.request_uid
        );
        let mut list = self
            .bounded(api.list(&ListParams::default().labels(&selector)))
            .await
            .map_err(|e| {
                self.classify(
                    e,
                    &format!("listing the pods of Job {ns}/{}", job.object.name),
                )
            })?
            .items;
        list.sort_by(|a, b| {
            let at = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            at(a)
                .cmp(&at(b))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        Ok(list
            .iter()
            .filter(|p| controlled_by(p, &job.uid))
            .filter_map(|p| PodState::of(p, ns))
            .collect())
    }
}

/// Whether `pod` is one of the Job whose uid is `job_uid`: its controller
/// ownerReference names that Job. The labels that find it are only a
/// filter: any manifest may wear a Job's labels (a Pod another owner
/// controls), and its lines must not pass for the run's. (A bare Pod
/// wearing them would be adopted by the Job controller, but gitfaas marks
/// it with its own run's request uid, which the list's selector refuses.)
fn controlled_by(pod: &Pod, job_uid: &str) -> bool {
    pod.metadata.owner_references.iter().flatten().any(|o| {
        o.controller == Some(true)
            && o.uid == job_uid
            && o.kind == "Job"
            && o.api_version == "batch/v1"
    })
}

/// How reading one container's log ended.
enum ReadEnd {
    /// Its log ended (the container ended, or without follow, the end of
    /// what it has written).
    Done,
    /// The API server says the container has not started after all (its
    /// status was ahead of the kubelet): to be read again later.
    NotStarted(Instance),
    /// The stream's receiver is gone.
    Closed,
}

impl Logs {
    /// Where the run was when the read was prepared.
    pub fn status(&self) -> RunStatus {
        self.status
    }

    /// The log lines as a stream of chunks, each one line (or a piece of a
    /// long one) with its prefix. It ends when every log has been read (with
    /// follow: once the Jobs have finished), or soon after `gone` resolves.
    /// Dropping it closes every connection it opened.
    pub fn into_stream(
        self,
        gone: impl std::future::Future<Output = ()> + 'static,
    ) -> impl Stream<Item = Bytes> + 'static {
        let (tx, rx) = mpsc::channel(CHANNEL_LINES);
        let permit = self.permit;
        let read = Read {
            applier: self.applier,
            options: self.options,
            jobs: self.jobs,
            client: self.client,
            selector: self.selector,
            tx,
        };
        let pods = self.pods;
        let status = self.status;
        let producer = async move {
            let mut gone = std::pin::pin!(gone);
            if matches!(status, RunStatus::NoJobs | RunStatus::Gone) {
                return;
            }
            let work = async {
                if read.options.follow {
                    read.follow(pods).await
                } else {
                    read.read_all(&pods).await
                }
            };
            tokio::select! {
                () = &mut gone => tracing::debug!("the client of a log stream went away"),
                () = work => {}
            }
        };
        // The producer runs inside the body stream, polled with it: no
        // task to outlive the response. The permit lives as long as lines
        // are still to be sent.
        let lines = futures::stream::unfold((rx, permit), |(mut rx, permit)| async move {
            let line = rx.recv().await?;
            Some((line, (rx, permit)))
        });
        let driver = futures::stream::once(producer).filter_map(|()| std::future::ready(None));
        futures::stream::select(lines, driver)
    }
}

/// What a read needs while it streams.
struct Read {
    applier: Arc<Applier>,
    options: LogOptions,
    jobs: Vec<RunJob>,
    client: kube::Client,
    selector: String,
    tx: mpsc::Sender<Bytes>,
}

impl Read {
    fn params(&self, container: &str) -> LogParams {
        LogParams {
            container: Some(container.to_string()),
            follow: self.options.follow,
            tail_lines: self.options.tail,
            ..LogParams::default()
        }
    }

    /// Without follow: each container in turn, pods oldest first.
    async fn read_all(&self, pods: &[PodState]) {
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
    async fn follow(&self, pods: Vec<PodState>) {
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
fn take(
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

/// The changes of the request's Jobs on the namespaces' shared watches:
/// subscribed to those Jobs alone, so the events of the namespace's other
/// Jobs do not wake the stream.
struct Wakes {
    watches: Vec<Watched>,
    /// Each Job and the resourceVersion last seen of it.
    jobs: Vec<(String, String, Option<String>)>,
    /// A namespace beyond the bound on watched namespaces: no change is
    /// seen there, its pods are looked at every [`LOOK_AGAIN`].
    blind: bool,
}

/// One namespace's shared watch and the subscription to the request's
/// Jobs on it.
struct Watched {
    namespace: String,
    watch: Arc<super::jobwatch::NamespaceWatch>,
    changes: super::jobwatch::JobChanges,
}

impl Wakes {
    fn new(applier: &Applier, jobs: &[RunJob]) -> Self {
        let jobs: Vec<(String, String)> = jobs
            .iter()
            .map(|j| (j.namespace.clone(), j.object.name.clone()))
            .collect();
        Self::on(|ns| applier.job_watches.namespace(ns), jobs)
    }

    /// On the watches `watch_of` gives (None beyond the bound), for the
    /// Jobs `jobs` (namespace, name).
    fn on(
        watch_of: impl Fn(&str) -> Option<Arc<super::jobwatch::NamespaceWatch>>,
        jobs: Vec<(String, String)>,
    ) -> Self {
        let mut namespaces: Vec<&str> = jobs.iter().map(|(ns, _)| ns.as_str()).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        let mut watches = Vec::new();
        let mut blind = false;
        for ns in namespaces {
            match watch_of(ns) {
                Some(watch) => watches.push(Watched {
                    namespace: ns.to_string(),
                    changes: watch.subscribe(
                        jobs.iter()
                            .filter(|(n, _)| n == ns)
                            .map(|(_, name)| name.as_str()),
                    ),
                    watch,
                }),
                None => blind = true,
            }
        }
        Wakes {
            watches,
            jobs: jobs
                .into_iter()
                .map(|(ns, name)| (ns, name, None))
                .collect(),
            blind,
        }
    }

    /// Waits for the next change of one of the Jobs; true when one of them
    /// changed indeed (a relist that changed none of them is not a reason
    /// to list pods). Pending forever without a watch.
    async fn changed(&mut self) -> bool {
        if self.watches.is_empty() {
            return std::future::pending().await;
        }
        let (result, index, _) = futures::future::select_all(
            self.watches
                .iter_mut()
                .map(|w| Box::pin(w.changes.changed())),
        )
        .await;
        if result.is_err() {
            // Its watch stopped: the Jobs' wait ends the stream.
            self.watches.remove(index);
            return false;
        }
        let mut changed = false;
        for (ns, name, seen) in &mut self.jobs {
            let Some(w) = self.watches.iter().find(|w| w.namespace == *ns) else {
                continue;
            };
            let now = w
                .watch
                .job(ns, name)
                .and_then(|j| j.metadata.resource_version.clone());
            if now != *seen {
                *seen = now;
                changed = true;
            }
        }
        changed
    }
}

/// Reads one container's log into `tx`, a line per chunk, each with the
/// `<pod>/<container>: ` prefix. A failure is written as a line of its own
/// (the response has begun: the status cannot say it any more).
async fn read_container(
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
async fn next_line<R: AsyncBufRead + Unpin>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use serde_json::json;

    fn lines_of(input: &[u8], max: usize) -> Vec<Vec<u8>> {
        futures::executor::block_on(async {
            // A reader that hands out 3 bytes at a time, as a network does.
            let chunks: Vec<std::io::Result<Vec<u8>>> =
                input.chunks(3).map(|c| Ok(c.to_vec())).collect();
            let mut reader = futures::stream::iter(chunks).into_async_read();
            let mut out = Vec::new();
            let mut line = Vec::new();
            while next_line(&mut reader, &mut line, max).await.expect("read") {
                out.push(line.clone());
            }
            out
        })
    }

    #[test]
    fn lines_are_cut_at_newlines_and_at_the_bound() {
        assert_eq!(
            lines_of(b"one\ntwo\nthree", 100),
            [b"one\n".to_vec(), b"two\n".to_vec(), b"three".to_vec()]
        );
        assert_eq!(
            lines_of(b"abcdefghij\nk\n", 4),
            [
                b"abcd".to_vec(),
                b"efgh".to_vec(),
                b"ij\n".to_vec(),
                b"k\n".to_vec()
            ],
            "a long line comes in pieces of at most 4 bytes"
        );
        assert_eq!(lines_of(b"", 4), Vec::<Vec<u8>>::new());
        assert_eq!(lines_of(b"\n\n", 4), [b"\n".to_vec(), b"\n".to_vec()]);
    }

    fn tail_of(input: &[u8], max: usize) -> (String, bool) {
        futures::executor::block_on(async {
            let chunks: Vec<std::io::Result<Vec<u8>>> =
                input.chunks(7).map(|c| Ok(c.to_vec())).collect();
            let reader = futures::stream::iter(chunks).into_async_read();
            read_tail(reader, max).await.expect("read")
        })
    }

    #[test]
    fn a_tail_keeps_the_last_bytes_from_a_line_start() {
        assert_eq!(tail_of(b"one\ntwo\n", 64), ("one\ntwo\n".into(), false));
        assert_eq!(tail_of(b"", 64), (String::new(), false));
        // 10 lines of 10 bytes; 25 bytes keep the last two whole lines.
        let log: Vec<u8> = (0..10)
            .flat_map(|i| format!("line {i:03}\n").into_bytes())
            .collect();
        assert_eq!(tail_of(&log, 25), ("line 008\nline 009\n".into(), true));
        // A long log read through a small bound: memory stays bounded, the
        // end is exact.
        let long: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let (text, cut) = tail_of(&long, 12);
        assert!(cut);
        assert_eq!(
            text, "19998\n19999\n",
            "a cut at a line start keeps that line"
        );
        let (text, _) = tail_of(&long, 13);
        assert_eq!(
            text, "19998\n19999\n",
            "a cut inside a line drops the piece"
        );
        // One line longer than the bound: its end.
        assert_eq!(tail_of(b"abcdefghij", 4), ("ghij".into(), true));
        // Invalid UTF-8 is replaced, not an error.
        assert_eq!(tail_of(b"ok \xff\n", 64).0, "ok \u{fffd}\n");
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "main"}, {"name": "side"}]},
            "status": status,
        }))
        .expect("a Pod")
    }

    #[test]
    fn a_container_that_runs_or_ran_has_a_log_one_still_waiting_has_none() {
        let p = PodState::of(
            &pod(json!({
                "phase": "Running",
                "initContainerStatuses": [{"name": "init", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0}}}],
                "containerStatuses": [
                    {"name": "main", "image": "i", "imageID": "", "ready": true, "restartCount": 2,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}},
                    {"name": "side", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                     "state": {"waiting": {"reason": "ContainerCreating"}}}
                ]
            })),
            "ns",
        )
        .expect("a pod");
        let started: Vec<(String, i32)> = p
            .started(&None)
            .map(|t| (t.container, t.instance.restarts))
            .collect();
        assert_eq!(started, [("init".to_string(), 0), ("main".to_string(), 2)]);
        assert!(p.waiting(&None), "side has not started");
        assert!(!p.waiting(&Some("main".into())));
        let only: Vec<String> = p
            .started(&Some("main".into()))
            .map(|t| t.container)
            .collect();
        assert_eq!(only, ["main"]);
        let done = PodState::of(&pod(json!({"phase": "Failed"})), "ns").expect("a pod");
        assert!(
            done.terminal && !done.waiting(&None),
            "nothing starts in a failed pod"
        );
        assert_eq!(done.started(&None).count(), 0);
    }

    #[test]
    fn a_pod_is_the_jobs_only_when_the_job_controls_it() {
        let pod = |owners: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p",
                "labels": {"batch.kubernetes.io/controller-uid": "job-uid", "job-name": "j"},
                "ownerReferences": owners}}))
            .expect("a Pod")
        };
        let owner = |kind: &str, uid: &str, controller: bool| {
            json!({"apiVersion": if kind == "Job" { "batch/v1" } else { "v1" }, "kind": kind,
                   "name": "j", "uid": uid, "controller": controller})
        };
        assert!(controlled_by(
            &pod(json!([owner("Job", "job-uid", true)])),
            "job-uid"
        ));
        for (owners, case) in [
            (json!([]), "labels alone"),
            (
                json!([owner("ConfigMap", "cm-uid", true)]),
                "another controller",
            ),
            (
                json!([owner("Job", "job-uid", false)]),
                "owned, not controlled",
            ),
            (json!([owner("Job", "other-uid", true)]), "another Job"),
            (
                json!([owner("ConfigMap", "job-uid", true)]),
                "the uid on another kind",
            ),
        ] {
            assert!(!controlled_by(&pod(owners), "job-uid"), "{case}");
        }
    }

    #[test]
    fn the_run_status_says_what_is_known() {
        let cases = [
            (vec![], false, false, RunStatus::NoJobs),
            (vec![], true, false, RunStatus::Gone),
            (vec![(false, false)], true, false, RunStatus::Pending),
            (
                vec![(false, false), (true, false)],
                true,
                true,
                RunStatus::Running,
            ),
            (vec![(true, false)], true, true, RunStatus::Succeeded),
            (
                vec![(true, false), (true, true)],
                true,
                true,
                RunStatus::Failed,
            ),
        ];
        for (jobs, had, started, expected) in cases {
            assert_eq!(
                run_status(&jobs, had, started),
                expected,
                "{jobs:?} {had} {started}"
            );
        }
    }

    fn job_at(name: &str, resource_version: &str) -> k8s_openapi::api::batch::v1::Job {
        serde_json::from_value(json!({"metadata": {
            "name": name, "namespace": "ns", "resourceVersion": resource_version}}))
        .expect("a Job")
    }

    /// A followed stream is woken by its own Jobs' changes only; a relist
    /// wakes it but lists no pods unless one of them changed; a namespace
    /// beyond the bound makes it blind (looked at by time instead).
    #[tokio::test]
    async fn a_stream_wakes_for_its_own_jobs_only() {
        use futures::FutureExt;
        use kube::runtime::watcher::Event;
        let (watch, mut hand) = crate::cluster::jobwatch::by_hand();
        let watch = Arc::new(watch);
        let mut wakes = Wakes::on(
            |ns| (ns == "ns").then(|| Arc::clone(&watch)),
            vec![
                ("ns".to_string(), "a".to_string()),
                ("far".to_string(), "b".to_string()),
            ],
        );
        assert!(wakes.blind, "far is beyond the bound");
        assert_eq!(watch.waited_on(), 1, "a, on the one watch");
        for i in 0..1000 {
            hand.event(Event::Apply(job_at(&format!("other-{i}"), "1")));
        }
        assert!(
            wakes.changed().now_or_never().is_none(),
            "others' events do not wake it"
        );
        hand.event(Event::Apply(job_at("a", "1")));
        assert_eq!(wakes.changed().now_or_never(), Some(true));
        hand.relist(vec![job_at("a", "1")]);
        assert_eq!(
            wakes.changed().now_or_never(),
            Some(false),
            "woken by the relist, a unchanged"
        );
        hand.relist(vec![job_at("a", "2")]);
        assert_eq!(wakes.changed().now_or_never(), Some(true));
        drop(hand);
        assert_eq!(
            wakes.changed().now_or_never(),
            Some(false),
            "the watch stopped"
        );
        assert!(wakes.changed().now_or_never().is_none(), "then no watch");
        drop(wakes);
        assert_eq!(watch.waited_on(), 0);
    }
}
