//! The baseline level's checks: they prevent known privilege escalations.
//! Each one is Pod Security Admission's check of the same id, with its
//! allowed values and its words.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    added_beyond, containers_phrase, containers_where, failure, get, go_quote, join, join_quote,
    not_false, obj, pluralize, text, volumes, Failure, Obj, Pod, Waivers, HOST_NAMESPACES,
};

pub(super) fn app_armor_profile(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    fn allowed(t: Option<&Value>) -> bool {
        matches!(
            t.and_then(Value::as_str),
            Some("RuntimeDefault" | "Localhost")
        )
    }
    const PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let mut paths = Vec::new();
    if let Some(profile) = pod.sc().and_then(|sc| obj(sc, "appArmorProfile")) {
        if !allowed(get(profile, "type")) {
            setters.push("pod".to_string());
            bad_values.insert(get(profile, "type").map(text).unwrap_or_default());
            paths.push(pod.sc_path("appArmorProfile.type"));
        }
    }
    let mut bad_containers = Vec::new();
    for c in &pod.containers {
        if let Some(profile) = c.sc().and_then(|sc| obj(sc, "appArmorProfile")) {
            if !allowed(get(profile, "type")) {
                bad_containers.push(c.name.clone());
                bad_values.insert(get(profile, "type").map(text).unwrap_or_default());
                paths.push(c.sc_path("appArmorProfile.type"));
            }
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    let mut annotations = Vec::new();
    if let Some((meta, meta_path)) = &pod.meta {
        for (key, value) in obj(meta, "annotations").into_iter().flatten() {
            let ok = value.as_str().is_some_and(|v| {
                v.is_empty() || v == "runtime/default" || v.starts_with("localhost/")
            });
            if key.starts_with(PREFIX) && !ok {
                annotations.push(format!("{key}={}", go_quote(&text(value))));
                paths.push(format!("{meta_path}.annotations[{key}]"));
            }
        }
    }
    annotations.sort();
    let mut values: Vec<String> = bad_values.into_iter().collect();
    if !annotations.is_empty() {
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_string());
        values.extend(annotations);
    }
    (!setters.is_empty()).then(|| Failure {
        reason: pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        )
        .to_string(),
        detail: format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
        ..failure(paths)
    })
}

const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

pub(super) fn capabilities_baseline(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    let mut bad_containers = Vec::new();
    let mut bad = BTreeSet::new();
    let mut paths = Vec::new();
    for c in &pod.containers {
        if let Some(caps) = c.sc().and_then(|sc| obj(sc, "capabilities")) {
            let beyond = added_beyond(caps, |cap| BASELINE_CAPABILITIES.contains(&cap));
            if !beyond.is_empty() {
                bad_containers.push(c.name.clone());
                bad.extend(beyond);
                paths.push(c.sc_path("capabilities.add"));
            }
        }
    }
    (!bad_containers.is_empty()).then(|| Failure {
        reason: "non-default capabilities".into(),
        detail: format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad_containers),
            join_quote(&bad.into_iter().collect::<Vec<_>>())
        ),
        ..failure(paths)
    })
}

pub(super) fn host_namespaces(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    let set: Vec<&str> = HOST_NAMESPACES
        .into_iter()
        .filter(|k| not_false(get(pod.spec, k)))
        .collect();
    (!set.is_empty()).then(|| Failure {
        reason: "host namespaces".into(),
        detail: set
            .iter()
            .map(|k| format!("{k}=true"))
            .collect::<Vec<_>>()
            .join(", "),
        waiver: Some("--allow-host-namespaces"),
        ..failure(set.iter().map(|k| join(&pod.path, k)).collect())
    })
}

pub(super) fn host_path_volumes(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    let mut names = Vec::new();
    let mut paths = Vec::new();
    for (i, v) in volumes(pod) {
        if get(v, "hostPath").is_some() {
            names.push(get(v, "name").map(text).unwrap_or_default());
            paths.push(format!("{}[{i}].hostPath", join(&pod.path, "volumes")));
        }
    }
    (!names.is_empty()).then(|| Failure {
        reason: "hostPath volumes".into(),
        detail: format!(
            "{} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names)
        ),
        waiver: Some("--allow-host-path"),
        ..failure(paths)
    })
}

