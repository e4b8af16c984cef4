//! A run's pods and their containers as their statuses show them: which
//! containers have started and ended, which pods are the Job's own.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use super::RunStatus;

/// One container of a pod, as the pod's status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ContainerState {
    pub(super) name: String,
    /// It runs or ran: it has a log.
    pub(super) started: bool,
    /// Which run of it (restartPolicy: OnFailure restarts it in place).
    pub(super) restarts: i32,
    /// An init container.
    pub(super) init: bool,
}

/// One pod of a Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PodState {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) uid: String,
    /// Succeeded or Failed: nothing more will start in it.
    pub(super) terminal: bool,
    /// Succeeded.
    pub(super) succeeded: bool,
    /// Init containers first, then containers, in the pod's order.
    pub(super) containers: Vec<ContainerState>,
}

/// One run of one container, whose log is read once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Instance {
    pub(super) pod_uid: String,
    pub(super) container: String,
    pub(super) restarts: i32,
}

/// A container log to read.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) namespace: String,
    pub(super) pod: String,
    pub(super) container: String,
    pub(super) instance: Instance,
}

impl PodState {
    pub(super) fn of(pod: &Pod, namespace: &str) -> Option<PodState> {
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
    pub(super) fn started<'a>(
        &'a self,
        only: &'a Option<String>,
    ) -> impl Iterator<Item = Target> + 'a {
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
    pub(super) fn waiting(&self, only: &Option<String>) -> bool {
        !self.terminal && self.matching(only).any(|c| !c.started)
    }

    pub(super) fn matching<'a>(
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
pub(super) fn template_containers(job: &Job) -> Vec<String> {
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
pub(super) fn run_status(jobs: &[(bool, bool)], had_jobs: bool, started: bool) -> RunStatus {
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

/// Whether `pod` is one of the Job whose uid is `job_uid`: its controller
/// ownerReference names that Job. The labels that find it are only a
/// filter: any manifest may wear a Job's labels (a Pod another owner
/// controls), and its lines must not pass for the run's. (A bare Pod
/// wearing them would be adopted by the Job controller, but gitfaas marks
/// it with its own run's request uid, which the list's selector refuses.)
pub(super) fn controlled_by(pod: &Pod, job_uid: &str) -> bool {
    pod.metadata.owner_references.iter().flatten().any(|o| {
        o.controller == Some(true)
            && o.uid == job_uid
            && o.kind == "Job"
            && o.api_version == "batch/v1"
    })
}
