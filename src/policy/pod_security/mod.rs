//! Kubernetes' Pod Security Standards, check for check as the API server's
//! Pod Security Admission defines them (`k8s.io/pod-security-admission`,
//! policy version "latest" of Kubernetes 1.36): the same checks, the same
//! allowed values, the same containers (init, regular and ephemeral) and the
//! same words in a refusal. This module owns finding the pod specs in an
//! object and judging each against a level; the checks themselves are in
//! `baseline` and `restricted`, as the standard groups them.
//!
//! A pod spec is where the built-in kinds keep it (a Pod's `spec`, a
//! `template.spec`, a CronJob's `spec.jobTemplate.spec.template.spec`), or
//! any mapping with `containers` as a list of mappings, so a custom
//! resource's pod spec (a Knative Service, a JobSet) is judged whole. A
//! custom resource may also carry pod settings outside a pod spec (an Argo
//! Workflow template's `container`, its `volumes` and `securityContext`):
//! such a fragment is refused for every value a check forbids, but the
//! restricted level's requirements ("must set runAsNonRoot") are left out
//! for it, since what the custom resource's controller fills in is unknown.
//!
//! Values are judged as written, before the API server's defaulting, as Go
//! reads them: absent and `null` are unset. A value of the wrong type (the
//! string `"true"` where a boolean belongs) counts as the forbidden value:
//! the API server refuses such an object anyway, and a custom resource's
//! controller may read it leniently.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

mod baseline;
mod restricted;
#[cfg(test)]
mod tests;

type Obj = Map<String, Value>;

/// A level of the Pod Security Standards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    /// No pod checks.
    Privileged,
    /// Prevents known privilege escalations: the default.
    #[default]
    Baseline,
    /// Baseline plus pod hardening best practice.
    Restricted,
}

impl Level {
    /// The level's name, as in a namespace's `pod-security.kubernetes.io/enforce` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err(format!(
                "`{s}` is not a Pod Security Standards level: use baseline (the default), restricted, or privileged (no pod checks)"
            )),
        }
    }
}

/// Checks the cluster admin waived, each exactly one check of the standard
/// (the flags of gitfaas before it had levels).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waivers {
    /// `--allow-privileged`: the `privileged` check.
    pub privileged: bool,
    /// `--allow-host-path`: the `hostPathVolumes` check, and hostPath volumes
    /// in the restricted level's volume-type check.
    pub host_path: bool,
    /// `--allow-host-namespaces`: the `hostNamespaces` check.
    pub host_namespaces: bool,
}

/// The level in force and its waivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodSecurity {
    /// The level.
    pub level: Level,
    /// Checks waived at that level.
    pub waivers: Waivers,
}

/// One check a pod spec fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Pod Security Admission's id of the check (`capabilities_baseline`).
    pub check: &'static str,
    /// The API server's "forbidden reason" (`non-default capabilities`).
    pub reason: String,
    /// The API server's "forbidden detail".
    pub detail: String,
    /// The fields at fault, from the object's root.
    pub paths: Vec<String>,
    /// The flag that waives this check, when there is one.
    pub waiver: Option<&'static str>,
}

impl Failure {
    /// The check in the API server's words: `reason (detail)`.
    pub fn api_words(&self) -> String {
        if self.detail.is_empty() {
            self.reason.clone()
        } else {
            format!("{} ({})", self.reason, self.detail)
        }
    }
}

/// A pod spec found in an object, or a fragment of one in a custom resource.
/// The labels a Job selects its pods by. The Job controller adopts any pod
/// that carries them: a manifest's pod wearing another Job's would be
/// counted as that Job's (and could end it), so no manifest may set them;
/// the API server sets them on a Job's own pods.
pub const JOB_CONTROLLER_LABELS: [&str; 2] =
    ["batch.kubernetes.io/controller-uid", "controller-uid"];

pub struct Pod<'a> {
    /// Where it is, from the object's root (`spec.template.spec`).
    path: String,
    /// The pod-level fields.
    spec: &'a Obj,
    /// The pod's metadata (annotations), with its path.
    meta: Option<(&'a Obj, String)>,
    containers: Vec<Container<'a>>,
    /// A whole pod spec (every check), not a fragment (forbidden values only).
    whole: bool,
}

