//! Which kinds may be applied: the banned list (the Python gitfaas'
//! `BANNED_KUBE_RESS`, with its meaning) and the kinds Kubernetes itself
//! serves (to tell a typo from a custom resource).

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
