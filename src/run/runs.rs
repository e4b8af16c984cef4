//! The history of runs: where each publish stands (`RunState`, kept in its
//! record so `GET /requests` can list and filter without asking the
//! cluster), the trackers that move a run from Running to Succeeded or
//! Failed when its Jobs finish, and the pages of the history.
//!
//! A request's own view (`GET /requests/{uid}`) reads its objects live;
//! the history shows the state last recorded. A tracker follows a run's
//! Jobs on the namespace's shared Job watch, as callbacks and waits do;
//! trackers are cancellable tasks (shutdown drops them) and are resumed at
//! start for the runs still Running. A run nobody tracks (beyond
//! [`MAX_TRACKED`]) is settled when its view is read.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::{JobsEnd, LogError, LogOptions, Logs, RunStatus};
use crate::object::{ObjectRef, LABEL_REQUEST_UID};
use crate::run::lifecycle::{Lifecycle, LifecycleError};
use crate::run::view::{rfc3339, RunDetail};
use crate::run::{self, Event, Transition};
use crate::store::{
    Decision, Durability, LogTail, RunPage, RunQuery, RunRecord, RunState, RunSummary, StoreError,
    Updated,
};
use crate::tasks::TaskName;
use crate::uid::RequestUid;

/// The name of trackers among the background tasks.
pub const TRACK_TASK: &str = "track run";

/// Runs followed at once, at most: each is a task waiting on the shared
/// watch of its namespace. A tracked run costs a few KB (bench case 8
/// measures it: BENCHMARKS.md), so the bound holds gitfaas' memory for
/// them under about 100 MB; thousands of Jobs running for minutes are the
/// normal case, and 10,000 in flight plus the publishes arriving meanwhile
/// are all tracked.
pub const MAX_TRACKED: usize = 20_000;

/// The longest a tracker follows a run's Jobs; a run still Running then is
/// settled when its view is read.
const TRACK_FOR: Duration = Duration::from_secs(7 * 86400);

/// The state a run is in once its apply ended.
pub fn after_apply(record: &RunRecord, failed: bool) -> RunState {
    let has_jobs = record
        .functions
        .iter()
        .flat_map(|f| &f.objects)
        .any(|o| o.kind == "Job" && o.api_version == "batch/v1");
    run::after(record.state, Event::Applied { failed, has_jobs })
}

/// A run as a page of the history shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    /// Its uid.
    pub request_uid: String,
    /// The topic.
    pub topic: String,
    /// The commit of its manifests.
    pub commit: String,
    /// When it was published (RFC 3339).
    pub created_at: String,
    /// Where it stands: Pending, Queued, Running, Succeeded, Failed or Cancelled.
    #[serde(rename = "status")]
    pub state: &'static str,
    /// The run that published it, when the publish named it.
    pub parent: Option<String>,
    /// What started it: http, schedule or cloudevent.
    pub trigger: &'static str,
    /// The tick a schedule fired it for (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<String>,
}

impl From<RunSummary> for RunView {
    fn from(s: RunSummary) -> Self {
        RunView {
            request_uid: s.request_uid.into_string(),
            topic: s.topic,
            commit: s.commit,
            created_at: rfc3339(s.created_at),
            state: s.state.as_str(),
            parent: s.parent.map(RequestUid::into_string),
            trigger: s.trigger.as_str(),
            scheduled_time: s.scheduled_time,
        }
    }
}

/// A page of `GET /requests`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page {
    /// Always false.
    pub error: bool,
    /// The runs, newest first.
    pub runs: Vec<RunView>,
    /// The cursor of the next page; null when there is no more.
    pub next: Option<String>,
}

impl From<RunPage> for Page {
    fn from(p: RunPage) -> Self {
        Page {
            error: false,
            runs: p.runs.into_iter().map(RunView::from).collect(),
            next: p.next.map(|c| c.encode()),
        }
    }
}

/// The deepest a tree goes, up to its root and down from it.
const MAX_DEPTH: usize = 32;
/// The most runs a tree shows.
const MAX_TREE: usize = 1000;