struct Container<'a> {
    name: String,
    path: String,
    spec: &'a Obj,
}

/// The container lists of a pod spec, in the order the API server visits them.
const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

const HOST_NAMESPACES: [&str; 3] = ["hostNetwork", "hostPID", "hostIPC"];

/// Every pod spec in `object`, and in a custom resource every fragment of one.
pub fn pods(object: &Value) -> Vec<Pod<'_>> {
    let (kind, group) = super::kinds::kind_and_group(object);
    let builtin = super::kinds::is_builtin_group(group);
    let walk = Walk {
        known: if builtin { known_pod_path(kind) } else { None },
        fragments: !builtin,
    };
    let mut found = Vec::new();
    walk.visit(object, &mut Vec::new(), None, true, &mut found);
    found
}

/// Where a built-in kind keeps its pod spec.
fn known_pod_path(kind: &str) -> Option<&'static str> {
    const TEMPLATED: [&str; 6] = [
        "Job",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
    ];
    if kind.eq_ignore_ascii_case("Pod") {
        Some("spec")
    } else if kind.eq_ignore_ascii_case("PodTemplate") {
        Some("template.spec")
    } else if kind.eq_ignore_ascii_case("CronJob") {
        Some("spec.jobTemplate.spec.template.spec")
    } else if TEMPLATED.iter().any(|k| k.eq_ignore_ascii_case(kind)) {
        Some("spec.template.spec")
    } else {
        None
    }
}

struct Walk {
    known: Option<&'static str>,
    fragments: bool,
}

