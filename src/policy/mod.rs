//! What may be applied, checked on the parsed objects of every render (the
//! repository is trusted less than the cluster), never with regexes on text:
//!
//! - kinds: the banned list, and the cluster-power kinds ([`kinds`]);
//! - pods: Kubernetes' Pod Security Standards on every pod spec found
//!   anywhere in an object ([`pod_security`]), the service account a pod
//!   runs as, which must be `default` or on an allow-list, and the Secrets
//!   it reads or mounts, which must be its own request's payload Secret or
//!   on an allow-list ([`secrets`]);
//! - namespaces: an optional allow-list.
//!
//! This module puts the rules together and words the refusals; each refusal
//! names the object, the field and what to change.

pub mod kinds;
pub mod pod_security;
pub mod secrets;

use std::collections::BTreeSet;

use serde_json::Value;

pub use kinds::{
    parse_allowed_kinds, parse_kind_list, PowerKind, CLUSTER_POWER_KINDS, DEFAULT_BANNED_KINDS,
    KNOWN_KINDS,
};
pub use pod_security::{Failure, Level, PodSecurity, Waivers, JOB_CONTROLLER_LABELS};
pub use secrets::{parse_allowed_secrets, AllowedSecret};

/// The rules in force; built once from the settings.
#[derive(Debug, Clone)]
pub struct Policy {
    banned_kinds: BTreeSet<String>,
    /// Cluster-power kinds let through (`--allow-kinds`).
    pub allowed_kinds: Vec<&'static PowerKind>,
    /// The Pod Security Standards level and the checks waived at it.
    pub pod_security: PodSecurity,
    /// Service accounts a pod may name besides `default` (`--allowed-service-accounts`).
    pub allowed_service_accounts: BTreeSet<String>,
    /// Secrets a pod may use besides its request's payload Secret (`--allowed-secrets`).
    pub allowed_secrets: Vec<AllowedSecret>,
    allowed_namespaces: Option<BTreeSet<String>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(DEFAULT_BANNED_KINDS.iter().copied(), None)
    }
}

/// Why an object may not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The kind is banned.
    #[error("kind {kind} is banned by policy (banned kinds: {banned}); remove it from the manifest or change --banned-kinds / BANNED_KUBE_RESS")]
    BannedKind {
        /// The object's kind.
        kind: String,
        /// The banned list, for the message.
        banned: String,
    },
    /// The kind grants power over the cluster and `--allow-kinds` does not name it.
    #[error("{object}: {what} is a cluster-power kind, refused by policy: {why}; remove it from the manifest, or, if the repository must create it, start gitfaas with --allow-kinds {allow} (GITFAAS_ALLOW_KINDS)")]
    ClusterPower {
        /// The object, `Kind/name`.
        object: String,
        /// The kind and its API group, in words.
        what: String,
        /// What the kind would let the repository do.
        why: &'static str,
        /// How `--allow-kinds` names it.
        allow: &'static str,
    },
    /// A pod spec fails the Pod Security Standards level in force.
    #[error("{object}: {}: violates PodSecurity \"{level}:latest\": {}; {}", paths(.failures), api_words(.failures), pod_security_fix(*.level, .failures))]
    PodSecurity {
        /// The object, `Kind/name`.
        object: String,
        /// The level in force.
        level: Level,
        /// Every check the pod spec fails, in the API server's order.
        failures: Vec<Failure>,
    },
    /// A pod names a service account that is not allowed.
    #[error("{object}: {path}: service account `{name}` is not allowed (allowed: {allowed}); a function runs as its namespace's `default` service account unless gitfaas is started with the name in --allowed-service-accounts (GITFAAS_ALLOWED_SERVICE_ACCOUNTS): remove the field, or ask the cluster admin to allow `{name}`")]
    ServiceAccount {
        /// The object, `Kind/name`.
        object: String,
        /// The field, from the object's root.
        path: String,
        /// The service account named.
        name: String,
        /// The allow-list, for the message.
        allowed: String,
    },
    /// A pod reads or mounts a Secret that is not allowed.
    #[error("{object}: {path}: Secret `{name}` is not allowed{} (allowed: {allowed}); the repository is trusted less than the cluster, so a function reads only its own request's payload Secret ({{{{PAYLOAD_SECRET}}}}) and the Secrets gitfaas is started with in --allowed-secrets (GITFAAS_ALLOWED_SECRETS; names or prefix*): remove the reference, or ask the cluster admin to allow `{name}`", secrets::why(.name))]
    Secret {
        /// The object, `Kind/name`.
        object: String,
        /// The field, from the object's root.
        path: String,
        /// The Secret named.
        name: String,
        /// What is allowed, for the message (a `Box<str>`: with four
        /// `String`s this variant would tie ServiceAccount as the largest
        /// and cost every error that holds a Violation a tag word).
        allowed: Box<str>,
    },
    /// A pod's metadata carries a label of the Job controller's selector.
    #[error("{object}: {path}: the label `{label}` is the Job controller's: it adopts any pod that carries it, so this pod would count as (and could end) another Job, another run's; remove the label (the API server sets it on a Job's own pods)")]
    JobControllerLabel {
        /// The object, `Kind/name`.
        object: String,
        /// The label's field, from the object's root.
        path: String,
        /// The label.
        label: &'static str,
    },
    /// The namespace is not on the allow-list.
    #[error("namespace `{namespace}` is not allowed (allowed: {allowed}); change the manifest's namespace or --allowed-namespaces")]
    Namespace {
        /// The object's namespace.
        namespace: String,
        /// The allow-list, for the message.
        allowed: String,
    },
}

