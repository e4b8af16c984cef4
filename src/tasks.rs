//! Background work and its shutdown: every task the server spawns goes
//! through one [`Tasks`], which names it (for logs), tracks it, and at
//! shutdown either cancels it or waits for it, within one bound. This is
//! mini-redis' shutdown design (one signal cloned into every task, the
//! server waits for them) built on tokio-util's [`CancellationToken`] and
//! [`TaskTracker`].
//!
//! # Two kinds of task
//! - **Cancellable** ([`Tasks::spawn_cancellable`]): work that may stop at
//!   any `.await` without leaving anything half-done: a callback waiting
//!   for its Jobs, a wait. When shutdown begins its future is dropped at its
//!   next `.await`, and [`ShutdownReport::cancelled`] names it.
//! - **Drained** ([`Tasks::spawn_drained`]): work that must reach its end:
//!   a webhook's sync, a publish's apply and its rollback. Shutdown lets it
//!   run and waits for it, up to the bound; past the bound it is aborted and
//!   [`ShutdownReport::unfinished`] names it. It can watch [`Tasks::token`]
//!   to hurry (skip a retry's backoff, say), but nothing stops it early.
//!
//! # Loops
//! [`every`] is "do this every N until stopped"; [`Ticker`] is the same one
//! step at a time, for a loop whose pause changes (the sync loop's backoff).
//! Both look at the token only between steps: a step in progress (one sync,
//! one purge) finishes, and no new one begins. [`Tasks::spawn_every`] spawns
//! such a loop as a drained task, so shutdown waits for its last step.
//!
//! # Shutdown
//! [`Tasks::shutdown`] closes the tracker, cancels the token (cancellable
//! tasks end at their next `.await`, loops after their current step), waits
//! for every task up to the bound, aborts what is left and returns a
//! [`ShutdownReport`]; [`ShutdownReport::log`] says what did not finish.
//! The server calls it after actix has stopped accepting and drained its
//! requests, so a task spawned by a request in flight is already tracked.
//!
//! # Which runtime
//! Tasks run on the runtime the [`Tasks`] was made on (the server's main
//! one), never on the caller's. Each actix worker runs its own runtime,
//! and when the server stops it drops that runtime with every task spawned
//! on it: a `tokio::spawn` in a handler dies with its worker, drained or not.
//! The binary's main runtime is tokio's multi-thread one (`#[tokio::main]`),
//! so tasks run in parallel; a workflow still does its CPU-heavy part
//! (rendering, checking) before it hands a task what must not stop halfway.
//!
//! # Using it from a workflow (a publish's apply and rollback)
//! Spawn the work that must not stop halfway as one drained task and await
//! its handle. The work then runs on when its caller goes away (actix drops
//! a handler's future when a worker stops) and when shutdown begins;
//! the caller still gets its result when it is there to take it:
//!
//! ```ignore
//! let name = TaskName::new("publish").about(request_uid.as_ref());
//! let report = state
//!     .tasks
//!     .spawn_drained(name, async move { apply_or_roll_back(applier, plan).await })
//!     // A JoinError: it panicked, or it was aborted at the shutdown bound.
//!     .await?;
//! ```
//!
//! Dropping a returned [`JoinHandle`] detaches the task; it never stops it.
//! A retry that may go on for long (a rollback retried while the API server
//! is away) belongs in the drained task too, and should give up early once
//! [`Tasks::is_stopping`]: past the bound it is aborted anyway.
//! `drained_work_outlives_a_caller_that_went_away` in the tests below is
//! this pattern, runnable.
//!
//! # Not owned here
//! The store's group-commit flusher and the shared Job watches are not
//! spawned through this: each lives exactly as long as the store or the
//! applier that owns it (see `store` and `cluster::jobwatch`), because a drained task
//! may still write records and read Jobs while shutdown waits for it. A
//! `spawn_blocking` call inside an aborted task runs to its end on its
//! thread: abort stops futures, not threads.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// At most this many subjects (request uids) are listed in one log line.
const MAX_LOGGED_SUBJECTS: usize = 20;

/// What a task is, for logs and the shutdown report: a fixed name
/// (`"callback"`, `"webhook sync"`) and, optionally, what it works on (a
/// request uid). Never put a secret or a function uid in either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskName {
    name: &'static str,
    subject: Option<String>,
}

impl TaskName {
    /// A task called `name`.
    pub fn new(name: &'static str) -> Self {
        TaskName {
            name,
            subject: None,
        }
    }

