//! One shared watch of gitfaas' Jobs per namespace, for everything that
//! waits on them.
//!
//! A `?wait=` publish used to open a watch of its own: one HTTP/1.1
//! connection to the API server (kube-client speaks HTTP/1.1) held for as
//! long as it waited, so a thousand waiting requests were a thousand
//! connections. Here every waiter of a namespace shares one watch,
//! kube-runtime's watcher (re-lists on expiry, backs off on errors) feeding
//! a reflector store; a version counter tells waiters that something
//! changed, and another that its first list is in. (kube-runtime's own
//! `Store::wait_until_ready` wakes only the last of several concurrent
//! waiters: it polls one oneshot receiver, which keeps one waker.) At most [`MAX_NAMESPACES`] namespaces are watched; a wait
//! beyond that is told so and the caller falls back to a watch of its own.
//! The watch tasks stop when this is dropped.
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
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

/// Namespaces watched at once, at most.
pub const MAX_NAMESPACES: usize = 256;

/// What is watched: the Jobs gitfaas applied.
const SELECTOR: &str = "app.kubernetes.io/managed-by=gitfaas";

/// One namespace's watch.
pub struct NamespaceWatch {
    store: Store<Job>,
    version: tokio::sync::watch::Receiver<u64>,
    listed: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NamespaceWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NamespaceWatch {
    /// The Job `name` as last seen, if the watch has it.
    pub fn job(&self, namespace: &str, name: &str) -> Option<Arc<Job>> {
        self.store.get(&ObjectRef::new(name).within(namespace))
    }

    /// Waits until the first list is in the store; false if the watch
    /// stopped first.
    pub async fn ready(&self) -> bool {
        self.listed.clone().wait_for(|listed| *listed).await.is_ok()
    }

    /// A receiver that changes whenever the watch saw an event.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.clone()
    }
}

/// A watch fed by hand, for the unit tests of its waiters: the writer of
/// its store and the sender of its version; its first list is in.
#[cfg(test)]
pub(crate) fn by_hand() -> (
    NamespaceWatch,
    reflector::store::Writer<Job>,
    tokio::sync::watch::Sender<u64>,
) {
    let (store, writer) = reflector::store();
    let (tx, version) = tokio::sync::watch::channel(0u64);
    let (listed_tx, listed) = tokio::sync::watch::channel(true);
    // Listed for good: nothing will say otherwise.
    std::mem::forget(listed_tx);
    let watch = NamespaceWatch {
        store,
        version,
        listed,
        task: tokio::spawn(async {}),
    };
    (watch, writer, tx)
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
        let api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let (store, writer) = reflector::store();
        let (tx, version) = tokio::sync::watch::channel(0u64);
        let (listed_tx, listed) = tokio::sync::watch::channel(false);
        // Waiters read names and status only: the store keeps no spec and
        // no managedFields (most of a Job's size).
        let stream = watcher(api, watcher::Config::default().labels(selector))
            .default_backoff()
            .modify(|job: &mut Job| {
                job.spec = None;
                job.metadata.managed_fields = None;
                job.metadata.annotations = None;
            })
            .reflect(writer);
        let ns = namespace.to_string();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(event) => {
                        // The reflector has applied the event to the store
                        // before passing it on.
                        if matches!(event, watcher::Event::InitDone) {
                            listed_tx.send_replace(true);
                        }
                        tx.send_modify(|v| *v = v.wrapping_add(1));
                    }
                    // Backed off and retried by the watcher itself.
                    Err(e) => tracing::debug!(namespace = ns, error = %e, "Job watch error"),
                }
            }
        });
        NamespaceWatch {
            store,
            version,
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
