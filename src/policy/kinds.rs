//! Which kinds may be applied: the banned list (the Python gitfaas'
//! `BANNED_KUBE_RESS`, with its meaning), the cluster-power kinds that are
//! always refused unless `--allow-kinds` names them, and the kinds and API
//! groups Kubernetes itself serves (to tell a typo from a custom resource).
//!
//! Cluster-power kinds are matched by API group and kind, never by the kind's
//! spelling alone: a custom resource that happens to be called `Namespace`
//! in `example.com` is not a Namespace.

use serde_json::Value;

/// The Python gitfaas' default banned kinds.
pub const DEFAULT_BANNED_KINDS: &[&str] = &[
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "ServiceAccount",
    "Ingress",
    "Service",
];

/// Kinds Kubernetes itself serves (1.36): a banned-kinds entry must name one
/// of them, or a custom resource's kind with its group (`Workflow.argoproj.io`),
/// so a typo such as `Services` is a start-up error instead of a ban that
/// never matches.
pub const KNOWN_KINDS: &[&str] = &[
    // core
    "Binding",
    "ComponentStatus",
    "ConfigMap",
    "Endpoints",
    "Event",
    "LimitRange",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Pod",
    "PodTemplate",
    "ReplicationController",
    "ResourceQuota",
    "Secret",
    "Service",
    "ServiceAccount",
    // apps, batch, autoscaling, policy
    "ControllerRevision",
    "DaemonSet",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "CronJob",
    "Job",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Eviction",
    // networking, discovery
    "Ingress",
    "IngressClass",
    "NetworkPolicy",
    "IPAddress",
    "ServiceCIDR",
    "EndpointSlice",
    // rbac, authentication, authorization, certificates
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "TokenRequest",
    "TokenReview",
    "SelfSubjectReview",
    "SubjectAccessReview",
    "SelfSubjectAccessReview",
    "LocalSubjectAccessReview",
    "SelfSubjectRulesReview",
    "CertificateSigningRequest",
    "ClusterTrustBundle",
    "PodCertificateRequest",
    // storage, scheduling, node, coordination
    "StorageClass",
    "VolumeAttachment",
    "CSIDriver",
    "CSINode",
    "CSIStorageCapacity",
    "VolumeAttributesClass",
    "StorageVersionMigration",
    "PriorityClass",
    "RuntimeClass",
    "Lease",
    "LeaseCandidate",
    "Workload",
    "PodGroup",
    // cluster extension and admission
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "CustomResourceDefinition",
    "APIService",
    "FlowSchema",
    "PriorityLevelConfiguration",
    "StorageVersion",
    // dynamic resource allocation
    "ResourceClaim",
    "ResourceClaimTemplate",
    "ResourceSlice",
    "DeviceClass",
    "DeviceTaintRule",
];

/// Reads a banned-kinds list as the Python gitfaas writes it (space-separated,
/// `"Role RoleBinding Service"`) or as a flag usually is (comma-separated),
/// or both mixed. Each entry is a kind Kubernetes serves, or `Kind.group` for
/// a custom resource; anything else is an error naming it.
pub fn parse_kind_list(list: &str) -> Result<Vec<String>, String> {
    let mut kinds = Vec::new();
    for entry in list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
    {
        let known = match entry.split_once('.') {
            // A custom resource's kind, qualified by its group.
            Some((kind, group)) => {
                !kind.is_empty()
                    && kind.chars().all(|c| c.is_ascii_alphanumeric())
                    && crate::names::Rule::Subdomain.accepts(group, false)
                    && group.contains('.')
            }
            None => KNOWN_KINDS.iter().any(|k| k.eq_ignore_ascii_case(entry)),
        };
        if !known {
            let hint = KNOWN_KINDS
                .iter()
                .find(|k| {
                    let e = entry.to_ascii_lowercase();
                    let k = k.to_ascii_lowercase();
                    e.trim_end_matches('s') == k || e.trim_end_matches("es") == k
                })
                .map(|k| format!(" (did you mean {k}?)"))
                .unwrap_or_default();
            return Err(format!(
                "`{entry}` is not a kind Kubernetes serves{hint}: write kinds as in a manifest's `kind:` (Role, ServiceAccount…), separated by spaces or commas, and a custom resource as Kind.group (Workflow.argoproj.io)"
            ));
        }
        kinds.push(entry.to_string());
    }
    Ok(kinds)
}