pub(super) fn host_ports(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    let mut bad_containers = Vec::new();
    let mut ports = BTreeSet::new();
    let mut paths = Vec::new();
    for c in &pod.containers {
        let mut valid = true;
        if let Some(Value::Array(items)) = c.spec.get("ports") {
            for (i, port) in items.iter().enumerate() {
                let host_port = port.as_object().and_then(|p| get(p, "hostPort"));
                let zero = match host_port {
                    None => true,
                    Some(Value::Number(n)) => n.as_f64() == Some(0.0),
                    Some(_) => false,
                };
                if let (false, Some(v)) = (zero, host_port) {
                    valid = false;
                    ports.insert(text(v));
                    paths.push(format!("{}.ports[{i}].hostPort", c.path));
                }
            }
        }
        if !valid {
            bad_containers.push(c.name.clone());
        }
    }
    (!bad_containers.is_empty()).then(|| Failure {
        reason: "hostPort".into(),
        detail: format!(
            "{} {} {} {}",
            containers_phrase(&bad_containers),
            pluralize("uses", "use", bad_containers.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
        ..failure(paths)
    })
}

pub(super) fn host_probes_and_lifecycle(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    let mut bad_containers = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    let mut paths = Vec::new();
    for c in &pod.containers {
        let probes = ["livenessProbe", "readinessProbe", "startupProbe"]
            .into_iter()
            .filter_map(|p| obj(c.spec, p).map(|o| (o, join(&c.path, p))));
        let lifecycle = obj(c.spec, "lifecycle").into_iter().flat_map(|l| {
            ["postStart", "preStop"]
                .into_iter()
                .filter_map(move |h| obj(l, h).map(|o| (o, format!("{}.lifecycle.{h}", c.path))))
        });
        for (handler_owner, owner_path) in probes.chain(lifecycle) {
            for action in ["httpGet", "tcpSocket"] {
                let host = obj(handler_owner, action).and_then(|a| get(a, "host"));
                if let Some(h) = host.filter(|h| h.as_str() != Some("")) {
                    bad_containers.insert(c.name.clone());
                    hosts.insert(text(h));
                    paths.push(format!("{owner_path}.{action}.host"));
                }
            }
        }
    }
    (!bad_containers.is_empty()).then(|| {
        let names: Vec<String> = bad_containers.into_iter().collect();
        let hosts: Vec<String> = hosts.into_iter().collect();
        Failure {
            reason: "probe or lifecycle host".into(),
            detail: format!(
                "{} {} {} {}",
                containers_phrase(&names),
                pluralize("uses", "use", names.len()),
                pluralize(
                    "probe or lifecycle host",
                    "probe or lifecycle hosts",
                    hosts.len()
                ),
                join_quote(&hosts)
            ),
            ..failure(paths)
        }
    })
}

pub(super) fn privileged(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    let (names, paths) = containers_where(pod, "privileged", not_false);
    (!names.is_empty()).then(|| Failure {
        reason: "privileged".into(),
        detail: format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&names)
        ),
        waiver: Some("--allow-privileged"),
        ..failure(paths)
    })
}

pub(super) fn proc_mount_baseline(pod: &Pod<'_>, w: &Waivers) -> Option<Failure> {
    if pod.user_namespace() {
        return None;
    }
    proc_mount(pod, w)
}

pub(super) fn proc_mount(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    let mut types = BTreeSet::new();
    let (names, paths) = containers_where(pod, "procMount", |v| match v {
        Some(v) if v.as_str() != Some("Default") => {
            types.insert(text(v));
            true
        }
        _ => false,
    });
    (!names.is_empty()).then(|| Failure {
        reason: "procMount".into(),
        detail: format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&names),
            join_quote(&types.into_iter().collect::<Vec<_>>())
        ),
        ..failure(paths)
    })
}

pub(super) fn se_linux_options(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    const TYPES: [&str; 5] = [
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |opts: &Obj| {
        let mut ok = true;
        let t = get(opts, "type");
        if !t
            .map_or(Some(""), Value::as_str)
            .is_some_and(|t| TYPES.contains(&t))
        {
            ok = false;
            bad_types.insert(t.map(text).unwrap_or_default());
        }
        let non_empty = |k| get(opts, k).is_some_and(|v| v.as_str() != Some(""));
        if non_empty("user") {
            ok = false;
            set_user = true;
        }
        if non_empty("role") {
            ok = false;
            set_role = true;
        }
        ok
    };
    let mut setters = Vec::new();
    let mut paths = Vec::new();
    if let Some(opts) = pod.sc().and_then(|sc| obj(sc, "seLinuxOptions")) {
        if !valid(opts) {
            setters.push("pod".to_string());
            paths.push(pod.sc_path("seLinuxOptions"));
        }
    }
    let mut bad_containers = Vec::new();
    for c in &pod.containers {
        if let Some(opts) = c.sc().and_then(|sc| obj(sc, "seLinuxOptions")) {
            if !valid(opts) {
                bad_containers.push(c.name.clone());
                paths.push(c.sc_path("seLinuxOptions"));
            }
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types.into_iter().collect::<Vec<_>>())
        ));
    }
    if set_user {
        data.push("user may not be set".to_string());
    }
    if set_role {
        data.push("role may not be set".to_string());
    }
    Some(Failure {
        reason: "seLinuxOptions".into(),
        detail: format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
        ..failure(paths)
    })
}

