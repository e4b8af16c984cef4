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
//!
//! # Files
//! This file prepares a read and owns its types; `pods.rs` reads a run's
//! pods and containers from their statuses, `read.rs` reads container logs
//! (a line at a time, the tails, the whole stream), `wakes.rs` wakes a
//! followed read on its Jobs' changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::jobs::{condition_true, job_finished};
use super::{Applier, ApplyError};
use crate::error::Code;
use crate::object::{ObjectRef, LABEL_REQUEST_UID};
use crate::uid::RequestUid;

mod pods;
mod read;
mod wakes;

use pods::{controlled_by, run_status, template_containers, PodState};
pub use read::ContainerTail;
use read::{read_tail, Read, TAIL_READ_FOR};

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

/// The request's Jobs found, the status of each, and the containers
/// their pods run.
#[derive(Default)]
struct RequestJobs {
    jobs: Vec<RunJob>,
    /// Each Job: (finished, failed).
    phases: Vec<(bool, bool)>,
    containers: Vec<String>,
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

#[cfg(test)]
mod tests;