    /// The same, working on `subject` (a request uid, say).
    pub fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The fixed name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What it works on, if given.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
}

impl From<&'static str> for TaskName {
    fn from(name: &'static str) -> Self {
        TaskName::new(name)
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Some(s) => write!(f, "{} {s}", self.name),
            None => f.write_str(self.name),
        }
    }
}

/// The background work of one server. Clones share it: the server, its
/// HTTP state and its lifecycle hold one each.
#[derive(Clone)]
pub struct Tasks {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where tasks run: the runtime this was made on (None outside any,
    /// then the caller's).
    runtime: Option<tokio::runtime::Handle>,
    /// Cancelled once, when shutdown begins.
    token: CancellationToken,
    /// Every task spawned here; closed when shutdown begins.
    tracker: TaskTracker,
    /// Who is running, for the report. std Mutex: inserts and removes
    /// only, never held across an `.await`.
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// By id, so the report lists tasks in the order they were spawned.
    running: BTreeMap<u64, Running>,
    /// Cancellable tasks that shutdown stopped before their end.
    cancelled: Vec<TaskName>,
}

struct Running {
    name: TaskName,
    /// Set just after the spawn; None only for that moment.
    abort: Option<AbortHandle>,
}

impl Inner {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic elsewhere while holding the lock left consistent maps
        // behind (single inserts and removes): go on with them.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A task's place in the registry, removed when the task ends, however it
/// ends (returned, cancelled, aborted, panicked).
struct Registered {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.inner.registry().running.remove(&self.id);
    }
}

/// What [`Tasks::shutdown`] found.
#[derive(Debug, Clone, Default)]
pub struct ShutdownReport {
    /// Cancellable tasks stopped before their end, in the order they ended.
    pub cancelled: Vec<TaskName>,
    /// Tasks still running when the bound passed, in the order they were
    /// spawned; they were aborted.
    pub unfinished: Vec<TaskName>,
    /// How long shutdown waited for the tasks.
    pub waited: Duration,
}

impl ShutdownReport {
    /// The cancelled tasks called `name`.
    pub fn cancelled_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TaskName> {
        self.cancelled.iter().filter(move |t| t.name == name)
    }

    /// Logs one line per name: a warning for what did not finish within the
    /// bound, an info for what was cancelled.
    pub fn log(&self) {
        for (name, subjects, count) in grouped(&self.unfinished) {
            tracing::warn!(
                task = name,
                count,
                subjects = ?subjects,
                "background work did not finish within the shutdown timeout; aborted"
            );
        }
        for (name, subjects, count) in grouped(&self.cancelled) {
            tracing::info!(task = name, count, subjects = ?subjects, "cancelled at shutdown");
        }
        tracing::info!(
            waited = ?self.waited,
            cancelled = self.cancelled.len(),
            unfinished = self.unfinished.len(),
            "background tasks stopped"
        );
    }
}

/// Tasks grouped by name, in first-seen order: the name, its first
/// [`MAX_LOGGED_SUBJECTS`] subjects and how many there are.
fn grouped(tasks: &[TaskName]) -> Vec<(&'static str, Vec<&str>, usize)> {
    let mut groups: Vec<(&'static str, Vec<&str>, usize)> = Vec::new();
    for t in tasks {
        let i = match groups.iter().position(|g| g.0 == t.name) {
            Some(i) => i,
            None => {
                groups.push((t.name, Vec::new(), 0));
                groups.len() - 1
            }
        };
        let group = &mut groups[i];
        group.2 += 1;
        if let Some(s) = t.subject() {
            if group.1.len() < MAX_LOGGED_SUBJECTS {
                group.1.push(s);
            }
        }
    }
    groups
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    /// Nothing running, not stopping; tasks will run on the current
    /// runtime, whoever spawns them (see the module doc).
    pub fn new() -> Self {
        Tasks {
            inner: Arc::new(Inner {
                runtime: tokio::runtime::Handle::try_current().ok(),
                token: CancellationToken::new(),
                tracker: TaskTracker::new(),
                registry: Mutex::default(),
            }),
        }
    }

    /// A token cancelled when shutdown begins, for a task to watch (a
    /// drained task that wants to hurry, a loop). It is a child: cancelling
    /// it stops nobody else.
    pub fn token(&self) -> CancellationToken {
        self.inner.token.child_token()
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// How many tasks are running.
    pub fn running(&self) -> usize {
        self.inner.registry().running.len()
    }

    /// Spawns a task that shutdown cancels: its future is dropped at its
    /// next `.await` once shutdown begins (at once when it has already
    /// begun). The handle yields None when it was cancelled; dropping the
    /// handle detaches the task.
    pub fn spawn_cancellable<F>(
        &self,
        name: impl Into<TaskName>,
        task: F,
    ) -> JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let name = name.into();
        let span = tracing::info_span!("task", task = %name);
        self.spawn_cancellable_in(name, span, task)
    }

    /// [`Self::spawn_cancellable`] for a task that runs by the thousand (a
    /// run's tracker, one per run in flight): no span of its own, which
    /// cost about 1 KB for as long as the task lived (the subscriber's
    /// record of it and its formatted name); its log lines name their run
    /// themselves.
    pub fn spawn_cancellable_unspanned<F>(
        &self,
        name: impl Into<TaskName>,
        task: F,
    ) -> JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_cancellable_in(name.into(), tracing::Span::none(), task)
    }

    fn spawn_cancellable_in<F>(
        &self,
        name: TaskName,
        span: tracing::Span,
        task: F,
    ) -> JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let registered = self.register(name.clone());
        let id = registered.id;
        let token = self.inner.token.clone();
        // Boxed: an async block keeps a captured future in its own slot
        // beside the future it was moved into, so `task` inline took twice
        // its size for as long as it ran (a run's tracker, 10,000 at once).
        let task = Box::pin(task);
        let handle = self.spawn_tracked(
            async move {
                let out = token.run_until_cancelled(task).await;
                if out.is_none() {
                    tracing::debug!("cancelled at shutdown");
                    registered.inner.registry().cancelled.push(name);
                }
                drop(registered);
                out
            }
            .instrument(span),
        );
        self.set_abort(id, &handle);
        handle
    }

