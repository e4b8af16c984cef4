//! One shared watch of gitfaas' Jobs per namespace, for everything that
//! waits on them, and the index of who waits on which Job.
//!
//! A `?wait=` publish used to open a watch of its own: one HTTP/1.1
//! connection to the API server (kube-client speaks HTTP/1.1) held for as
//! long as it waited, so a thousand waiting requests were a thousand
//! connections. Here every waiter of a namespace shares one watch,
//! kube-runtime's watcher (re-lists on expiry, backs off on errors) feeding
//! a store of what waiters read of each Job ([`SeenJob`]); a flag tells
//! waiters that its first list is in. (kube-runtime's reflector kept whole
//! Jobs, and its own `Store::wait_until_ready` wakes only the last of
//! several concurrent waiters: it polls one oneshot receiver, which keeps
//! one waker.) At most [`MAX_NAMESPACES`] namespaces are watched; a wait
//! beyond that is told so and the caller falls back to a watch of its own.
//! The watch tasks stop when this is dropped.
//!
//! A Job event wakes only what waits on that Job: a waiter subscribes to
//! the names of its Jobs ([`NamespaceWatch::subscribe`]) and the watch wakes
//! the subscribers of the one Job each event is about, and every subscriber
//! when a (re)list ends (a relist may have changed or dropped any Job).
//! Waking every waiter of the namespace on every event, as a single
//! namespace-wide counter did, made each event cost the runs in flight and
//! the total quadratic (issue 28): 10,000 running Jobs were 10,000 wake-ups
//! and scans per event.
//!
//! They are not tasks of `tasks`, on purpose: a watch is a cache (of
//! the applier, like its discovery cache) and never work to finish, it is
//! started lazily by whoever waits first (the CLI and tests too, with no
//! server), and a drained task that waits on Jobs while shutdown waits for
//! it should still share it. It lives exactly as long as its users: the
//! applier and every waiter hold it, and the last of them to go aborts it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use serde::Deserialize;

/// Namespaces watched at once, at most.
pub const MAX_NAMESPACES: usize = 256;

/// What is watched: the Jobs gitfaas applied.
const SELECTOR: &str = "app.kubernetes.io/managed-by=gitfaas";

/// A Job as the watch reads it off the wire: its name, namespace and
/// resource version, and its conditions' type and status; serde skips the
/// rest of the JSON without building it. A `k8s_openapi` `Job` built every
/// field of every event (its managed fields most of them), tens of
/// allocations per event, for the three the waiters read; a Job is an
/// event at its creation and at each status change, so that was the bulk
/// of the watch's CPU per run.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct WatchedJob {
    #[serde(deserialize_with = "slim_metadata")]
    metadata: ObjectMeta,
    #[serde(default)]
    status: Option<WatchedStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct WatchedStatus {
    #[serde(default)]
    conditions: Option<Vec<WatchedCondition>>,
}

#[derive(Clone, Debug, Deserialize)]
struct WatchedCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

/// The metadata fields the watch and its waiters use.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimMetadata {
    name: Option<String>,
    namespace: Option<String>,
    resource_version: Option<String>,
}

fn slim_metadata<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = SlimMetadata::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        resource_version: m.resource_version,
        ..ObjectMeta::default()
    })
}

impl WatchedJob {
    fn condition_true(&self, kind: &str) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
    }
}

impl kube::Resource for WatchedJob {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Job".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "batch".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "jobs".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What the watch keeps of a Job: what its waiters read. The watch keeps
/// one per Job in flight, 10,000 at once: kube's reflector kept the whole
/// `Job` (2.6 KB each even with its spec and labels cut, the struct's own
/// size), this is a few dozen bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenJob {
    /// Its resource version: a followed log wakes when it changes.
    pub resource_version: Option<String>,
    /// Its `Complete` condition is true.
    pub complete: bool,
    /// Its `Failed` condition is true.
    pub failed: bool,
}

impl SeenJob {
    fn of(job: &WatchedJob) -> Self {
        SeenJob {
            resource_version: job.metadata.resource_version.clone(),
            complete: job.condition_true("Complete"),
            failed: job.condition_true("Failed"),
        }
    }

