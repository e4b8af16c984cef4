//! The restricted level's own checks, on top of the baseline ones they do
//! not override: pod hardening. Each one is Pod Security Admission's check
//! of the same id, with its allowed values and its words. A fragment of a
//! custom resource (not a whole pod spec) is held only to what they forbid,
//! not to what they require to be set.

use std::collections::BTreeSet;

use serde_json::Value;

use super::baseline::{seccomp, seccomp_forbidden};
use super::{
    added_beyond, containers_phrase, containers_where, failure, get, join, join_quote, obj,
    pluralize, text, volumes, Failure, Pod, Waivers,
};

pub(super) fn seccomp_restricted(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    if pod.windows() {
        return None;
    }
    let s = seccomp(pod);
    let (pod_set, unset) = (s.pod_set, s.unset.clone());
    if let Some(f) = seccomp_forbidden(s) {
        return Some(f);
    }
    (pod.whole && !pod_set && !unset.is_empty()).then(|| Failure {
        reason: "seccompProfile".into(),
        detail: format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_phrase(&unset)
        ),
        ..failure(vec![pod.sc_path("seccompProfile.type")])
    })
}

pub(super) fn allow_privilege_escalation(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    if pod.windows() {
        return None;
    }
    let (names, paths) = containers_where(pod, "allowPrivilegeEscalation", |v| match v {
        None => pod.whole,
        Some(v) => v != &Value::Bool(false),
    });
    (!names.is_empty()).then(|| Failure {
        reason: "allowPrivilegeEscalation != false".into(),
        detail: format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&names)
        ),
        ..failure(paths)
    })
}

pub(super) fn capabilities_restricted(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    if pod.windows() {
        return None;
    }
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut forbidden = BTreeSet::new();
    let mut paths = Vec::new();
    for c in &pod.containers {
        let caps = c.sc().and_then(|sc| obj(sc, "capabilities"));
        let drops_all = caps.and_then(|caps| get(caps, "drop")).is_some_and(
            |d| matches!(d, Value::Array(items) if items.iter().any(|c| c.as_str() == Some("ALL"))),
        );
        if !drops_all && pod.whole {
            missing_drop.push(c.name.clone());
            paths.push(c.sc_path("capabilities.drop"));
        }
        if let Some(caps) = caps {
            let beyond = added_beyond(caps, |cap| cap == "NET_BIND_SERVICE");
            if !beyond.is_empty() {
                adding.push(c.name.clone());
                forbidden.extend(beyond);
                paths.push(c.sc_path("capabilities.add"));
            }
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&forbidden.into_iter().collect::<Vec<_>>())
        ));
    }
    (!details.is_empty()).then(|| Failure {
        reason: "unrestricted capabilities".into(),
        detail: details.join("; "),
        ..failure(paths)
    })
}

pub(super) fn restricted_volumes(pod: &Pod<'_>, w: &Waivers) -> Option<Failure> {
    const ALLOWED: [&str; 9] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    const RESTRICTED: [&str; 21] = [
        "hostPath",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "nfs",
        "iscsi",
        "glusterfs",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "fc",
        "azureFile",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "portworxVolume",
        "scaleIO",
        "storageos",
    ];
    let mut names = Vec::new();
    let mut types = BTreeSet::new();
    let mut paths = Vec::new();
    for (i, v) in volumes(pod) {
        let path = format!("{}[{i}]", join(&pod.path, "volumes"));
        // A restricted source is refused even beside an allowed one (the
        // API server refuses two sources; nothing is lost by refusing first).
        let bad = match RESTRICTED.into_iter().find(|k| get(v, k).is_some()) {
            Some("hostPath") if w.host_path => None,
            Some(t) => Some((t, format!("{path}.{t}"))),
            // A volume without a source becomes an emptyDir; any other key
            // is a type this standard does not know, which it refuses.
            None if !ALLOWED.iter().any(|k| get(v, k).is_some())
                && pod.whole
                && v.iter().any(|(k, val)| k != "name" && !val.is_null()) =>
            {
                Some(("unknown", path))
            }
            None => None,
        };
        if let Some((t, p)) = bad {
            names.push(get(v, "name").map(text).unwrap_or_default());
            types.insert(t.to_string());
            paths.push(p);
        }
    }
    (!names.is_empty()).then(|| Failure {
        reason: "restricted volume types".into(),
        detail: format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names),
            pluralize("uses", "use", names.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types.iter().cloned().collect::<Vec<_>>())
        ),
        waiver: types.contains("hostPath").then_some("--allow-host-path"),
        ..failure(paths)
    })
}

pub(super) fn run_as_non_root(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    if pod.user_namespace() {
        return None;
    }
    let mut setters = Vec::new();
    let mut paths = Vec::new();
    let mut pod_non_root = false;
    match pod.sc().and_then(|sc| get(sc, "runAsNonRoot")) {
        Some(Value::Bool(true)) => pod_non_root = true,
        Some(_) => {
            setters.push("pod".to_string());
            paths.push(pod.sc_path("runAsNonRoot"));
        }
        None => {}
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in &pod.containers {
        match c.sc().and_then(|sc| get(sc, "runAsNonRoot")) {
            Some(Value::Bool(true)) => {}
            Some(_) => {
                explicit.push(c.name.clone());
                paths.push(c.sc_path("runAsNonRoot"));
            }
            None if !pod_non_root => implicit.push(c.name.clone()),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return Some(Failure {
            reason: "runAsNonRoot != true".into(),
            detail: format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
            ..failure(paths)
        });
    }
    (pod.whole && !implicit.is_empty()).then(|| Failure {
        reason: "runAsNonRoot != true".into(),
        detail: format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers_phrase(&implicit)
        ),
        ..failure(vec![pod.sc_path("runAsNonRoot")])
    })
}

pub(super) fn run_as_user(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    if pod.user_namespace() {
        return None;
    }
    let root = |v: Option<&Value>| match v {
        None => false,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(_) => true,
    };
    let mut setters = Vec::new();
    let mut paths = Vec::new();
    if root(pod.sc().and_then(|sc| get(sc, "runAsUser"))) {
        setters.push("pod".to_string());
        paths.push(pod.sc_path("runAsUser"));
    }
    let (names, container_paths) = containers_where(pod, "runAsUser", root);
    paths.extend(container_paths);
    if !names.is_empty() {
        setters.push(containers_phrase(&names));
    }
    (!setters.is_empty()).then(|| Failure {
        reason: "runAsUser=0".into(),
        detail: format!("{} must not set runAsUser=0", setters.join(" and ")),
        ..failure(paths)
    })
}