/// API groups Kubernetes serves itself (1.36); any other group is a custom
/// resource's, whose schema gitfaas cannot know.
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "extensions",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

/// An object's kind and API group, read as the applier resolves them
/// (`apps/v1` → `apps`, `v1` → the core group `""`).
pub fn kind_and_group(object: &Value) -> (&str, &str) {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let group = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.split_once('/'))
        .map_or("", |(g, _)| g);
    (kind, group)
}

/// Whether `group` is one Kubernetes serves itself.
pub fn is_builtin_group(group: &str) -> bool {
    BUILTIN_GROUPS.iter().any(|g| g.eq_ignore_ascii_case(group))
}

/// A kind that grants power over the whole cluster, beyond the namespace a
/// function runs in.
#[derive(Debug, PartialEq, Eq)]
pub struct PowerKind {
    /// Its API group (`""` for the core group).
    pub group: &'static str,
    /// Its kind.
    pub kind: &'static str,
    /// How `--allow-kinds` names it.
    pub allow: &'static str,
    /// What it would let the repository do, for the refusal.
    pub why: &'static str,
}

/// The `type` of a Secret that holds a service account's token.
const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";

/// The cluster-power kinds, refused whatever the banned list says. A
/// gitfaas that may create them lets every committer of the repository
/// intercept API requests, replace APIs, expose node paths, preempt other
/// workloads, choose container runtimes, get certificates signed, or read a
/// service account's token.
pub const CLUSTER_POWER_KINDS: &[PowerKind] = &[
    PowerKind {
        group: "admissionregistration.k8s.io",
        kind: "MutatingWebhookConfiguration",
        allow: "MutatingWebhookConfiguration",
        why: "it sends matching API requests of every namespace to a webhook that can change them",
    },
    PowerKind {
        group: "admissionregistration.k8s.io",
        kind: "ValidatingWebhookConfiguration",
        allow: "ValidatingWebhookConfiguration",
        why: "it sends matching API requests of every namespace to a webhook that sees and can refuse them",
    },
    PowerKind {
        group: "admissionregistration.k8s.io",
        kind: "ValidatingAdmissionPolicy",
        allow: "ValidatingAdmissionPolicy",
        why: "it defines rules that can refuse API requests in every namespace",
    },
    PowerKind {
        group: "admissionregistration.k8s.io",
        kind: "ValidatingAdmissionPolicyBinding",
        allow: "ValidatingAdmissionPolicyBinding",
        why: "it puts an admission policy in force across the cluster",
    },
    PowerKind {
        group: "admissionregistration.k8s.io",
        kind: "MutatingAdmissionPolicy",
        allow: "MutatingAdmissionPolicy",
        why: "it defines rules that change API requests in every namespace",
    },
    PowerKind {
        group: "admissionregistration.k8s.io",
        kind: "MutatingAdmissionPolicyBinding",
        allow: "MutatingAdmissionPolicyBinding",
        why: "it puts a mutating admission policy in force across the cluster",
    },
    PowerKind {
        group: "apiextensions.k8s.io",
        kind: "CustomResourceDefinition",
        allow: "CustomResourceDefinition",
        why: "it adds or replaces an API of the whole cluster",
    },
    PowerKind {
        group: "apiregistration.k8s.io",
        kind: "APIService",
        allow: "APIService",
        why: "it routes a whole API group to a server of its choosing",
    },
    PowerKind {
        group: "",
        kind: "PersistentVolume",
        allow: "PersistentVolume",
        why: "it can give pods any path of a node or any storage backend",
    },
    PowerKind {
        group: "",
        kind: "Namespace",
        allow: "Namespace",
        why: "it creates a namespace outside the ones gitfaas' functions are given",
    },
    PowerKind {
        group: "",
        kind: "Node",
        allow: "Node",
        why: "it registers a machine that pods of every namespace may be scheduled onto",
    },
    PowerKind {
        group: "storage.k8s.io",
        kind: "StorageClass",
        allow: "StorageClass",
        why: "it decides how volumes are provisioned for the whole cluster",
    },
    PowerKind {
        group: "storage.k8s.io",
        kind: "CSIDriver",
        allow: "CSIDriver",
        why: "it changes how a storage driver mounts volumes on every node",
    },
    PowerKind {
        group: "scheduling.k8s.io",
        kind: "PriorityClass",
        allow: "PriorityClass",
        why: "it lets pods preempt (evict) the workloads of every namespace",
    },
    PowerKind {
        group: "node.k8s.io",
        kind: "RuntimeClass",
        allow: "RuntimeClass",
        why: "it chooses the container runtime, and so the isolation, pods run with",
    },
    PowerKind {
        group: "certificates.k8s.io",
        kind: "CertificateSigningRequest",
        allow: "CertificateSigningRequest",
        why: "it asks for certificates signed by the cluster's certificate authorities",
    },
    PowerKind {
        group: "",
        kind: "Secret",
        allow: "Secret/service-account-token",
        why: "a Secret of type kubernetes.io/service-account-token is filled with a long-lived token of the service account it names, with all of that account's API permissions",
    },
];