    /// Spawns a task that runs to its end: shutdown waits for it, up to its
    /// bound, and aborts it past that. Spawned after shutdown has begun it
    /// still runs, and is waited for while the wait lasts. Dropping the
    /// handle detaches the task; it never stops it.
    pub fn spawn_drained<F>(&self, name: impl Into<TaskName>, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let name = name.into();
        let span = tracing::info_span!("task", task = %name);
        let registered = self.register(name);
        let id = registered.id;
        // Boxed, as in `spawn_cancellable`.
        let task = Box::pin(task);
        let handle = self.spawn_tracked(
            async move {
                let out = task.await;
                drop(registered);
                out
            }
            .instrument(span),
        );
        self.set_abort(id, &handle);
        handle
    }

    /// Spawns [`every`]`(period, token, step)`: `step` runs every `period`
    /// until shutdown, which waits for the step in progress (a drained task).
    pub fn spawn_every<F, Fut>(
        &self,
        name: impl Into<TaskName>,
        period: Duration,
        step: F,
    ) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_drained(name, every(period, self.token(), step))
    }

    /// Stops the background work: no task is waited for beyond `bound`.
    /// Cancels the token, waits until every task has ended or `bound` has
    /// passed, aborts what is still running and reports both.
    pub async fn shutdown(&self, bound: Duration) -> ShutdownReport {
        let started = tokio::time::Instant::now();
        self.inner.tracker.close();
        self.inner.token.cancel();
        let ended = tokio::time::timeout(bound, self.inner.tracker.wait())
            .await
            .is_ok();
        let mut registry = self.inner.registry();
        let unfinished = if ended {
            Vec::new()
        } else {
            registry
                .running
                .values()
                .map(|r| {
                    if let Some(abort) = &r.abort {
                        abort.abort();
                    }
                    r.name.clone()
                })
                .collect()
        };
        ShutdownReport {
            cancelled: std::mem::take(&mut registry.cancelled),
            unfinished,
            waited: started.elapsed(),
        }
    }

    fn spawn_tracked<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.inner.runtime {
            Some(runtime) => self.inner.tracker.spawn_on(task, runtime),
            None => self.inner.tracker.spawn(task),
        }
    }

    fn register(&self, name: TaskName) -> Registered {
        let mut registry = self.inner.registry();
        let id = registry.next_id;
        registry.next_id += 1;
        registry.running.insert(id, Running { name, abort: None });
        Registered {
            inner: Arc::clone(&self.inner),
            id,
        }
    }

    fn set_abort<T>(&self, id: u64, handle: &JoinHandle<T>) {
        // Gone already when the task ended before this line: nothing to abort.
        if let Some(r) = self.inner.registry().running.get_mut(&id) {
            r.abort = Some(handle.abort_handle());
        }
    }
}

