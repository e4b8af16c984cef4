//! What may be applied: banned kinds, privileged pods and host access, and
//! the namespaces objects may land in. Checked on the parsed objects of every
//! render (the repository is trusted less than the cluster), never with
//! regexes on text.
//!
//! Pod-level checks walk the whole object rather than known paths, so a pod
//! spec embedded in any kind — a Job, a CronJob, or a CRD such as an Argo
//! Workflow — is checked the same way.

pub mod kinds;

use std::collections::BTreeSet;

use serde_json::Value;

pub use kinds::{
    parse_allowed_kinds, parse_kind_list, PowerKind, CLUSTER_POWER_KINDS, DEFAULT_BANNED_KINDS,
    KNOWN_KINDS,
};

/// The rules in force; built once from the settings.
#[derive(Debug, Clone)]
pub struct Policy {
    banned_kinds: BTreeSet<String>,
    /// Cluster-power kinds let through (`--allow-kinds`).
    pub allowed_kinds: Vec<&'static PowerKind>,
    /// Allow `securityContext.privileged: true`.
    pub allow_privileged: bool,
    /// Allow `hostPath` volumes.
    pub allow_host_path: bool,
    /// Allow `hostNetwork`, `hostPID` and `hostIPC`.
    pub allow_host_namespaces: bool,
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
    /// A pod-level setting needs an explicit allowance.
    #[error("{what} at {path} is refused by policy; start gitfaas with {flag} to allow it")]
    HostAccess {
        /// The setting.
        what: &'static str,
        /// Where in the object.
        path: String,
        /// The flag that allows it.
        flag: &'static str,
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
    /// bans a kind of that API group only) and, when
    /// given, allowing only `allowed_namespaces`. Host access and every
    /// cluster-power kind are refused.
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
            allow_privileged: false,
            allow_host_path: false,
            allow_host_namespaces: false,
            allowed_namespaces: allowed_namespaces.map(|v| v.into_iter().collect()),
        }
    }

    /// Checks one parsed object that would land in `namespace` (None for a
    /// cluster-scoped object).
    pub fn check(&self, object: &Value, namespace: Option<&str>) -> Result<(), Violation> {
        self.check_content(object)?;
        self.check_namespace(namespace)
    }

    /// The checks that need only the object: its kind and its pod-level settings.
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
        let mut path = Vec::new();
        self.walk(object, &mut path)
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

    fn walk(&self, value: &Value, path: &mut Vec<String>) -> Result<(), Violation> {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    path.push(key.clone());
                    self.check_field(key, v, path)?;
                    self.walk(v, path)?;
                    path.pop();
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    path.push(format!("[{i}]"));
                    self.walk(v, path)?;
                    path.pop();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn check_field(&self, key: &str, v: &Value, path: &[String]) -> Result<(), Violation> {
        let refused = |what, flag| {
            Err(Violation::HostAccess {
                what,
                path: path.join("."),
                flag,
            })
        };
        let in_security_context = path.len() >= 2 && path[path.len() - 2] == "securityContext";
        match key {
            "privileged" if in_security_context && is_true(v) && !self.allow_privileged => {
                refused("a privileged container", "--allow-privileged")
            }
            "hostPath" if v.is_object() && !self.allow_host_path => {
                refused("a hostPath volume", "--allow-host-path")
            }
            "hostNetwork" | "hostPID" | "hostIPC" if is_true(v) && !self.allow_host_namespaces => {
                refused(
                    match key {
                        "hostNetwork" => "hostNetwork",
                        "hostPID" => "hostPID",
                        _ => "hostIPC",
                    },
                    "--allow-host-namespaces",
                )
            }
            _ => Ok(()),
        }
    }
}

fn is_true(v: &Value) -> bool {
    matches!(v, Value::Bool(true)) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(pod_spec: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
               "spec": {"template": {"spec": pod_spec}}})
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
    fn host_access_is_refused_wherever_the_pod_spec_is() {
        let p = Policy::default();
        let cases = [
            (
                "privileged container",
                job(
                    json!({"containers": [{"name": "c", "securityContext": {"privileged": true}}]}),
                ),
                "--allow-privileged",
            ),
            (
                "privileged init container",
                job(
                    json!({"initContainers": [{"name": "c", "securityContext": {"privileged": "true"}}]}),
                ),
                "--allow-privileged",
            ),
            (
                "hostPath",
                job(json!({"volumes": [{"name": "v", "hostPath": {"path": "/"}}]})),
                "--allow-host-path",
            ),
            (
                "hostNetwork",
                job(json!({"hostNetwork": true})),
                "--allow-host-namespaces",
            ),
            (
                "hostPID",
                job(json!({"hostPID": true})),
                "--allow-host-namespaces",
            ),
            (
                "CronJob",
                json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"hostIPC": true}}}}}}),
                "--allow-host-namespaces",
            ),
            (
                "custom resource",
                json!({"kind": "Workflow", "spec": {"templates": [{"podSpecPatch": {}, "container": {"securityContext": {"privileged": true}}}]}}),
                "--allow-privileged",
            ),
        ];
        for (what, obj, flag) in cases {
            match p.check(&obj, Some("ns")) {
                Err(v @ Violation::HostAccess { .. }) => {
                    assert!(v.to_string().contains(flag), "{what}: {v}")
                }
                other => panic!("{what}: expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn harmless_lookalikes_pass() {
        let p = Policy::default();
        let cases = [
            job(
                json!({"hostNetwork": false, "containers": [{"securityContext": {"privileged": false}}]}),
            ),
            json!({"kind": "ConfigMap", "data": {"hostPath": "/tmp", "privileged": "true"}}),
        ];
        for obj in cases {
            assert_eq!(p.check(&obj, Some("ns")), Ok(()), "{obj}");
        }
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
    fn allowances_and_namespaces() {
        let mut p = Policy::new(["Secret"], Some(vec!["team-a".into()]));
        p.allow_privileged = true;
        p.allow_host_path = true;
        p.allow_host_namespaces = true;
        let obj = job(
            json!({"hostPID": true, "volumes": [{"hostPath": {}}], "containers": [{"securityContext": {"privileged": true}}]}),
        );
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