/// One run of a pipeline's tree (`GET /requests/{uid}/tree`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TreeNode {
    /// Its uid.
    pub request_uid: String,
    /// The topic.
    pub topic: String,
    /// Where it stands, as recorded.
    #[serde(rename = "status")]
    pub state: &'static str,
    /// When it was published (RFC 3339).
    pub created_at: String,
    /// The runs it published, oldest first.
    #[schema(no_recursion)]
    pub children: Vec<TreeNode>,
}

/// `GET /requests/{uid}/tree`: the whole pipeline run the run belongs to.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tree {
    /// Always false.
    pub error: bool,
    /// The top-most ancestor (still stored) of the run asked for.
    pub root: TreeNode,
    /// Whether the tree was cut at [`MAX_TREE`] runs or [`MAX_DEPTH`] levels.
    pub truncated: bool,
}

/// What a cancel did.
pub enum Cancel {
    /// Cancelled (now or before): the run's view.
    Cancelled(Box<RunDetail>),
    /// Not cancelled: the run is in this state.
    NotCancellable(RunState),
}

/// The history and the trackers.
pub struct Runs {
    lifecycle: Arc<Lifecycle>,
    tracked: Arc<tokio::sync::Semaphore>,
    /// Trackers recording a run's end at once, at most [`SETTLING`].
    settling: tokio::sync::Semaphore,
    /// The topics whose limited runs ended, for the dispatcher (bounded: a
    /// wakeup lost to a full channel is made up for by the next sweep).
    wake: tokio::sync::mpsc::Sender<String>,
    wakeups: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<String>>>,
}

/// Wakeups of the dispatcher waiting at once, at most.
const MAX_WAKEUPS: usize = 1024;

/// The logs of a run (`GET /requests/{uid}/logs`).
pub enum RunLogs {
    /// Read from its pods, through the API server.
    Live(Box<Logs>),
    /// Its Jobs are gone: the tails kept when it finished.
    Kept {
        /// The run's state as recorded.
        state: &'static str,
        /// The lines, each prefixed `<pod>/<container>: `.
        text: String,
    },
}