/// "Every N until stopped", one step at a time:
/// `while ticker.tick().await { step().await }`. The pause runs from the
/// end of one step to the start of the next, so slow steps never pile up.
pub struct Ticker {
    period: Duration,
    next: Option<Duration>,
    token: CancellationToken,
}

impl Ticker {
    /// Ticks every `period` (the first after one period) until `token` is cancelled.
    pub fn new(period: Duration, token: CancellationToken) -> Self {
        Ticker {
            period,
            next: None,
            token,
        }
    }

    /// Waits for the next tick: true when it is time for a step, false as
    /// soon as the token is cancelled (at once if it already is).
    pub async fn tick(&mut self) -> bool {
        let pause = self.next.take().unwrap_or(self.period);
        tokio::select! {
            // Stopping wins over a pause that ends at the same moment.
            biased;
            () = self.token.cancelled() => false,
            () = tokio::time::sleep(pause) => true,
        }
    }

    /// The next tick comes `pause` after now's step instead of the period,
    /// once: a retry sooner (or later) than usual.
    pub fn next_in(&mut self, pause: Duration) {
        self.next = Some(pause);
    }
}

/// Runs `step` every `period` until `token` is cancelled: the first run
/// after one period, each next one a period after the previous one ended.
/// A step in progress when the token is cancelled finishes; no new one begins.
pub async fn every<F, Fut>(period: Duration, token: CancellationToken, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = Ticker::new(period, token);
    while ticker.tick().await {
        step().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn counter() -> (Arc<AtomicUsize>, impl FnMut() -> std::future::Ready<()>) {
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        (count, move || {
            c.fetch_add(1, Ordering::SeqCst);
            std::future::ready(())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_runs_every_period_and_stops_at_shutdown() {
        let tasks = Tasks::new();
        let (count, step) = counter();
        tasks.spawn_every("loop", SECOND, step);
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(count.load(Ordering::SeqCst), 3, "a step after 1, 2 and 3 s");
        let report = tasks.shutdown(10 * SECOND).await;
        assert!(report.unfinished.is_empty(), "{report:?}");
        assert_eq!(report.waited, Duration::ZERO, "the loop stopped at once");
        assert_eq!(tasks.running(), 0);
        tokio::time::sleep(10 * SECOND).await;
        assert_eq!(count.load(Ordering::SeqCst), 3, "no step after shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_step_in_progress_finishes_and_no_other_begins() {
        let tasks = Tasks::new();
        let (started, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s, d) = (Arc::clone(&started), Arc::clone(&done));
        tasks.spawn_every("slow loop", SECOND, move || {
            let (s, d) = (Arc::clone(&s), Arc::clone(&d));
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(3 * SECOND).await;
                d.fetch_add(1, Ordering::SeqCst);
            }
        });
        // The first step runs from 1 s to 4 s.
        tokio::time::sleep(2 * SECOND).await;
        let report = tasks.shutdown(10 * SECOND).await;
        assert!(report.unfinished.is_empty(), "{report:?}");
        assert_eq!(report.waited, 2 * SECOND, "waited for the step's end");
        assert_eq!(
            (started.load(Ordering::SeqCst), done.load(Ordering::SeqCst)),
            (1, 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancellable_task_is_dropped_at_shutdown_and_reported() {
        let tasks = Tasks::new();
        let reached_end = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&reached_end);
        let handle = tasks.spawn_cancellable(TaskName::new("callback").about("r-1"), async move {
            tokio::time::sleep(24 * 3600 * SECOND).await;
            r.store(true, Ordering::SeqCst);
        });
        let quick = tasks.spawn_cancellable("quick", async { 7 });
        assert_eq!(
            quick.await.ok(),
            Some(Some(7)),
            "a finished task yields its output"
        );
        let report = tasks.shutdown(10 * SECOND).await;
        assert_eq!(report.waited, Duration::ZERO, "cancelled at once");
        assert_eq!(report.cancelled, [TaskName::new("callback").about("r-1")]);
        assert_eq!(report.cancelled_named("callback").count(), 1);
        assert!(report.unfinished.is_empty(), "{report:?}");
        assert_eq!(
            handle.await.ok(),
            Some(None),
            "a cancelled task yields None"
        );
        assert!(!reached_end.load(Ordering::SeqCst));
        let late = tasks.spawn_cancellable("late", async { 1 });
        assert_eq!(
            late.await.ok(),
            Some(None),
            "after shutdown: cancelled at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_drained_task_finishes_before_shutdown_returns() {
        let tasks = Tasks::new();
        let finished = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&finished);
        let token = tasks.token();
        tasks.spawn_drained("apply", async move {
            tokio::time::sleep(5 * SECOND).await;
            assert!(token.is_cancelled(), "it can see that shutdown began");
            f.store(true, Ordering::SeqCst);
        });
        let report = tasks.shutdown(30 * SECOND).await;
        assert!(finished.load(Ordering::SeqCst), "shutdown returned first");
        assert_eq!(report.waited, 5 * SECOND);
        assert!(
            report.unfinished.is_empty() && report.cancelled.is_empty(),
            "{report:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_no_longer_than_its_bound_and_aborts_what_is_left() {
        let tasks = Tasks::new();
        let finished = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&finished);
        let handle = tasks.spawn_drained(TaskName::new("rollback").about("r-2"), async move {
            tokio::time::sleep(3600 * SECOND).await;
            f.store(true, Ordering::SeqCst);
        });
        tasks.spawn_drained("quick", async {});
        let report = tasks.shutdown(2 * SECOND).await;
        assert_eq!(report.waited, 2 * SECOND);
        assert_eq!(report.unfinished, [TaskName::new("rollback").about("r-2")]);
        assert!(handle.await.is_err_and(|e| e.is_cancelled()), "aborted");
        tokio::time::sleep(7200 * SECOND).await;
        assert!(!finished.load(Ordering::SeqCst));
        assert_eq!(tasks.running(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn drained_work_outlives_a_caller_that_went_away() {
        // The publish pattern: a handler awaits the drained apply; the
        // client hangs up (the handler's future is dropped) mid-apply.
        let tasks = Tasks::new();
        let applied = Arc::new(AtomicBool::new(false));
        let handler = {
            let (tasks, applied) = (tasks.clone(), Arc::clone(&applied));
            async move {
                tasks
                    .spawn_drained(TaskName::new("publish").about("r-3"), async move {
                        tokio::time::sleep(2 * SECOND).await;
                        applied.store(true, Ordering::SeqCst);
                        "report"
                    })
                    .await
            }
        };
        let gone = tokio::time::timeout(SECOND, handler).await;
        assert!(gone.is_err(), "the caller went away before the end");
        assert_eq!(tasks.running(), 1, "the apply goes on");
        let report = tasks.shutdown(10 * SECOND).await;
        assert!(applied.load(Ordering::SeqCst));
        assert!(report.unfinished.is_empty(), "{report:?}");
    }

    #[tokio::test]
    async fn a_task_outlives_the_runtime_that_spawned_it() {
        // As an actix worker does: a runtime of its own, dropped at shutdown.
        let tasks = Tasks::new();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let handle = std::thread::spawn({
            let tasks = tasks.clone();
            move || {
                let worker = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                // Inside it, a bare tokio::spawn would land on it.
                let _inside = worker.enter();
                tasks.spawn_drained("webhook sync", async move { wait.await.is_ok() })
            }
        })
        .join()
        .expect("worker thread");
        assert_eq!(tasks.running(), 1, "still running after its worker is gone");
        go.send(()).expect("the task is still there");
        assert!(handle.await.expect("joined"));
        assert!(tasks.shutdown(SECOND).await.unfinished.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticker_retries_sooner_once_then_keeps_its_period() {
        let token = CancellationToken::new();
        let mut ticker = Ticker::new(10 * SECOND, token.clone());
        let start = tokio::time::Instant::now();
        ticker.next_in(SECOND);
        assert!(ticker.tick().await);
        assert_eq!(start.elapsed(), SECOND);
        assert!(ticker.tick().await);
        assert_eq!(start.elapsed(), 11 * SECOND);
        token.cancel();
        assert!(!ticker.tick().await, "stopped");
        assert_eq!(start.elapsed(), 11 * SECOND, "at once");
    }

    #[test]
    fn the_report_groups_tasks_by_name_with_a_bounded_list_of_subjects() {
        let mut tasks: Vec<TaskName> = (0..30)
            .map(|i| TaskName::new("callback").about(format!("r-{i}")))
            .collect();
        tasks.push(TaskName::new("webhook sync"));
        let groups = grouped(&tasks);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0, "callback");
        assert_eq!(groups[0].1.len(), MAX_LOGGED_SUBJECTS);
        assert_eq!(groups[0].2, 30);
        assert_eq!(groups[1], ("webhook sync", vec![], 1));
        assert_eq!(tasks[0].to_string(), "callback r-0");
        assert_eq!(tasks[30].to_string(), "webhook sync");
    }
}