fn paths(failures: &[Failure]) -> String {
    failures
        .iter()
        .flat_map(|f| f.paths.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The checks joined as the API server joins them.
fn api_words(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(Failure::api_words)
        .collect::<Vec<_>>()
        .join(", ")
}

fn pod_security_fix(level: Level, failures: &[Failure]) -> String {
    let mut fix = format!(
        "change the pod spec to meet the {level} level of the Pod Security Standards (https://kubernetes.io/docs/concepts/security/pod-security-standards/)"
    );
    let waivers: BTreeSet<(&str, &str)> = failures
        .iter()
        .filter_map(|f| f.waiver.map(|w| (w, f.reason.as_str())))
        .collect();
    if !waivers.is_empty() {
        let list: Vec<String> = waivers
            .iter()
            .map(|(flag, reason)| format!("{flag} waives {reason}"))
            .collect();
        fix.push_str(&format!(
            ", or ask the cluster admin to waive the check ({})",
            list.join(", ")
        ));
    }
    fix.push_str(&format!(
        "; gitfaas enforces --pod-security {level} (GITFAAS_POD_SECURITY)"
    ));
    fix
}

/// `Kind/name` for messages (the generateName, or `(no name)`, without a name).
fn describe(object: &Value) -> String {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object");
    let meta = object.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| {
            meta.and_then(|m| m.get("generateName"))
                .and_then(Value::as_str)
                .map(|g| format!("{g}*"))
        })
        .unwrap_or_else(|| "(no name)".to_string());
    format!("{kind}/{name}")
}

impl Policy {
    /// A policy banning `banned_kinds` (compared case-insensitively; `Kind.group`
    /// bans a kind of that API group only) and, when given, allowing only
    /// `allowed_namespaces`. Pods are checked at the baseline level, no
    /// cluster-power kind is allowed, and pods may run only as `default`.
    pub fn new<'a>(
        banned_kinds: impl IntoIterator<Item = &'a str>,
        allowed_namespaces: Option<Vec<String>>,
    ) -> Self {
        Policy {
            banned_kinds: banned_kinds
                .into_iter()
                .map(|k| k.trim().to_ascii_lowercase())
                .filter(|k| !k.is_empty())
                .collect(),
            allowed_kinds: Vec::new(),
            pod_security: PodSecurity::default(),
            allowed_service_accounts: BTreeSet::new(),
            allowed_secrets: Vec::new(),
            allowed_namespaces: allowed_namespaces.map(|v| v.into_iter().collect()),
        }
    }

    /// Checks one parsed object that would land in `namespace` (None for a
    /// cluster-scoped object).
    pub fn check(&self, object: &Value, namespace: Option<&str>) -> Result<(), Violation> {
        self.check_content(object)?;
        self.check_namespace(namespace)
    }

    /// The checks that need only the object: its kind and its pods.
    pub fn check_content(&self, object: &Value) -> Result<(), Violation> {
        let (kind, group) = kinds::kind_and_group(object);
        let kind_lower = kind.to_ascii_lowercase();
        if self.banned_kinds.contains(&kind_lower)
            || (!group.is_empty()
                && self
                    .banned_kinds
                    .contains(&format!("{kind_lower}.{}", group.to_ascii_lowercase())))
        {
            return Err(Violation::BannedKind {
                kind: kind.to_string(),
                banned: self.banned_list(),
            });
        }
        if let Some(power) = kinds::cluster_power(object) {
            if !self.allowed_kinds.contains(&power) {
                let what = match (power.kind, power.group) {
                    ("Secret", _) => {
                        "a Secret of type kubernetes.io/service-account-token".to_string()
                    }
                    (k, "") => format!("kind {k} of the core API group"),
                    (k, g) => format!("kind {k} of API group {g}"),
                };
                return Err(Violation::ClusterPower {
                    object: describe(object),
                    what,
                    why: power.why,
                    allow: power.allow,
                });
            }
        }
        let own_payload = secrets::own_payload_secret(object);
        for pod in pod_security::pods(object) {
            let failures = self.pod_security.check(&pod);
            if !failures.is_empty() {
                return Err(Violation::PodSecurity {
                    object: describe(object),
                    level: self.pod_security.level,
                    failures,
                });
            }
            if let Some((path, label)) = pod.job_controller_labels().into_iter().next() {
                return Err(Violation::JobControllerLabel {
                    object: describe(object),
                    path,
                    label,
                });
            }
            for (path, name) in pod.service_accounts() {
                if !(name.is_empty()
                    || name == "default"
                    || self.allowed_service_accounts.contains(&name))
                {
                    return Err(Violation::ServiceAccount {
                        object: describe(object),
                        path,
                        name,
                        allowed: std::iter::once("default")
                            .chain(self.allowed_service_accounts.iter().map(String::as_str))
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
            for (path, name) in pod.secrets() {
                if !secrets::allowed(&self.allowed_secrets, own_payload.as_deref(), &name) {
                    return Err(Violation::Secret {
                        object: describe(object),
                        path,
                        name,
                        allowed: secrets::describe_allowed(
                            &self.allowed_secrets,
                            own_payload.as_deref(),
                        )
                        .into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The namespace allow-list, when one is set.
    pub fn allowed_namespaces(&self) -> Option<&BTreeSet<String>> {
        self.allowed_namespaces.as_ref()
    }

    /// The namespace allow-list; a cluster-scoped object (None) escapes any
    /// namespace, so it is refused whenever an allow-list is set.
    pub fn check_namespace(&self, namespace: Option<&str>) -> Result<(), Violation> {
        let Some(allowed) = &self.allowed_namespaces else {
            return Ok(());
        };
        match namespace {
            Some(ns) if allowed.contains(ns) => Ok(()),
            other => Err(Violation::Namespace {
                namespace: other.unwrap_or("(cluster-scoped)").to_string(),
                allowed: allowed.iter().cloned().collect::<Vec<_>>().join(", "),
            }),
        }
    }

    fn banned_list(&self) -> String {
        self.banned_kinds
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(pod_spec: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
               "spec": {"template": {"spec": pod_spec}}})
    }

    fn main_container(security_context: Value) -> Value {
        json!({"containers": [{"name": "main", "image": "busybox", "securityContext": security_context}]})
    }

    #[test]
    fn a_pod_may_not_wear_the_job_controllers_selector_label() {
        let p = Policy::default();
        let labelled = |label: &str| {
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                   "spec": {"template": {"metadata": {"labels": {label: "uid-of-another-job"}},
                            "spec": {"containers": [{"name": "main", "image": "busybox"}]}}}})
        };
        for label in JOB_CONTROLLER_LABELS {
            let e = p.check_content(&labelled(label)).expect_err(label);
            assert_eq!(
                e,
                Violation::JobControllerLabel {
                    object: "Job/j".into(),
                    path: format!("spec.template.metadata.labels[{label}]"),
                    label,
                }
            );
        }
        let bare = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p",
            "labels": {"controller-uid": "x"}},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]}});
        let e = p.check_content(&bare).expect_err("a bare Pod");
        assert!(
            e.to_string().starts_with("Pod/p: metadata.labels[controller-uid]: the label `controller-uid` is the Job controller's"),
            "{e}"
        );
        // Other labels, and the label on what is not a pod, pass.
        assert_eq!(p.check_content(&labelled("job-name")), Ok(()));
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "c", "labels": {"controller-uid": "x"}}});
        assert_eq!(p.check_content(&cm), Ok(()));
    }

    #[test]
    fn default_banned_kinds_are_refused_case_insensitively() {
        let p = Policy::default();
        for kind in [
            "Role",
            "clusterrolebinding",
            "ServiceAccount",
            "Service",
            "Ingress",
        ] {
            let obj = json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}});
            assert!(
                matches!(
                    p.check(&obj, Some("default")),
                    Err(Violation::BannedKind { .. })
                ),
                "{kind} must be banned"
            );
        }
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        assert_eq!(p.check(&cm, Some("default")), Ok(()));
    }

    #[test]
    fn the_refusal_names_the_object_the_field_and_the_check_in_the_api_server_s_words() {
        let p = Policy::default();
        let obj = job(main_container(
            json!({"capabilities": {"add": ["SYS_ADMIN"]}}),
        ));
        let e = p
            .check_content(&obj)
            .expect_err("SYS_ADMIN is beyond baseline");
        assert!(matches!(e, Violation::PodSecurity { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(r#"Job/j: spec.template.spec.containers[0].securityContext.capabilities.add: violates PodSecurity "baseline:latest": non-default capabilities (container "main" must not include "SYS_ADMIN" in securityContext.capabilities.add); "#),
            "{msg}"
        );
        assert!(
            msg.contains("change the pod spec to meet the baseline level"),
            "{msg}"
        );
        assert!(
            msg.contains("--pod-security baseline (GITFAAS_POD_SECURITY)"),
            "{msg}"
        );

        // Every failed check, joined as the API server joins them.
        let obj = job(json!({"hostPID": true, "containers": [
            {"name": "a", "image": "x", "securityContext": {"privileged": true}}]}));
        let msg = p.check_content(&obj).expect_err("two checks").to_string();
        assert!(
            msg.contains(r#"violates PodSecurity "baseline:latest": host namespaces (hostPID=true), privileged (container "a" must not set securityContext.privileged=true); "#),
            "{msg}"
        );
        assert!(
            msg.starts_with("Job/j: spec.template.spec.hostPID, spec.template.spec.containers[0].securityContext.privileged: "),
            "{msg}"
        );
        assert!(
            msg.contains("--allow-host-namespaces waives host namespaces, --allow-privileged waives privileged"),
            "{msg}"
        );
    }

    #[test]
    fn pod_specs_are_found_wherever_they_are() {
        let bad = json!({"name": "c", "image": "x", "securityContext": {"privileged": true}});
        let cases = [
            (
                "Pod",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [bad]}}),
                "spec.containers[0]",
            ),
            (
                "Deployment",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                       "spec": {"template": {"spec": {"containers": [bad]}}}}),
                "spec.template.spec.containers[0]",
            ),
            (
                "CronJob",
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                       "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [bad]}}}}}}),
                "spec.jobTemplate.spec.template.spec.containers[0]",
            ),
            (
                "PodTemplate",
                json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                       "template": {"spec": {"containers": [bad]}}}),
                "template.spec.containers[0]",
            ),
            (
                "init container",
                job(
                    json!({"initContainers": [bad], "containers": [{"name": "main", "image": "x"}]}),
                ),
                "spec.template.spec.initContainers[0]",
            ),
            (
                "ephemeral container",
                job(
                    json!({"containers": [{"name": "main", "image": "x"}], "ephemeralContainers": [bad]}),
                ),
                "spec.template.spec.ephemeralContainers[0]",
            ),
            (
                "a custom resource's pod spec, deep inside",
                json!({"apiVersion": "example.com/v1", "kind": "Pipeline", "metadata": {"name": "x"},
                       "spec": {"stages": [{"run": {"podTemplate": {"spec": {"containers": [bad]}}}}]}}),
                "spec.stages[0].run.podTemplate.spec.containers[0]",
            ),
            (
                "an Argo Workflow template's lone container",
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"},
                       "spec": {"templates": [{"name": "t", "container": {"image": "x", "securityContext": {"privileged": true}}}]}}),
                "spec.templates[0].container",
            ),
        ];
        for (what, obj, at) in cases {
            let e = Policy::default()
                .check_content(&obj)
                .expect_err(what)
                .to_string();
            assert!(
                e.contains(&format!("{at}.securityContext.privileged")),
                "{what}: {e}"
            );
            assert!(e.contains("privileged (container"), "{what}: {e}");
        }
        // Pod-level settings of an Argo Workflow, outside any pod spec.
        let wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"},
                        "spec": {"hostNetwork": true, "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
                                 "templates": [{"name": "t", "container": {"image": "x"}}]}});
        let e = Policy::default()
            .check_content(&wf)
            .expect_err("host access")
            .to_string();
        assert!(e.contains("host namespaces (hostNetwork=true)"), "{e}");
        assert!(e.contains(r#"hostPath volumes (volume "root")"#), "{e}");
    }

    #[test]
    fn a_custom_resource_fragment_is_held_to_what_is_forbidden_not_to_what_is_required() {
        let mut p = Policy::default();
        p.pod_security.level = Level::Restricted;
        let wf = |container: Value| {
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"},
                   "spec": {"templates": [{"name": "t", "container": container}]}})
        };
        // Nothing set: what the controller fills in is unknown, so no requirement is judged.
        assert_eq!(p.check_content(&wf(json!({"image": "x"}))), Ok(()));
        let e = p
            .check_content(&wf(json!({"image": "x", "securityContext": {"allowPrivilegeEscalation": true, "runAsUser": 0}})))
            .expect_err("explicitly forbidden")
            .to_string();
        assert!(e.contains("allowPrivilegeEscalation != false"), "{e}");
        assert!(e.contains("runAsUser=0"), "{e}");
        // A custom resource's whole pod spec gets every check, requirements too.
        let ks = json!({"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "k"},
                        "spec": {"replicatedJobs": [{"name": "r", "template": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}}]}});
        let e = p
            .check_content(&ks)
            .expect_err("restricted requirements")
            .to_string();
        assert!(e.contains("runAsNonRoot != true"), "{e}");
    }

    #[test]
    fn harmless_lookalikes_pass() {
        let p = Policy::default();
        let cases = [
            job(
                json!({"hostNetwork": false, "containers": [{"name": "c", "securityContext": {"privileged": false}}]}),
            ),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                   "data": {"hostPath": "/tmp", "privileged": "true", "hostNetwork": "true", "serviceAccountName": "x"}}),
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": "big"}}),
        ];
        for obj in cases {
            assert_eq!(p.check(&obj, Some("ns")), Ok(()), "{obj}");
        }
    }

    #[test]
    fn the_old_flags_waive_exactly_their_check_at_the_chosen_level() {
        let host_all = job(
            json!({"hostPID": true, "hostNetwork": true, "hostIPC": true,
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "image": "x", "securityContext": {"privileged": true}}]}),
        );
        let mut p = Policy::default();
        p.pod_security.waivers = Waivers {
            privileged: true,
            host_path: true,
            host_namespaces: true,
        };
        assert_eq!(
            p.check_content(&host_all),
            Ok(()),
            "all three waived at baseline"
        );

        // Each flag waives its own check only.
        for (waivers, still) in [
            (
                Waivers {
                    privileged: true,
                    ..Waivers::default()
                },
                "host namespaces",
            ),
            (
                Waivers {
                    host_namespaces: true,
                    ..Waivers::default()
                },
                "privileged",
            ),
            (
                Waivers {
                    host_path: true,
                    ..Waivers::default()
                },
                "privileged",
            ),
        ] {
            p.pod_security.waivers = waivers;
            let e = p
                .check_content(&host_all)
                .expect_err("one waiver")
                .to_string();
            assert!(e.contains(still), "{waivers:?}: {e}");
        }
        p.pod_security.waivers = Waivers {
            host_namespaces: true,
            host_path: true,
            ..Waivers::default()
        };
        let e = p
            .check_content(&host_all)
            .expect_err("privileged")
            .to_string();
        assert!(
            !e.contains("host namespaces") && !e.contains("hostPath"),
            "{e}"
        );

        // At restricted a waiver still waives only its check: hostPath volumes
        // pass the volume-type check, the rest of restricted still applies.
        p.pod_security = PodSecurity {
            level: Level::Restricted,
            waivers: Waivers {
                host_path: true,
                ..Waivers::default()
            },
        };
        let restricted_ok = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "image": "x", "securityContext":
                {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]});
        assert_eq!(p.check_content(&job(restricted_ok.clone())), Ok(()));
        let mut nfs = restricted_ok.clone();
        nfs["volumes"][0] = json!({"name": "share", "nfs": {"server": "s", "path": "/"}});
        let e = p
            .check_content(&job(nfs))
            .expect_err("nfs is still restricted")
            .to_string();
        assert!(
            e.contains(
                r#"restricted volume types (volume "share" uses restricted volume type "nfs")"#
            ),
            "{e}"
        );
        p.pod_security.waivers = Waivers::default();
        let e = p
            .check_content(&job(restricted_ok))
            .expect_err("not waived")
            .to_string();
        assert!(
            e.contains("--allow-host-path waives restricted volume types"),
            "{e}"
        );

        // privileged: no pod checks at all.
        p.pod_security = PodSecurity {
            level: Level::Privileged,
            waivers: Waivers::default(),
        };
        assert_eq!(p.check_content(&host_all), Ok(()));
    }

    #[test]
    fn cluster_power_kinds_are_refused_by_group_and_kind_unless_allowed() {
        let p = Policy::default();
        for pk in CLUSTER_POWER_KINDS {
            let api_version = if pk.group.is_empty() {
                "v1".to_string()
            } else {
                format!("{}/v1", pk.group)
            };
            let mut obj =
                json!({"apiVersion": api_version, "kind": pk.kind, "metadata": {"name": "x"}});
            if pk.kind == "Secret" {
                obj["type"] = json!("kubernetes.io/service-account-token");
            }
            let e = p.check_content(&obj).expect_err(pk.kind);
            let msg = e.to_string();
            assert!(matches!(e, Violation::ClusterPower { .. }), "{msg}");
            assert!(msg.contains("is a cluster-power kind"), "{msg}");
            assert!(
                msg.contains(&format!("--allow-kinds {} (GITFAAS_ALLOW_KINDS)", pk.allow)),
                "{msg}"
            );
            let allowed = Policy {
                allowed_kinds: parse_allowed_kinds(pk.allow).expect(pk.allow),
                ..Policy::default()
            };
            assert_eq!(allowed.check_content(&obj), Ok(()), "{} allowed", pk.allow);
        }
        // The same kind names in another API group are not those kinds.
        for (api_version, kind) in [
            ("example.com/v1", "Namespace"),
            ("example.com/v1", "StorageClass"),
            ("apps/v1", "PersistentVolume"),
            ("v1", "APIService"),
        ] {
            let obj = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}});
            assert_eq!(p.check_content(&obj), Ok(()), "{api_version} {kind}");
        }
        // Secrets are refused only when they ask for a token.
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque"});
        assert_eq!(p.check_content(&secret), Ok(()));
        let token = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s",
            "annotations": {"kubernetes.io/service-account.name": "gitfaas"}},
            "type": "kubernetes.io/service-account-token"});
        let msg = p.check_content(&token).expect_err("token").to_string();
        assert!(msg.starts_with("Secret/s: a Secret of type kubernetes.io/service-account-token is a cluster-power kind"), "{msg}");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}});
        let msg = p.check_content(&ns).expect_err("namespace").to_string();
        assert!(
            msg.starts_with(
                "Namespace/n: kind Namespace of the core API group is a cluster-power kind"
            ),
            "{msg}"
        );
        // The banned list is checked first and --allow-kinds does not lift it.
        let mut banned = Policy::new(["Namespace"], None);
        banned.allowed_kinds = parse_allowed_kinds("Namespace").expect("allow");
        assert!(matches!(
            banned.check_content(&ns),
            Err(Violation::BannedKind { .. })
        ));
    }

    #[test]
    fn allow_kinds_takes_only_cluster_power_kinds() {
        let all = parse_allowed_kinds(
            "Namespace, storageclass StorageClass.storage.k8s.io Secret/service-account-token,Secret/kubernetes.io/service-account-token",
        )
        .expect("valid");
        let names: Vec<&str> = all.iter().map(|p| p.allow).collect();
        assert_eq!(
            names,
            ["Namespace", "StorageClass", "Secret/service-account-token"]
        );
        for (entry, says) in [
            ("Role", "not a cluster-power kind"),
            ("Secret", "write Secret/service-account-token"),
            ("Namespaces", "not a kind Kubernetes serves"),
            ("StorageClass.example.com", "not a cluster-power kind"),
        ] {
            let e = parse_allowed_kinds(entry).expect_err(entry);
            assert!(e.contains(says), "{entry}: {e}");
            assert!(
                e.contains("MutatingWebhookConfiguration"),
                "lists what it takes: {e}"
            );
        }
    }

    #[test]
    fn service_accounts_must_be_default_or_allowed() {
        let mut p = Policy::default();
        for ok in [json!(null), json!(""), json!("default")] {
            let obj =
                job(json!({"serviceAccountName": ok, "containers": [{"name": "c", "image": "x"}]}));
            assert_eq!(p.check_content(&obj), Ok(()), "{ok}");
        }
        let foreign = job(
            json!({"serviceAccountName": "someone-else", "containers": [{"name": "c", "image": "x"}]}),
        );
        let e = p.check_content(&foreign).expect_err("foreign");
        assert!(matches!(e, Violation::ServiceAccount { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with("Job/j: spec.template.spec.serviceAccountName: service account `someone-else` is not allowed (allowed: default)"), "{msg}");
        assert!(
            msg.contains("--allowed-service-accounts (GITFAAS_ALLOWED_SERVICE_ACCOUNTS)"),
            "{msg}"
        );
        let deprecated =
            job(json!({"serviceAccount": "gitfaas", "containers": [{"name": "c", "image": "x"}]}));
        let msg = p
            .check_content(&deprecated)
            .expect_err("deprecated field")
            .to_string();
        assert!(
            msg.contains("spec.template.spec.serviceAccount: service account `gitfaas`"),
            "{msg}"
        );
        // A custom resource that runs pods as an account is checked too.
        let wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"},
                        "spec": {"serviceAccountName": "argo-admin", "templates": []}});
        let msg = p.check_content(&wf).expect_err("workflow").to_string();
        assert!(
            msg.contains("spec.serviceAccountName: service account `argo-admin`"),
            "{msg}"
        );

        p.allowed_service_accounts = ["someone-else".to_string()].into();
        assert_eq!(p.check_content(&foreign), Ok(()));
        let msg = p
            .check_content(&deprecated)
            .expect_err("not listed")
            .to_string();
        assert!(msg.contains("(allowed: default, someone-else)"), "{msg}");
        // automountServiceAccountToken is left alone.
        let automount = job(
            json!({"automountServiceAccountToken": true, "containers": [{"name": "c", "image": "x"}]}),
        );
        assert_eq!(p.check_content(&automount), Ok(()));
    }

    /// A Job marked for request `r-1111` as gitfaas marks it.
    fn marked(pod_spec: Value) -> Value {
        let mut obj = job(pod_spec);
        obj["metadata"]["labels"] = json!({crate::object::LABEL_REQUEST_UID: "r-1111"});
        obj
    }

    #[test]
    fn secrets_are_the_request_s_payload_secret_or_allowed() {
        let own = crate::object::payload_secret_name("r-1111");
        let other = crate::object::payload_secret_name("r-2222");
        let uses = |name: &str| -> Vec<(Value, &'static str)> {
            vec![
                (
                    json!({"containers": [{"name": "c", "image": "x", "envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": name}}]}]}),
                    "spec.template.spec.containers[0].envFrom[1].secretRef.name",
                ),
                (
                    json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A", "value": "a"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": name, "key": "k"}}}]}]}),
                    "spec.template.spec.containers[0].env[1].valueFrom.secretKeyRef.name",
                ),
                (
                    json!({"initContainers": [{"name": "i", "image": "x", "envFrom": [{"secretRef": {"name": name}}]}], "containers": [{"name": "c", "image": "x"}]}),
                    "spec.template.spec.initContainers[0].envFrom[0].secretRef.name",
                ),
                (
                    json!({"containers": [{"name": "c", "image": "x"}], "ephemeralContainers": [{"name": "e", "image": "x", "env": [{"name": "B", "valueFrom": {"secretKeyRef": {"name": name, "key": "k"}}}]}]}),
                    "spec.template.spec.ephemeralContainers[0].env[0].valueFrom.secretKeyRef.name",
                ),
                (
                    json!({"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "e", "emptyDir": {}}, {"name": "s", "secret": {"secretName": name}}]}),
                    "spec.template.spec.volumes[1].secret.secretName",
                ),
                (
                    json!({"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "p", "projected": {"sources": [{"configMap": {"name": "cm"}}, {"secret": {"name": name}}]}}]}),
                    "spec.template.spec.volumes[0].projected.sources[1].secret.name",
                ),
                (
                    json!({"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "v", "csi": {"driver": "d", "nodePublishSecretRef": {"name": name}}}]}),
                    "spec.template.spec.volumes[0].csi.nodePublishSecretRef.name",
                ),
                (
                    json!({"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "v", "rbd": {"image": "i", "monitors": ["m"], "secretRef": {"name": name}}}]}),
                    "spec.template.spec.volumes[0].rbd.secretRef.name",
                ),
            ]
        };
        let mut p = Policy::default();
        for (spec, path) in uses("db-creds") {
            let e = p.check_content(&marked(spec.clone())).expect_err(path);
            assert!(matches!(e, Violation::Secret { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("Job/j: {path}: Secret `db-creds` is not allowed (allowed: this request's payload Secret `{own}`)")),
                "{msg}"
            );
            assert!(
                msg.contains("--allowed-secrets (GITFAAS_ALLOWED_SECRETS; names or prefix*)"),
                "{msg}"
            );
            assert!(msg.contains("{{PAYLOAD_SECRET}}"), "{msg}");
            // Refused at every Pod Security level: it is not a pod security check.
            let privileged = Policy {
                pod_security: PodSecurity {
                    level: Level::Privileged,
                    waivers: Waivers::default(),
                },
                ..Policy::default()
            };
            assert!(privileged.check_content(&marked(spec)).is_err(), "{path}");
        }
        for (spec, path) in uses(&own) {
            assert_eq!(
                p.check_content(&marked(spec)),
                Ok(()),
                "own payload at {path}"
            );
        }
        for (spec, path) in uses(&other) {
            let msg = p.check_content(&marked(spec)).expect_err(path).to_string();
            assert!(
                msg.contains("it is another request's payload Secret"),
                "{msg}"
            );
        }
        // Without gitfaas' label (not marked), not even a payload Secret.
        for (spec, path) in uses(&own) {
            assert!(p.check_content(&job(spec)).is_err(), "{path}");
        }

        p.allowed_secrets = parse_allowed_secrets(["db-creds", "shared-*", "*"]).expect("valid");
        p.allowed_secrets.pop();
        for name in ["db-creds", "shared-x"] {
            for (spec, path) in uses(name) {
                assert_eq!(p.check_content(&marked(spec)), Ok(()), "{name} at {path}");
            }
        }
        let msg = p
            .check_content(&marked(uses("db-creds2").remove(0).0))
            .expect_err("not listed")
            .to_string();
        assert!(
            msg.contains(&format!(
                "(allowed: this request's payload Secret `{own}`, `db-creds`, `shared-*`)"
            )),
            "{msg}"
        );
        p.allowed_secrets = parse_allowed_secrets(["*"]).expect("valid");
        assert!(p.check_content(&marked(uses(&other).remove(0).0)).is_err());

        // Pod specs and fragments wherever they are.
        let p = Policy::default();
        let cronjob = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "x", "envFrom": [{"secretRef": {"name": "s"}}]}]}}}}}});
        let msg = p.check_content(&cronjob).expect_err("cronjob").to_string();
        assert!(
            msg.contains("spec.jobTemplate.spec.template.spec.containers[0].envFrom[0].secretRef.name: Secret `s`"),
            "{msg}"
        );
        let wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"},
            "spec": {"volumes": [{"name": "s", "secret": {"secretName": "s"}}],
                     "templates": [{"name": "t", "container": {"image": "x"}}]}});
        let msg = p
            .check_content(&wf)
            .expect_err("workflow volume")
            .to_string();
        assert!(
            msg.contains("spec.volumes[0].secret.secretName: Secret `s`"),
            "{msg}"
        );
        let wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"},
            "spec": {"templates": [{"name": "t", "container": {"image": "x",
                "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}}]}});
        let msg = p.check_content(&wf).expect_err("workflow env").to_string();
        assert!(
            msg.contains(
                "spec.templates[0].container.env[0].valueFrom.secretKeyRef.name: Secret `s`"
            ),
            "{msg}"
        );
        // Lookalikes: a ConfigMap's data, a configMapRef, an imagePullSecret.
        let fine = [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                   "data": {"secretName": "s", "secretRef": "s"}}),
            job(
                json!({"imagePullSecrets": [{"name": "registry"}], "containers": [{"name": "c", "image": "x",
                "envFrom": [{"configMapRef": {"name": "s"}}]}]}),
            ),
        ];
        for obj in fine {
            assert_eq!(p.check_content(&obj), Ok(()), "{obj}");
        }
    }

    #[test]
    fn allowances_and_namespaces() {
        let p = Policy::new(["Secret"], Some(vec!["team-a".into()]));
        let obj = job(json!({"containers": [{"name": "c", "image": "x"}]}));
        assert_eq!(p.check(&obj, Some("team-a")), Ok(()));
        assert!(matches!(
            p.check(&obj, Some("kube-system")),
            Err(Violation::Namespace { .. })
        ));
        let role = json!({"kind": "Role"});
        assert_eq!(
            p.check(&role, Some("team-a")),
            Ok(()),
            "only the configured list is banned"
        );
        assert!(
            matches!(p.check(&role, None), Err(Violation::Namespace { .. })),
            "cluster-scoped escapes the allow-list"
        );
        assert!(matches!(
            p.check_content(&json!({"kind": "secret"})),
            Err(Violation::BannedKind { .. })
        ));
    }
}