/// One step of the path from the object's root to a value: a key of a
/// map or an index of a list. The walk keeps the steps and writes a path
/// out only for a pod it found: most values are no pod, and a string per
/// value was a tenth of a publish's instructions (issue 28's profile).
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `steps` written as the API server words a field path:
/// `spec.template.spec.containers[0]`.
fn path_of(steps: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(i) => {
                use std::fmt::Write;
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

/// Whether `steps` are the keys of `known` (`spec.template.spec`), no index.
fn steps_are(steps: &[Step<'_>], known: &str) -> bool {
    let mut keys = known.split('.');
    steps
        .iter()
        .all(|step| matches!(step, Step::Key(k) if keys.next() == Some(*k)))
        && keys.next().is_none()
}

impl Walk {
    /// `meta` is the metadata beside `value` when `value` is a `spec`;
    /// `candidate` is false for the containers of a pod spec already found.
    /// `steps` lead to `value`; it is as it was when this returns.
    fn visit<'a>(
        &self,
        value: &'a Value,
        steps: &mut Vec<Step<'a>>,
        meta: Option<(&'a Obj, String)>,
        candidate: bool,
        found: &mut Vec<Pod<'a>>,
    ) {
        match value {
            Value::Object(map) => {
                let whole =
                    self.known.is_some_and(|known| steps_are(steps, known)) || is_pod_spec(map);
                if whole {
                    found.push(Pod::whole(map, path_of(steps), meta));
                } else if self.fragments && candidate && is_fragment(map) {
                    found.push(Pod::fragment(map, path_of(steps)));
                }
                for (key, child) in map {
                    let beside = match (key.as_str(), obj(map, "metadata")) {
                        ("spec", Some(m)) => Some((m, join(&path_of(steps), "metadata"))),
                        _ => None,
                    };
                    steps.push(Step::Key(key));
                    match child {
                        // The pod's own containers are judged with it, not again as fragments.
                        Value::Array(items) if whole && CONTAINER_LISTS.contains(&key.as_str()) => {
                            for (i, item) in items.iter().enumerate() {
                                steps.push(Step::Index(i));
                                self.visit(item, steps, None, false, found);
                                steps.pop();
                            }
                        }
                        _ => self.visit(child, steps, beside, true, found),
                    }
                    steps.pop();
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    steps.push(Step::Index(i));
                    self.visit(item, steps, None, true, found);
                    steps.pop();
                }
            }
            _ => {}
        }
    }
}

fn is_pod_spec(map: &Obj) -> bool {
    matches!(map.get("containers"), Some(Value::Array(items)) if items.iter().all(Value::is_object))
}

/// Pod or container settings in a custom resource, outside a pod spec.
fn is_fragment(map: &Obj) -> bool {
    is_container_like(map)
        || HOST_NAMESPACES.iter().any(|k| get(map, k).is_some())
        || matches!(map.get("volumes"), Some(Value::Array(v)) if !v.is_empty() && v.iter().all(Value::is_object))
        || ["serviceAccountName", "serviceAccount"]
            .iter()
            .any(|k| matches!(map.get(*k), Some(Value::String(_))))
}

fn is_container_like(map: &Obj) -> bool {
    matches!(map.get("image"), Some(Value::String(_))) || obj(map, "securityContext").is_some()
}

impl<'a> Pod<'a> {
    fn whole(spec: &'a Obj, path: String, meta: Option<(&'a Obj, String)>) -> Self {
        let mut containers = Vec::new();
        for list in CONTAINER_LISTS {
            if let Some(Value::Array(items)) = spec.get(list) {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Object(c) = item {
                        containers.push(Container {
                            name: get(c, "name").map(text).unwrap_or_default(),
                            path: format!("{}[{i}]", join(&path, list)),
                            spec: c,
                        });
                    }
                }
            }
        }
        Pod {
            path,
            spec,
            meta,
            containers,
            whole: true,
        }
    }

    /// A fragment is its own pod and, when it looks like a container, its
    /// own only container: its `securityContext` is judged as the pod's and
    /// as the container's (which one a custom resource means is unknown).
    /// Its own `metadata` is the pod's (an Argo template's annotations).
    fn fragment(spec: &'a Obj, path: String) -> Self {
        let containers = if is_container_like(spec) {
            vec![Container {
                name: get(spec, "name").map(text).unwrap_or_default(),
                path: path.clone(),
                spec,
            }]
        } else {
            Vec::new()
        };
        Pod {
            meta: obj(spec, "metadata").map(|m| (m, join(&path, "metadata"))),
            path,
            spec,
            containers,
            whole: false,
        }
    }

    fn sc(&self) -> Option<&'a Obj> {
        obj(self.spec, "securityContext")
    }

    fn sc_path(&self, field: &str) -> String {
        join(&join(&self.path, "securityContext"), field)
    }

    /// `hostUsers: false`: the pod runs in a user namespace, which relaxes
    /// the procMount, runAsNonRoot and runAsUser checks.
    fn user_namespace(&self) -> bool {
        self.spec.get("hostUsers") == Some(&Value::Bool(false))
    }

    /// `os.name: windows`: the checks that cannot apply to Windows skip it.
    fn windows(&self) -> bool {
        obj(self.spec, "os")
            .and_then(|os| os.get("name"))
            .and_then(Value::as_str)
            == Some("windows")
    }

    /// The labels of the Job controller's selector this pod's metadata
    /// carries ([`JOB_CONTROLLER_LABELS`]), each with its path.
    pub fn job_controller_labels(&self) -> Vec<(String, &'static str)> {
        let Some((meta, path)) = &self.meta else {
            return Vec::new();
        };
        let Some(labels) = obj(meta, "labels") else {
            return Vec::new();
        };
        JOB_CONTROLLER_LABELS
            .iter()
            .filter(|l| labels.contains_key(**l))
            .map(|l| (format!("{}[{l}]", join(path, "labels")), *l))
            .collect()
    }

    /// The string values of `serviceAccountName` and `serviceAccount`, with their paths.
    pub fn service_accounts(&self) -> Vec<(String, String)> {
        ["serviceAccountName", "serviceAccount"]
            .iter()
            .filter_map(|k| get(self.spec, k).map(|v| (join(&self.path, k), text(v))))
            .collect()
    }

    /// Every Secret the pod uses, by name, with the field that names it:
    /// read into a container's environment (`envFrom[].secretRef`,
    /// `env[].valueFrom.secretKeyRef`), mounted (a `secret` volume, a
    /// `projected` volume's `sources[].secret`), or handed to a volume
    /// plugin as its credentials (`csi.nodePublishSecretRef`,
    /// `azureFile.secretName`, the `secretRef` of cephfs, cinder,
    /// flexVolume, iscsi, rbd, scaleIO and storageos). `imagePullSecrets`
    /// are left out: the kubelet uses them, the pod cannot read them.
    pub fn secrets(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let mut named = |map: &Obj, key: &str, at: String| {
            if let Some(name) = get(map, key).map(text).filter(|n| !n.is_empty()) {
                found.push((join(&at, key), name));
            }
        };
        for c in &self.containers {
            for (i, from) in items(c.spec, "envFrom") {
                if let Some(r) = obj(from, "secretRef") {
                    named(r, "name", format!("{}.envFrom[{i}].secretRef", c.path));
                }
            }
            for (i, var) in items(c.spec, "env") {
                if let Some(r) = obj(var, "valueFrom").and_then(|v| obj(v, "secretKeyRef")) {
                    let at = format!("{}.env[{i}].valueFrom.secretKeyRef", c.path);
                    named(r, "name", at);
                }
            }
        }
        for (i, volume) in volumes(self) {
            let at = format!("{}[{i}]", join(&self.path, "volumes"));
            if let Some(secret) = obj(volume, "secret") {
                named(secret, "secretName", join(&at, "secret"));
            }
            if let Some(projected) = obj(volume, "projected") {
                for (j, source) in items(projected, "sources") {
                    if let Some(secret) = obj(source, "secret") {
                        named(
                            secret,
                            "name",
                            format!("{at}.projected.sources[{j}].secret"),
                        );
                    }
                }
            }
            if let Some(azure) = obj(volume, "azureFile") {
                named(azure, "secretName", join(&at, "azureFile"));
            }
            if let Some(r) = obj(volume, "csi").and_then(|c| obj(c, "nodePublishSecretRef")) {
                named(r, "name", join(&at, "csi.nodePublishSecretRef"));
            }
            for plugin in [
                "cephfs",
                "cinder",
                "flexVolume",
                "iscsi",
                "rbd",
                "scaleIO",
                "storageos",
            ] {
                if let Some(r) = obj(volume, plugin).and_then(|p| obj(p, "secretRef")) {
                    named(r, "name", join(&join(&at, plugin), "secretRef"));
                }
            }
        }
        found
    }
}