    /// Whether it finished, either way.
    pub fn finished(&self) -> bool {
        self.complete || self.failed
    }
}

/// The Jobs of one namespace as the watch last saw them, by name. A relist
/// is collected aside and swapped in at its end, as kube's reflector does,
/// so that no one reads a half-listed namespace. Bounded by the Jobs
/// gitfaas applied there that exist (the watch's label selector).
#[derive(Default)]
struct Seen {
    jobs: HashMap<String, SeenJob>,
    relisting: Option<HashMap<String, SeenJob>>,
}

impl Seen {
    fn apply(&mut self, event: &watcher::Event<WatchedJob>) {
        let name = |job: &WatchedJob| job.metadata.name.clone();
        match event {
            watcher::Event::Apply(job) => {
                if let Some(n) = name(job) {
                    self.jobs.insert(n, SeenJob::of(job));
                }
            }
            watcher::Event::Delete(job) => {
                if let Some(n) = job.metadata.name.as_deref() {
                    self.jobs.remove(n);
                }
            }
            watcher::Event::Init => self.relisting = Some(HashMap::new()),
            watcher::Event::InitApply(job) => {
                if let (Some(relisting), Some(n)) = (self.relisting.as_mut(), name(job)) {
                    relisting.insert(n, SeenJob::of(job));
                }
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = self.relisting.take() {
                    self.jobs = relisted;
                }
            }
        }
    }
}

/// The [`Seen`] Jobs shared by the watch task and the waiters.
type SeenStore = Arc<std::sync::RwLock<Seen>>;