/// The cluster-power kind `object` is, if any.
pub fn cluster_power(object: &Value) -> Option<&'static PowerKind> {
    let (kind, group) = kind_and_group(object);
    CLUSTER_POWER_KINDS.iter().find(|p| {
        p.group.eq_ignore_ascii_case(group)
            && p.kind.eq_ignore_ascii_case(kind)
            && (p.kind != "Secret"
                || object
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case(TOKEN_SECRET_TYPE)))
    })
}

/// Reads `--allow-kinds` (`GITFAAS_ALLOW_KINDS`), separated like the banned
/// list: each entry names a cluster-power kind (`Namespace`, or with its
/// group, `StorageClass.storage.k8s.io`), or `Secret/service-account-token`
/// for token Secrets. Anything else is an error, so a typo never leaves a
/// kind refused that the admin meant to allow, and no entry pretends to
/// allow what is not refused in the first place.
pub fn parse_allowed_kinds(list: &str) -> Result<Vec<&'static PowerKind>, String> {
    let mut allowed = Vec::new();
    for entry in list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
    {
        let found = CLUSTER_POWER_KINDS.iter().find(|p| {
            entry.eq_ignore_ascii_case(p.allow)
                || (p.kind != "Secret"
                    && !p.group.is_empty()
                    && entry.eq_ignore_ascii_case(&format!("{}.{}", p.kind, p.group)))
                || (p.kind == "Secret"
                    && entry.eq_ignore_ascii_case(&format!("Secret/{TOKEN_SECRET_TYPE}")))
        });
        match found {
            Some(p) => {
                if !allowed.contains(&p) {
                    allowed.push(p);
                }
            }
            None => {
                let names: Vec<&str> = CLUSTER_POWER_KINDS.iter().map(|p| p.allow).collect();
                let why = if entry.eq_ignore_ascii_case("Secret") {
                    "Secrets are not refused as such, only service-account-token Secrets: write Secret/service-account-token".to_string()
                } else if parse_kind_list(entry).is_ok() {
                    format!("{entry} is not a cluster-power kind, so there is nothing to allow (a kind on --banned-kinds is allowed by taking it off that list)")
                } else {
                    format!("{entry} is not a kind Kubernetes serves")
                };
                return Err(format!(
                    "`{entry}`: {why}; --allow-kinds takes cluster-power kinds, separated by spaces or commas: {}",
                    names.join(", ")
                ));
            }
        }
    }
    Ok(allowed)
}