/// Errors of reading a run's logs.
#[derive(Debug, thiserror::Error)]
pub enum RunLogsError {
    /// Reading from the cluster failed, or was refused.
    #[error(transparent)]
    Logs(#[from] LogError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The kept tails as `GET /requests/{uid}/logs` shows logs: `options`'
/// container and tail applied, a note where earlier output was not kept
/// (unless `tail` asked for the last lines only).
fn render_kept(tails: &[LogTail], options: &LogOptions) -> Result<String, LogError> {
    if let Some(container) = &options.container {
        if !tails.is_empty() && !tails.iter().any(|t| &t.container == container) {
            let mut known: Vec<String> = Vec::new();
            for t in tails {
                if !known.contains(&t.container) {
                    known.push(t.container.clone());
                }
            }
            return Err(LogError::UnknownContainer {
                container: container.clone(),
                known,
            });
        }
    }
    let mut out = String::new();
    for t in tails {
        if options
            .container
            .as_ref()
            .is_some_and(|c| *c != t.container)
        {
            continue;
        }
        let prefix = format!("{}/{}: ", t.pod, t.container);
        let lines: Vec<&str> = t.text.lines().collect();
        let from = match options.tail {
            Some(n) => lines
                .len()
                .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX)),
            None => {
                if t.truncated {
                    out.push_str(&prefix);
                    out.push_str("[gitfaas] earlier lines were not kept (--log-archive-bytes bounds what is kept of each container)\n");
                }
                0
            }
        };
        for line in &lines[from..] {
            out.push_str(&prefix);
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Runs whose end is recorded at once.
const SETTLING: usize = 8;

impl Runs {
    /// Over `lifecycle`'s store, cluster and tasks.
    pub fn new(lifecycle: Arc<Lifecycle>) -> Arc<Self> {
        let (wake, wakeups) = tokio::sync::mpsc::channel(MAX_WAKEUPS);
        Arc::new(Runs {
            lifecycle,
            tracked: Arc::new(tokio::sync::Semaphore::new(MAX_TRACKED)),
            settling: tokio::sync::Semaphore::new(SETTLING),
            wake,
            wakeups: std::sync::Mutex::new(Some(wakeups)),
        })
    }

    /// Tells the dispatcher a slot of `topic` may have freed.
    pub fn wake(&self, topic: &str) {
        let _ = self.wake.try_send(topic.to_string());
    }

    /// The wakeups, for the one dispatcher (None after the first call).
    pub fn take_wakeups(&self) -> Option<tokio::sync::mpsc::Receiver<String>> {
        self.wakeups.lock().ok().and_then(|mut w| w.take())
    }

    /// Frees the slot of `request_uid` (a limited run that ended, or that
    /// applied nothing) and wakes the dispatcher. A failure is logged: the
    /// dispatch sweep frees what is left.
    pub async fn free_slot(&self, topic: &str, request_uid: &RequestUid) {
        match self.lifecycle.store.slot_release(topic, request_uid).await {
            Ok(_) => self.wake(topic),
            Err(e) => {
                tracing::info!(request_uid = request_uid.as_str(), error = %e, "freeing the run's slot failed; the dispatch sweep frees it")
            }
        }
    }

    /// [`Self::free_slot`] for an ended run, when its topic was limited.
    async fn free_slot_of(&self, record: &RunRecord) {
        if record.limited {
            self.free_slot(&record.topic, &record.request_uid).await;
        }
    }

    /// A page of the history.
    pub async fn page(&self, query: &RunQuery) -> Result<Page, StoreError> {
        Ok(self.lifecycle.store.runs(query).await?.into())
    }

    /// Follows a Running run until its Jobs finish, then records Succeeded
    /// or Failed. Beyond [`MAX_TRACKED`] runs at once it is not followed.
    pub fn track(self: &Arc<Self>, request_uid: RequestUid) {
        self.track_objects(request_uid, None);
    }

    /// [`Self::track`] for the run `record` just recorded Running: its
    /// objects are known, so the tracker does not read the record again.
    pub fn track_record(self: &Arc<Self>, record: &RunRecord) {
        if record.state == RunState::Running {
            self.track_objects(record.request_uid.clone(), Some(record.objects()));
        }
    }

    fn track_objects(self: &Arc<Self>, request_uid: RequestUid, objects: Option<Vec<ObjectRef>>) {
        let Ok(permit) = Arc::clone(&self.tracked).try_acquire_owned() else {
            tracing::debug!(
                request_uid = request_uid.as_str(),
                "too many runs followed; this one is settled when read"
            );
            return;
        };
        let this = Arc::clone(self);
        let name = TaskName::new(TRACK_TASK).about(request_uid.clone());
        let tracker = async move {
            let _permit = permit;
            if let Err(e) = this.follow(&request_uid, objects).await {
                tracing::info!(request_uid = request_uid.as_str(), error = %e, "following the run stopped");
            }
        };
        self.lifecycle
            .tasks
            .spawn_cancellable_unspanned(name, tracker);
    }

    /// A tracker's life: most of it in the wait, 10,000 of them at once.
    /// The wait holds the run's uid and objects alone; the record is read
    /// again when the Jobs end, and the first read and the end's work are
    /// boxed, so none of their state sits inline in every waiting tracker
    /// (a tracker's task was 16 KB, issue 28; `follow`'s future is now
    /// measured in `a_trackers_future_stays_small`).
    /// `known`: the objects of a run just recorded Running (a cancel
    /// meanwhile deletes its Jobs, which ends the wait, and the end reads
    /// the newest record).
    async fn follow(
        &self,
        request_uid: &RequestUid,
        known: Option<Vec<ObjectRef>>,
    ) -> Result<(), LifecycleError> {
        let objects = match known {
            Some(objects) => objects,
            None => match Box::pin(self.running_objects(request_uid)).await? {
                Some(objects) => objects,
                None => return Ok(()),
            },
        };
        let deadline = tokio::time::Instant::now() + TRACK_FOR;
        let finished = self
            .lifecycle
            .until_finished(request_uid, &objects, deadline)
            .await;
        Box::pin(self.end(request_uid, &objects, finished)).await
    }

    /// The objects of the run `request_uid` while it is Running.
    async fn running_objects(
        &self,
        request_uid: &RequestUid,
    ) -> Result<Option<Vec<ObjectRef>>, LifecycleError> {
        Ok(self
            .lifecycle
            .store
            .run(request_uid)
            .await?
            .filter(|record| record.state == RunState::Running)
            .map(|record| record.objects()))
    }

    /// What a tracker does once its run's Jobs ended (`finished`: the wait
    /// saw each finish or go) or its time is up.
    async fn end(
        &self,
        request_uid: &RequestUid,
        objects: &[ObjectRef],
        finished: bool,
    ) -> Result<(), LifecycleError> {
        let applier = &self.lifecycle.applier;
        let end = if finished {
            applier.jobs_end_after_wait(objects).await
        } else {
            applier.jobs_end(objects).await
        };
        if matches!(end, JobsEnd::Running) {
            // Past the deadline: settled when read.
            return Ok(());
        }
        // Runs ending together settle a few at a time.
        let _slot = self.settling.acquire().await;
        if let JobsEnd::Gone(succeeded) = end {
            // Finished, and deleted since (a TTL, or by hand, as a slot is
            // freed): their pods go with them, no log is left to keep.
            // Known from the watch: the run's view would ask the API server
            // for each object, and a queued run waits for this end. The end
            // is recorded on the newest record, read there.
            self.record_end(request_uid, succeeded).await?;
            return Ok(());
        }
        // The newest record: a callback attempt or a cancel may have been
        // written while the Jobs ran.
        let Some(record) = self.lifecycle.store.run(request_uid).await? else {
            return Ok(());
        };
        match end {
            JobsEnd::Finished(succeeded) => {
                // Before the end is recorded: whoever reads a final state
                // finds the logs kept.
                self.lifecycle.keep_outputs(&record, succeeded).await;
                self.record_end(request_uid, succeeded).await?
            }
            // Beyond the watched namespaces, or past the deadline: ask.
            JobsEnd::Unknown => {
                let view = self.lifecycle.view_of(&record).await?;
                self.settle(&view).await?;
            }
            JobsEnd::Gone(_) | JobsEnd::Running => {}
        }
        Ok(())
    }

    /// The logs of the run `record`: from its pods while its Jobs exist,
    /// from what was kept when it finished once they are gone.
    pub async fn logs(
        &self,
        record: &RunRecord,
        options: LogOptions,
    ) -> Result<RunLogs, RunLogsError> {
        let objects = record.objects();
        let logs = self
            .lifecycle
            .applier
            .logs(&record.request_uid, &objects, options.clone())
            .await?;
        if logs.status() != RunStatus::Gone {
            return Ok(RunLogs::Live(Box::new(logs)));
        }
        match self.lifecycle.store.logs(&record.request_uid).await? {
            Some(kept) => Ok(RunLogs::Kept {
                state: record.state.as_str(),
                text: render_kept(&kept.tails, &options)?,
            }),
            None => Ok(RunLogs::Live(Box::new(logs))),
        }
    }

    /// A request's view (`GET /requests/{uid}`); a run found finished
    /// that its record still calls Running is settled on the way.
    pub async fn view(
        &self,
        request_uid: &RequestUid,
    ) -> Result<Option<RunDetail>, LifecycleError> {
        let Some(view) = self.lifecycle.view(request_uid).await? else {
            return Ok(None);
        };
        if view.done && view.recorded == RunState::Running {
            if let Err(e) = self.settle(&view).await {
                tracing::info!(request_uid = request_uid.as_str(), error = %e, "recording the run's end failed; it is tried again when read");
            }
        }
        Ok(Some(view))
    }

    /// Records the final state a finished run's view shows, unless its
    /// record says it ended already (a cancel wins over a failure seen
    /// after it).
    pub async fn settle(&self, view: &RunDetail) -> Result<(), StoreError> {
        match view.succeeded {
            Some(succeeded) => self.record_end(&view.request_uid, succeeded).await,
            None => Ok(()),
        }
    }

    /// Records a run's end, unless its record says it ended already.
    async fn record_end(
        &self,
        request_uid: &RequestUid,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        let store = &self.lifecycle.store;
        let now = store.clock().now();
        // Read first for `limited` alone, which no write changes.
        let Some(limited) = store.run(request_uid).await?.map(|r| r.limited) else {
            return Ok(());
        };
        // Durable before the slot frees: the next run must not start while
        // a crash could bring this one back as Running.
        let durability = if limited {
            Durability::Now
        } else {
            Durability::Soon
        };
        // On the newest record: a callback attempt may have been recorded
        // while the Jobs ran, a cancel meanwhile.
        let updated = store
            .update_run(request_uid, durability, |record| {
                let Transition::To(state) = run::next(record.state, Event::JobsEnded { succeeded })
                else {
                    // It ended already (cancelled, or recorded by another replica).
                    return Decision::Keep;
                };
                record.state = state;
                record.finished_at = Some(now);
                Decision::Write
            })
            .await?;
        if let Some(Updated {
            record,
            written: true,
        }) = updated
        {
            self.free_slot_of(&record).await;
        }
        Ok(())
    }

    /// Cancels a run: deletes the Jobs it created (by uid, with their pods
    /// in the background; nothing else) and records it Cancelled. Its
    /// callback, waiting for those Jobs, then goes out with that outcome.
    /// Cancelling a cancelled run again deletes what may be left and
    /// answers the same. None for an unknown uid.
    pub async fn cancel(&self, request_uid: &RequestUid) -> Result<Option<Cancel>, LifecycleError> {
        let store = &self.lifecycle.store;
        let Some(mut record) = store.run(request_uid).await? else {
            return Ok(None);
        };
        // Pending: its apply is in flight, the record it writes next would
        // undo the cancel, and the Jobs it creates would be missed. Ended:
        // nothing to cancel.
        let Transition::To(cancelled) = run::next(record.state, Event::Cancel) else {
            return Ok(Some(Cancel::NotCancellable(record.state)));
        };
        if record.state == RunState::Queued {
            if !store.dequeue(&record.topic, request_uid).await? {
                // Dispatched meanwhile: its apply is in flight.
                return Ok(Some(Cancel::NotCancellable(RunState::Pending)));
            }
            let Some(record) = self.record_cancel(request_uid).await? else {
                return Ok(None);
            };
            if record.state != cancelled {
                return Ok(Some(Cancel::NotCancellable(record.state)));
            }
            tracing::info!(request_uid = request_uid.as_str(), "queued run cancelled");
            let view = self.lifecycle.view_of(&record).await?;
            return Ok(Some(Cancel::Cancelled(Box::new(view))));
        }
        if record.state == RunState::Running {
            // Finished meanwhile (its tracker has not recorded it yet)?
            let view = self.lifecycle.view_of(&record).await?;
            if view.done {
                self.settle(&view).await?;
                return Ok(Some(Cancel::NotCancellable(view.state)));
            }
        }
        let objects = record.objects();
        if record.state == RunState::Running {
            // What the pods wrote so far, before they go with their Jobs.
            self.lifecycle.keep_outputs(&record, false).await;
        }
        // Recorded first: the callback and the tracker wake when the Jobs
        // go, and must read Cancelled then. A delete that fails leaves a
        // run recorded Cancelled whose Jobs a second cancel deletes.
        if record.state != cancelled {
            let Some(recorded) = self.record_cancel(request_uid).await? else {
                return Ok(None);
            };
            if recorded.state != cancelled {
                // Its tracker recorded its end meanwhile: that stands.
                return Ok(Some(Cancel::NotCancellable(recorded.state)));
            }
            record = recorded;
        }
        let deleted = self
            .lifecycle
            .applier
            .delete_jobs_of(&objects, (LABEL_REQUEST_UID, request_uid.as_str()))
            .await?;
        self.free_slot_of(&record).await;
        tracing::info!(
            request_uid = request_uid.as_str(),
            jobs = deleted,
            "run cancelled"
        );
        let view = self.lifecycle.view_of(&record).await?;
        Ok(Some(Cancel::Cancelled(Box::new(view))))
    }

    /// Records a run Cancelled, on its newest record (not over an end its
    /// tracker recorded meanwhile); that record, None when it is gone.
    async fn record_cancel(
        &self,
        request_uid: &RequestUid,
    ) -> Result<Option<RunRecord>, StoreError> {
        let store = &self.lifecycle.store;
        let now = store.clock().now();
        let updated = store
            .update_run(request_uid, Durability::Now, |record| {
                match run::next(record.state, Event::Cancel) {
                    Transition::To(state) if state != record.state => {
                        record.state = state;
                        record.finished_at = Some(now);
                        Decision::Write
                    }
                    _ => Decision::Keep,
                }
            })
            .await?;
        Ok(updated.map(|u| u.record))
    }

    /// The tree of the pipeline run `request_uid` is part of: up its
    /// parents to the top-most still stored, then down every child. None
    /// for an unknown uid.
    pub async fn tree(&self, request_uid: &RequestUid) -> Result<Option<Tree>, StoreError> {
        let store = &self.lifecycle.store;
        let Some(mut root) = store.run(request_uid).await? else {
            return Ok(None);
        };
        for _ in 0..MAX_DEPTH {
            let Some(parent) = &root.parent else { break };
            match store.run(parent).await? {
                Some(p) => root = p,
                None => break,
            }
        }
        let mut count = 1;
        let mut truncated = false;
        let top = RunSummary::of(&root);
        let root = self.subtree(top, 0, &mut count, &mut truncated).await?;
        Ok(Some(Tree {
            error: false,
            root,
            truncated,
        }))
    }

    fn subtree<'a>(
        &'a self,
        run: RunSummary,
        depth: usize,
        count: &'a mut usize,
        truncated: &'a mut bool,
    ) -> futures::future::BoxFuture<'a, Result<TreeNode, StoreError>> {
        Box::pin(async move {
            let mut node = TreeNode {
                request_uid: run.request_uid.to_string(),
                topic: run.topic,
                state: run.state.as_str(),
                created_at: rfc3339(run.created_at),
                children: Vec::new(),
            };
            let children = self
                .lifecycle
                .store
                .children(&run.request_uid, crate::run::view::MAX_CHILDREN + 1)
                .await?;
            if children.len() > crate::run::view::MAX_CHILDREN {
                *truncated = true;
            }
            for child in children.into_iter().take(crate::run::view::MAX_CHILDREN) {
                if depth + 1 >= MAX_DEPTH || *count >= MAX_TREE {
                    *truncated = true;
                    break;
                }
                *count += 1;
                node.children
                    .push(self.subtree(child, depth + 1, count, truncated).await?);
            }
            Ok(node)
        })
    }

    /// Starts trackers for the runs a previous process left Running (the
    /// newest [`MAX_TRACKED`]).
    pub async fn resume(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut query = RunQuery {
            state: Some(RunState::Running),
            limit: 500,
            ..RunQuery::default()
        };
        let mut resumed = 0;
        loop {
            let page = self.lifecycle.store.runs(&query).await?;
            for run in page.runs {
                self.track(run.request_uid);
                resumed += 1;
            }
            match page.next {
                Some(next) if resumed < MAX_TRACKED => query.cursor = Some(next),
                _ => return Ok(resumed),
            }
        }
    }
}

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;