pub(super) fn valid_seccomp(profile: &Obj) -> bool {
    matches!(
        get(profile, "type").and_then(Value::as_str),
        Some("RuntimeDefault" | "Localhost")
    )
}

/// The seccomp profiles set to a forbidden type: setters, values, paths;
/// and whether the pod sets an allowed one, and the containers that set none.
pub(super) struct Seccomp {
    pub(super) setters: Vec<String>,
    pub(super) values: BTreeSet<String>,
    pub(super) paths: Vec<String>,
    pub(super) pod_set: bool,
    pub(super) unset: Vec<String>,
}

pub(super) fn seccomp(pod: &Pod<'_>) -> Seccomp {
    let mut s = Seccomp {
        setters: Vec::new(),
        values: BTreeSet::new(),
        paths: Vec::new(),
        pod_set: false,
        unset: Vec::new(),
    };
    if let Some(profile) = pod.sc().and_then(|sc| obj(sc, "seccompProfile")) {
        if valid_seccomp(profile) {
            s.pod_set = true;
        } else {
            s.setters.push("pod".into());
            s.values
                .insert(get(profile, "type").map(text).unwrap_or_default());
            s.paths.push(pod.sc_path("seccompProfile.type"));
        }
    }
    let mut bad_containers = Vec::new();
    for c in &pod.containers {
        match c.sc().and_then(|sc| obj(sc, "seccompProfile")) {
            Some(profile) if !valid_seccomp(profile) => {
                bad_containers.push(c.name.clone());
                s.values
                    .insert(get(profile, "type").map(text).unwrap_or_default());
                s.paths.push(c.sc_path("seccompProfile.type"));
            }
            Some(_) => {}
            None => s.unset.push(c.name.clone()),
        }
    }
    if !bad_containers.is_empty() {
        s.setters.push(containers_phrase(&bad_containers));
    }
    s
}

pub(super) fn seccomp_forbidden(s: Seccomp) -> Option<Failure> {
    (!s.setters.is_empty()).then(|| Failure {
        reason: "seccompProfile".into(),
        detail: format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            s.setters.join(" and "),
            join_quote(&s.values.into_iter().collect::<Vec<_>>())
        ),
        ..failure(s.paths)
    })
}

pub(super) fn seccomp_baseline(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    seccomp_forbidden(seccomp(pod))
}

const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

pub(super) fn sysctls(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    let mut forbidden = Vec::new();
    let mut paths = Vec::new();
    if let Some(Value::Array(items)) = pod.sc().and_then(|sc| get(sc, "sysctls")) {
        for (i, s) in items.iter().enumerate() {
            let name = s.as_object().and_then(|s| get(s, "name"));
            if !name
                .and_then(Value::as_str)
                .is_some_and(|n| SAFE_SYSCTLS.contains(&n))
            {
                forbidden.push(name.map(text).unwrap_or_default());
                paths.push(format!("{}[{i}].name", pod.sc_path("sysctls")));
            }
        }
    }
    (!forbidden.is_empty()).then(|| Failure {
        reason: "forbidden sysctls".into(),
        detail: forbidden.join(", "),
        ..failure(paths)
    })
}

pub(super) fn windows_host_process(pod: &Pod<'_>, _: &Waivers) -> Option<Failure> {
    let host_process = |sc: Option<&Obj>| {
        not_false(
            sc.and_then(|sc| obj(sc, "windowsOptions"))
                .and_then(|w| get(w, "hostProcess")),
        )
    };
    let mut setters = Vec::new();
    let mut paths = Vec::new();
    if host_process(pod.sc()) {
        setters.push("pod".to_string());
        paths.push(pod.sc_path("windowsOptions.hostProcess"));
    }
    let mut names = Vec::new();
    for c in &pod.containers {
        if host_process(c.sc()) {
            names.push(c.name.clone());
            paths.push(c.sc_path("windowsOptions.hostProcess"));
        }
    }
    if !names.is_empty() {
        setters.push(containers_phrase(&names));
    }
    (!setters.is_empty()).then(|| Failure {
        reason: "hostProcess".into(),
        detail: format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
        ..failure(paths)
    })
}