/// The mappings of the list `map.<key>`, with their index.
fn items<'a>(map: &'a Obj, key: &str) -> impl Iterator<Item = (usize, &'a Obj)> {
    let list: &'a [Value] = match map.get(key) {
        Some(Value::Array(list)) => list,
        _ => &[],
    };
    list.iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_object().map(|v| (i, v)))
}

impl Container<'_> {
    fn sc(&self) -> Option<&Obj> {
        obj(self.spec, "securityContext")
    }

    fn sc_path(&self, field: &str) -> String {
        join(&join(&self.path, "securityContext"), field)
    }
}

impl PodSecurity {
    /// Every check of the level that `pod` fails, in the API server's order.
    pub fn check(&self, pod: &Pod<'_>) -> Vec<Failure> {
        let checks: &[Check] = match self.level {
            Level::Privileged => return Vec::new(),
            Level::Baseline => BASELINE,
            Level::Restricted => RESTRICTED,
        };
        checks
            .iter()
            .filter(|(id, _)| !self.waives(id))
            .filter_map(|(id, run)| {
                run(pod, &self.waivers).map(|mut f| {
                    f.check = id;
                    f
                })
            })
            .collect()
    }

    fn waives(&self, check: &str) -> bool {
        match check {
            "privileged" => self.waivers.privileged,
            "hostPathVolumes" => self.waivers.host_path,
            "hostNamespaces" => self.waivers.host_namespaces,
            _ => false,
        }
    }
}

/// A check: its id, and what it finds wrong with a pod.
type Check = (&'static str, fn(&Pod<'_>, &Waivers) -> Option<Failure>);

