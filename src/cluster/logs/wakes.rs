//! What wakes a followed read: its Jobs' changes on the namespaces'
//! shared watches.

use std::sync::Arc;

use super::RunJob;
use crate::cluster::Applier;

/// The changes of the request's Jobs on the namespaces' shared watches:
/// subscribed to those Jobs alone, so the events of the namespace's other
/// Jobs do not wake the stream.
pub(super) struct Wakes {
    pub(super) watches: Vec<Watched>,
    /// Each Job and the resourceVersion last seen of it.
    pub(super) jobs: Vec<(String, String, Option<String>)>,
    /// A namespace beyond the bound on watched namespaces: no change is
    /// seen there, its pods are looked at every [`LOOK_AGAIN`].
    pub(super) blind: bool,
}

/// One namespace's shared watch and the subscription to the request's
/// Jobs on it.
pub(super) struct Watched {
    pub(super) namespace: String,
    pub(super) watch: Arc<crate::cluster::jobwatch::NamespaceWatch>,
    pub(super) changes: crate::cluster::jobwatch::JobChanges,
}

impl Wakes {
    pub(super) fn new(applier: &Applier, jobs: &[RunJob]) -> Self {
        let jobs: Vec<(String, String)> = jobs
            .iter()
            .map(|j| (j.namespace.clone(), j.object.name.clone()))
            .collect();
        Self::on(|ns| applier.job_watches.namespace(ns), jobs)
    }

    /// On the watches `watch_of` gives (None beyond the bound), for the
    /// Jobs `jobs` (namespace, name).
    pub(super) fn on(
        watch_of: impl Fn(&str) -> Option<Arc<crate::cluster::jobwatch::NamespaceWatch>>,
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
    pub(super) async fn changed(&mut self) -> bool {
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
            let now = w.watch.job(name).and_then(|j| j.resource_version);
            if now != *seen {
                *seen = now;
                changed = true;
            }
        }
        changed
    }
}