/// One namespace's watch.
pub struct NamespaceWatch {
    seen: SeenStore,
    waiters: Arc<Waiters>,
    listed: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Who waits on which Job of a namespace: for each Job name waited on, the
/// sender its subscribers' receivers listen to and how many subscriptions
/// hold it. An entry lives from its first subscription to the drop of its
/// last ([`JobChanges`]), so the map is bounded by the waiters themselves:
/// at most one entry per Job name a live waiter waits on, whatever the
/// number of Jobs the namespace has or the watch shows.
struct Waiters {
    // std Mutex: inserts, removals and wakes only, never held across .await.
    state: Mutex<WaitersState>,
}

struct WaitersState {
    by_job: HashMap<String, Waited>,
    /// The watch task has stopped: no entry is kept (their senders dropped,
    /// which ends every wait) and none is made.
    stopped: bool,
}

struct Waited {
    tx: tokio::sync::watch::Sender<()>,
    subscriptions: usize,
}

impl Waiters {
    fn new() -> Arc<Self> {
        Arc::new(Waiters {
            state: Mutex::new(WaitersState {
                by_job: HashMap::new(),
                stopped: false,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WaitersState> {
        // Nothing panics while holding it; a poisoned map is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes whoever `event` concerns. Called after the event was applied
    /// to the store, so a woken waiter reads the new state.
    fn wake(&self, event: &watcher::Event<WatchedJob>) {
        match event {
            watcher::Event::Apply(job) | watcher::Event::Delete(job) => {
                let Some(name) = job.metadata.name.as_deref() else {
                    return;
                };
                if let Some(waited) = self.state().by_job.get(name) {
                    waited.tx.send_replace(());
                }
            }
            // The store swaps in the relisted Jobs at its end: any of them
            // may have changed or gone meanwhile.
            watcher::Event::InitDone => {
                for waited in self.state().by_job.values() {
                    waited.tx.send_replace(());
                }
            }
            // Collected aside until InitDone: the store has not
            // changed yet.
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    /// The watch task stopped: every subscription's wait ends (its sender
    /// is dropped), and later ones end at once.
    fn stop(&self) {
        let mut state = self.state();
        state.stopped = true;
        state.by_job.clear();
    }

    fn subscribe(&self, name: &str) -> tokio::sync::watch::Receiver<()> {
        let mut state = self.state();
        if state.stopped {
            // A receiver whose sender is gone: its first wait says so.
            return tokio::sync::watch::channel(()).1;
        }
        let waited = state
            .by_job
            .entry(name.to_string())
            .or_insert_with(|| Waited {
                tx: tokio::sync::watch::channel(()).0,
                subscriptions: 0,
            });
        waited.subscriptions += 1;
        waited.tx.subscribe()
    }

    fn unsubscribe(&self, name: &str) {
        let mut state = self.state();
        if let Some(waited) = state.by_job.get_mut(name) {
            waited.subscriptions -= 1;
            if waited.subscriptions == 0 {
                state.by_job.remove(name);
            }
        }
    }

    fn len(&self) -> usize {
        self.state().by_job.len()
    }
}

/// Stops the [`Waiters`] when dropped: held by the watch task, whose end
/// (abort, or the runtime shutting down) ends every wait on it.
struct StopOnDrop(Arc<Waiters>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// A subscription to the changes of some Jobs of one namespace: woken by
/// an event on one of them, or by the end of a (re)list; never by another
/// Job's event. Dropping it unsubscribes (the last subscription of a Job
/// removes its entry).
pub struct JobChanges {
    waiters: Arc<Waiters>,
    jobs: Vec<(String, tokio::sync::watch::Receiver<()>)>,
}

/// The watch task stopped (gitfaas is shutting down).
#[derive(Debug)]
pub struct Stopped;

impl JobChanges {
    /// Waits until one of the Jobs changed since the subscription or the
    /// last return: at once when a change came meanwhile (none is lost
    /// between a look at the store and this wait). Pending forever with no
    /// Job.
    pub async fn changed(&mut self) -> Result<(), Stopped> {
        let result = match self.jobs.as_mut_slice() {
            [] => std::future::pending().await,
            [(_, rx)] => rx.changed().await,
            jobs => {
                futures::future::select_all(jobs.iter_mut().map(|(_, rx)| Box::pin(rx.changed())))
                    .await
                    .0
            }
        };
        if result.is_err() {
            return Err(Stopped);
        }
        // Several of them changed at once: one wake for all (the waiter
        // reads every one of its Jobs).
        for (_, rx) in &mut self.jobs {
            rx.mark_unchanged();
        }
        Ok(())
    }
}

impl Drop for JobChanges {
    fn drop(&mut self) {
        for (name, _) in &self.jobs {
            self.waiters.unsubscribe(name);
        }
    }
}

impl Drop for NamespaceWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NamespaceWatch {
    /// The Job `name` as last seen, if the watch has it.
    pub fn job(&self, name: &str) -> Option<SeenJob> {
        // Nothing panics while holding it; a poisoned map is still whole.
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        seen.jobs.get(name).cloned()
    }

    /// Waits until the first list is in the store; false if the watch
    /// stopped first.
    pub async fn ready(&self) -> bool {
        self.listed.clone().wait_for(|listed| *listed).await.is_ok()
    }

    /// Subscribes to the changes of the Jobs `names`: see [`JobChanges`].
    /// Subscribe before looking at the store, so that no change after the
    /// look is missed.
    pub fn subscribe<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> JobChanges {
        JobChanges {
            waiters: Arc::clone(&self.waiters),
            jobs: names
                .into_iter()
                .map(|name| (name.to_string(), self.waiters.subscribe(name)))
                .collect(),
        }
    }

    /// How many Jobs have a subscriber.
    pub fn waited_on(&self) -> usize {
        self.waiters.len()
    }
}

/// A watch fed by hand, for the unit tests of its waiters: its first list
/// is in; events given to [`Hand`] reach the store and wake the waiters as
/// the watch task's would. Dropping the hand stops the watch.
#[cfg(test)]
pub(crate) fn by_hand() -> (NamespaceWatch, Hand) {
    let seen = SeenStore::default();
    let waiters = Waiters::new();
    let (listed_tx, listed) = tokio::sync::watch::channel(true);
    // Listed for good: nothing will say otherwise.
    std::mem::forget(listed_tx);
    let watch = NamespaceWatch {
        seen: Arc::clone(&seen),
        waiters: Arc::clone(&waiters),
        listed,
        task: tokio::spawn(async {}),
    };
    let hand = Hand {
        seen,
        stop: StopOnDrop(waiters),
    };
    (watch, hand)
}

/// The feeding end of [`by_hand`].
#[cfg(test)]
pub(crate) struct Hand {
    seen: SeenStore,
    stop: StopOnDrop,
}

#[cfg(test)]
impl Hand {
    /// One watcher event, as the watch task handles it.
    pub(crate) fn event(&mut self, event: watcher::Event<WatchedJob>) {
        self.seen
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply(&event);
        self.stop.0.wake(&event);
    }

    /// A relist that finds `jobs`: Init, an InitApply each, InitDone.
    pub(crate) fn relist(&mut self, jobs: Vec<WatchedJob>) {
        self.event(watcher::Event::Init);
        for job in jobs {
            self.event(watcher::Event::InitApply(job));
        }
        self.event(watcher::Event::InitDone);
    }
}

#[cfg(test)]
impl JobWatches {
    /// Shares `watch` (one [`by_hand`]) as the watch of `namespace`.
    pub(crate) fn insert(&self, namespace: &str, watch: NamespaceWatch) {
        if let Ok(mut watches) = self.watches.lock() {
            watches.insert(namespace.to_string(), Arc::new(watch));
        }
    }
}

/// The shared watches, by namespace.
pub struct JobWatches {
    client: kube::Client,
    // std Mutex: lookups and inserts only, never held across .await.
    watches: Mutex<HashMap<String, Arc<NamespaceWatch>>>,
}

impl JobWatches {
    /// Watches through `client` (one without a read timeout: a watch is
    /// quiet for minutes).
    pub fn new(client: kube::Client) -> Self {
        JobWatches {
            client,
            watches: Mutex::new(HashMap::new()),
        }
    }

    /// The watch of `namespace`, started on first use; None when
    /// [`MAX_NAMESPACES`] are watched already. Must be called on a runtime.
    pub fn namespace(&self, namespace: &str) -> Option<Arc<NamespaceWatch>> {
        let mut watches = self.watches.lock().ok()?;
        if let Some(w) = watches.get(namespace) {
            return Some(Arc::clone(w));
        }
        if watches.len() >= MAX_NAMESPACES {
            return None;
        }
        let watch = Arc::new(self.start(namespace, SELECTOR));
        watches.insert(namespace.to_string(), Arc::clone(&watch));
        Some(watch)
    }

    /// A watch of the Jobs of `namespace` that match `selector`, not shared
    /// and not counted against [`MAX_NAMESPACES`]: for one wait beyond the
    /// bound; it stops when dropped.
    pub fn alone(&self, namespace: &str, selector: &str) -> NamespaceWatch {
        self.start(namespace, selector)
    }

    fn start(&self, namespace: &str, selector: &str) -> NamespaceWatch {
        let api: Api<WatchedJob> = Api::namespaced(self.client.clone(), namespace);
        let seen = SeenStore::default();
        let waiters = Waiters::new();
        let stop = StopOnDrop(Arc::clone(&waiters));
        let (listed_tx, listed) = tokio::sync::watch::channel(false);
        let stream = watcher(api, watcher::Config::default().labels(selector)).default_backoff();
        let ns = namespace.to_string();
        let store = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            // Dropped with the task, however it ends: every wait ends.
            let stop = stop;
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(event) => {
                        // The store first: a woken waiter reads the new state.
                        store
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .apply(&event);
                        if matches!(event, watcher::Event::InitDone) {
                            listed_tx.send_replace(true);
                        }
                        stop.0.wake(&event);
                    }
                    // Backed off and retried by the watcher itself.
                    Err(e) => tracing::debug!(namespace = ns, error = %e, "Job watch error"),
                }
            }
        });
        NamespaceWatch {
            seen,
            waiters,
            listed,
            task,
        }
    }

    /// The client the watches go through (no read timeout), for other
    /// long-running reads: followed logs (`cluster::logs`).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// How many namespaces are watched.
    pub fn len(&self) -> usize {
        self.watches.lock().map(|w| w.len()).unwrap_or(0)
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use serde_json::json;

    fn job(name: &str) -> WatchedJob {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"}}))
            .expect("a Job")
    }

    /// Whether `changes` has a change waiting, without waiting for one.
    fn woken(changes: &mut JobChanges) -> bool {
        match changes.changed().now_or_never() {
            Some(result) => result.is_ok(),
            None => false,
        }
    }

    #[tokio::test]
    async fn the_store_keeps_of_a_job_what_its_waiters_read_and_swaps_a_relist_in_at_its_end() {
        let full: WatchedJob = serde_json::from_value(json!({
            "metadata": {
                "name": "j", "namespace": "ns", "resourceVersion": "7", "uid": "u",
                "labels": {"gitfaas.io/request-uid": "r-1"},
                "managedFields": [{"manager": "gitfaas"}]
            },
            "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}},
            "status": {
                "active": 1,
                "conditions": [{"type": "Complete", "status": "True", "message": "a long message"}]
            }
        }))
        .expect("a Job");
        let (watch, mut hand) = by_hand();
        hand.event(watcher::Event::Apply(full));
        let seen = watch.job("j").expect("seen");
        assert_eq!(
            seen,
            SeenJob {
                resource_version: Some("7".into()),
                complete: true,
                failed: false
            }
        );
        assert!(seen.finished());
        hand.event(watcher::Event::Apply(job("k")));
        assert!(watch.job("k").is_some_and(|k| !k.finished()));
        // A relist: what it does not find is gone, at its end only.
        hand.event(watcher::Event::Init);
        hand.event(watcher::Event::InitApply(job("k")));
        assert!(watch.job("j").is_some(), "not before the relist ends");
        hand.event(watcher::Event::InitDone);
        assert!(watch.job("j").is_none());
        assert!(watch.job("k").is_some());
        hand.event(watcher::Event::Delete(job("k")));
        assert!(watch.job("k").is_none());
    }

    #[tokio::test]
    async fn an_event_wakes_the_subscribers_of_its_job_only() {
        let (watch, mut hand) = by_hand();
        let mut a = watch.subscribe(["a"]);
        let mut a_too = watch.subscribe(["a"]);
        let mut b = watch.subscribe(["b"]);
        assert!(!woken(&mut a), "nothing happened yet");
        for i in 0..1000 {
            hand.event(watcher::Event::Apply(job(&format!("other-{i}"))));
        }
        hand.event(watcher::Event::Delete(job("b")));
        assert!(!woken(&mut a), "others' events do not reach a");
        assert!(!woken(&mut a_too));
        assert!(woken(&mut b), "a deletion is an event on its Job");
        hand.event(watcher::Event::Apply(job("a")));
        assert!(woken(&mut a));
        assert!(woken(&mut a_too), "every subscriber of a");
        assert!(!woken(&mut a), "one wake per change");
        assert!(!woken(&mut b));
    }

    #[tokio::test]
    async fn a_relist_wakes_every_subscriber_at_its_end() {
        let (watch, mut hand) = by_hand();
        let mut ab = watch.subscribe(["a", "b"]);
        let mut c = watch.subscribe(["c"]);
        hand.event(watcher::Event::Init);
        hand.event(watcher::Event::InitApply(job("a")));
        assert!(!woken(&mut ab), "the store has not changed yet");
        hand.event(watcher::Event::InitDone);
        assert!(woken(&mut ab), "once for both of its Jobs");
        assert!(!woken(&mut ab));
        assert!(
            woken(&mut c),
            "c, not in the relist, may be gone: its waiter must look"
        );
    }

    #[tokio::test]
    async fn an_entry_lives_from_the_first_subscription_to_the_last() {
        let (watch, mut hand) = by_hand();
        assert_eq!(watch.waited_on(), 0);
        let first = watch.subscribe(["a"]);
        let second = watch.subscribe(["a", "b"]);
        assert_eq!(watch.waited_on(), 2);
        for i in 0..1000 {
            hand.event(watcher::Event::Apply(job(&format!("other-{i}"))));
        }
        assert_eq!(watch.waited_on(), 2, "events make no entries");
        drop(second);
        assert_eq!(watch.waited_on(), 1, "b had no other subscriber");
        drop(first);
        assert_eq!(watch.waited_on(), 0);
    }

    #[tokio::test]
    async fn a_stopped_watch_ends_every_wait_on_it() {
        let (watch, hand) = by_hand();
        let mut before = watch.subscribe(["a"]);
        drop(hand);
        assert_eq!(watch.waited_on(), 0, "no entry outlives the watch");
        assert!(before.changed().await.is_err());
        let mut after = watch.subscribe(["a"]);
        assert!(after.changed().await.is_err());
        assert_eq!(watch.waited_on(), 0);
    }
}