/// Baseline, in the API server's order (check ids sorted).
const BASELINE: &[Check] = &[
    ("appArmorProfile", baseline::app_armor_profile),
    ("capabilities_baseline", baseline::capabilities_baseline),
    ("hostNamespaces", baseline::host_namespaces),
    ("hostPathVolumes", baseline::host_path_volumes),
    ("hostPorts", baseline::host_ports),
    (
        "hostProbesAndHostLifecycle",
        baseline::host_probes_and_lifecycle,
    ),
    ("privileged", baseline::privileged),
    ("procMount", baseline::proc_mount_baseline),
    ("seLinuxOptions", baseline::se_linux_options),
    ("seccompProfile_baseline", baseline::seccomp_baseline),
    ("sysctls", baseline::sysctls),
    ("windowsHostProcess", baseline::windows_host_process),
];

/// Restricted: the baseline checks it does not override, then its own.
const RESTRICTED: &[Check] = &[
    ("appArmorProfile", baseline::app_armor_profile),
    ("hostNamespaces", baseline::host_namespaces),
    ("hostPorts", baseline::host_ports),
    (
        "hostProbesAndHostLifecycle",
        baseline::host_probes_and_lifecycle,
    ),
    ("privileged", baseline::privileged),
    ("seLinuxOptions", baseline::se_linux_options),
    ("sysctls", baseline::sysctls),
    ("windowsHostProcess", baseline::windows_host_process),
    (
        "allowPrivilegeEscalation",
        restricted::allow_privilege_escalation,
    ),
    (
        "capabilities_restricted",
        restricted::capabilities_restricted,
    ),
    ("procMount_restricted", baseline::proc_mount),
    ("restrictedVolumes", restricted::restricted_volumes),
    ("runAsNonRoot", restricted::run_as_non_root),
    ("runAsUser", restricted::run_as_user),
    ("seccompProfile_restricted", restricted::seccomp_restricted),
];

/// A failure at `paths`; the check fills in reason and detail.
fn failure(paths: Vec<String>) -> Failure {
    Failure {
        check: "",
        reason: String::new(),
        detail: String::new(),
        paths,
        waiver: None,
    }
}

/// The containers whose `securityContext.<field>` `bad` refuses (it gets
/// None when the field, or the whole securityContext, is unset), and the
/// fields' paths.
fn containers_where(
    pod: &Pod<'_>,
    field: &str,
    mut bad: impl FnMut(Option<&Value>) -> bool,
) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut paths = Vec::new();
    for c in &pod.containers {
        if bad(c.sc().and_then(|sc| get(sc, field))) {
            names.push(c.name.clone());
            paths.push(c.sc_path(field));
        }
    }
    (names, paths)
}

/// A field's value; `null` is unset, as Go decodes it.
fn get<'a>(map: &'a Obj, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn obj<'a>(map: &'a Obj, key: &str) -> Option<&'a Obj> {
    get(map, key).and_then(Value::as_object)
}

/// Set to anything but `false`: what a "must not be true" check refuses.
fn not_false(v: Option<&Value>) -> bool {
    v.is_some_and(|v| v != &Value::Bool(false))
}

/// A value as the API server would print it: a string as is, anything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `"a", "b"`, unescaped, as the API server joins names.
fn join_quote(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("\"{}\"", items.join("\", \""))
    }
}

fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

fn pluralize<'s>(singular: &'s str, plural: &'s str, count: usize) -> &'s str {
    if count == 1 {
        singular
    } else {
        plural
    }
}

/// A string quoted as Go's `%q` quotes it (for the printable text of annotations).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The pod's volumes that are mappings, with their index.
fn volumes<'a>(pod: &Pod<'a>) -> impl Iterator<Item = (usize, &'a Obj)> {
    let items: &'a [Value] = match pod.spec.get("volumes") {
        Some(Value::Array(items)) => items,
        _ => &[],
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_object().map(|v| (i, v)))
}

/// The entries of `capabilities.add` that `allowed` refuses (a value that
/// is not a list counts as one refused entry).
fn added_beyond(caps: &Obj, allowed: impl Fn(&str) -> bool) -> Vec<String> {
    match get(caps, "add") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter(|c| !c.as_str().is_some_and(&allowed))
            .map(text)
            .collect(),
        Some(other) => vec![text(other)],
    }
}
