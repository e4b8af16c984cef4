//! The standard's own cases: for each check, the pods that
//! k8s.io/pod-security-admission@v0.36.2/test/fixtures_*.go lists as passing
//! and failing (built, as there, from the minimal valid pod of the level),
//! and the words its policy/check_*_test.go expects.

use serde_json::{json, Value};

use super::*;

/// The minimal valid pod of a level (test/fixtures.go).
fn minimal(level: Level) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {
            "initContainers": [{"name": "initcontainer1", "image": "registry.k8s.io/pause"}],
            "containers": [{"name": "container1", "image": "registry.k8s.io/pause"}],
        }
    });
    if level == Level::Restricted {
        pod["spec"]["securityContext"] =
            json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
        let sc = json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
        pod["spec"]["containers"][0]["securityContext"] = sc.clone();
        pod["spec"]["initContainers"][0]["securityContext"] = sc;
    }
    pod
}

fn failures_with(level: Level, waivers: Waivers, object: &Value) -> Vec<Failure> {
    let standard = PodSecurity { level, waivers };
    pods(object)
        .iter()
        .flat_map(|p| standard.check(p))
        .collect()
}

fn failures(level: Level, object: &Value) -> Vec<Failure> {
    failures_with(level, Waivers::default(), object)
}

fn words(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(Failure::api_words)
        .collect::<Vec<_>>()
        .join(", ")
}

fn spec(p: &mut Value) -> &mut Value {
    &mut p["spec"]
}
fn c0(p: &mut Value) -> &mut Value {
    &mut p["spec"]["containers"][0]
}
fn i0(p: &mut Value) -> &mut Value {
    &mut p["spec"]["initContainers"][0]
}
fn sc(p: &mut Value) -> &mut Value {
    &mut p["spec"]["securityContext"]
}
fn csc(p: &mut Value) -> &mut Value {
    &mut c0(p)["securityContext"]
}
fn isc(p: &mut Value) -> &mut Value {
    &mut i0(p)["securityContext"]
}

type Tweak = fn(&mut Value);

struct Fixture {
    /// The check's id.
    check: &'static str,
    /// What the refusal must contain (the fixture's expectErrorSubstring).
    expect: &'static str,
    /// Registered for the restricted level only.
    restricted_only: bool,
    pass: Vec<Tweak>,
    /// Passing at baseline only (the generator returns them for baseline only).
    pass_baseline_only: Vec<Tweak>,
    fail: Vec<Tweak>,
}

fn fixture(check: &'static str, expect: &'static str) -> Fixture {
    Fixture {
        check,
        expect,
        restricted_only: false,
        pass: Vec::new(),
        pass_baseline_only: Vec::new(),
        fail: Vec::new(),
    }
}

const BASELINE_SET: [&str; 13] = [
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

fn ensure_selinux(p: &mut Value) {
    sc(p)["seLinuxOptions"] = json!({});
    csc(p)["seLinuxOptions"] = json!({});
    isc(p)["seLinuxOptions"] = json!({});
}

fn probe(host: Option<&str>, action: &str) -> Value {
    let mut handler = json!({"port": 8080});
    if let Some(h) = host {
        handler["host"] = json!(h);
    }
    json!({ action: handler })
}

fn fixtures() -> Vec<Fixture> {
    const APPARMOR: &str = "container.apparmor.security.beta.kubernetes.io/";
    let mut all = Vec::new();

    let mut f = fixture("appArmorProfile", "forbidden AppArmor profile");
    f.pass = vec![
        |p| {
            // As the fixture writes it: both annotations name container1.
            p["metadata"]["annotations"][format!("{APPARMOR}container1")] =
                json!("runtime/default");
            p["metadata"]["annotations"][format!("{APPARMOR}container1")] = json!("localhost/foo");
        },
        // check_appArmorProfile_test.go's allowed cases.
        |p| p["metadata"]["annotations"] = json!({"env": "prod"}),
        |p| sc(p)["appArmorProfile"] = json!({"type": "RuntimeDefault"}),
        |p| csc(p)["appArmorProfile"] = json!({"type": "Localhost", "localhostProfile": "x"}),
    ];
    f.fail = vec![
        |p| p["metadata"]["annotations"][format!("{APPARMOR}container1")] = json!("unconfined"),
        |p| p["metadata"]["annotations"][format!("{APPARMOR}initcontainer1")] = json!("unconfined"),
        |p| sc(p)["appArmorProfile"] = json!({"type": "Unconfined"}),
        |p| csc(p)["appArmorProfile"] = json!({"type": "Unconfined"}),
        |p| isc(p)["appArmorProfile"] = json!({"type": "Unconfined"}),
    ];
    all.push(f);

    let mut f = fixture("capabilities_baseline", "capabilities");
    f.pass_baseline_only = vec![|p| {
        csc(p)["capabilities"]["add"] = json!(BASELINE_SET);
        isc(p)["capabilities"]["add"] = json!(BASELINE_SET);
    }];
    f.fail = vec![
        |p| csc(p)["capabilities"]["add"] = json!(["NET_RAW"]),
        |p| isc(p)["capabilities"]["add"] = json!(["NET_RAW"]),
        |p| csc(p)["capabilities"]["add"] = json!(["chown"]),
        |p| csc(p)["capabilities"]["add"] = json!(["CAP_CHOWN"]),
    ];
    all.push(f);

    let mut f = fixture("hostNamespaces", "host namespaces");
    f.fail = vec![
        |p| spec(p)["hostIPC"] = json!(true),
        |p| spec(p)["hostNetwork"] = json!(true),
        |p| spec(p)["hostPID"] = json!(true),
    ];
    all.push(f);

    let mut f = fixture("hostPathVolumes", "hostPath");
    f.fail = vec![
        |p| {
            spec(p)["volumes"] = json!([
                {"name": "volume-emptydir", "emptyDir": {}},
                {"name": "volume-hostpath", "hostPath": {"path": "/a"}},
            ])
        },
        |p| {
            spec(p)["volumes"] = json!([
                {"name": "volume-hostpath-a", "hostPath": {"path": "/a"}},
                {"name": "volume-hostpath-b", "hostPath": {"path": "/b"}},
            ])
        },
    ];
    all.push(f);

    let mut f = fixture("hostPorts", "hostPort");
    f.pass = vec![|p| {
        c0(p)["ports"] = json!([{"containerPort": 12345}]);
        i0(p)["ports"] = json!([{"containerPort": 12346}]);
    }];
    f.fail = vec![
        |p| c0(p)["ports"] = json!([{"containerPort": 12345, "hostPort": 12345}]),
        |p| i0(p)["ports"] = json!([{"containerPort": 12346, "hostPort": 12346}]),
        |p| {
            c0(p)["ports"] =
                json!([{"containerPort": 12345, "hostPort": 12345}, {"containerPort": 12347}]);
            i0(p)["ports"] =
                json!([{"containerPort": 12346, "hostPort": 12346}, {"containerPort": 12348}]);
        },
    ];
    all.push(f);

    let mut f = fixture("hostProbesAndHostLifecycle", "probe or lifecycle host");
    f.pass = vec![
        |_| {},
        |p| c0(p)["livenessProbe"] = probe(None, "httpGet"),
        |p| c0(p)["readinessProbe"] = probe(None, "tcpSocket"),
    ];
    f.fail = vec![
        |p| c0(p)["livenessProbe"] = probe(Some("bad.host"), "httpGet"),
        |p| {
            i0(p)["restartPolicy"] = json!("Always");
            i0(p)["readinessProbe"] = probe(Some("8.8.8.8"), "tcpSocket");
        },
        |p| c0(p)["lifecycle"]["postStart"] = probe(Some("bad.host"), "httpGet"),
        |p| c0(p)["livenessProbe"] = probe(Some("127.0.0.1"), "httpGet"),
        |p| c0(p)["readinessProbe"] = probe(Some("::1"), "tcpSocket"),
    ];
    all.push(f);

    let mut f = fixture("privileged", "privileged");
    f.pass = vec![|p| {
        csc(p)["privileged"] = json!(false);
        isc(p)["privileged"] = json!(false);
    }];
    f.fail = vec![
        |p| {
            csc(p)["privileged"] = json!(true);
            csc(p)["allowPrivilegeEscalation"] = Value::Null;
        },
        |p| {
            isc(p)["privileged"] = json!(true);
            isc(p)["allowPrivilegeEscalation"] = Value::Null;
        },
    ];
    all.push(f);

    // The 1.35 generator (latest): a user namespace may unmask /proc at baseline.
    let mut f = fixture("procMount", "procMount");
    f.pass = vec![|p| {
        csc(p)["procMount"] = json!("Default");
        isc(p)["procMount"] = json!("Default");
        spec(p)["hostUsers"] = json!(false);
    }];
    f.pass_baseline_only = vec![|p| {
        csc(p)["procMount"] = json!("Unmasked");
        isc(p)["procMount"] = json!("Unmasked");
        spec(p)["hostUsers"] = json!(false);
    }];
    f.fail = vec![
        |p| {
            csc(p)["procMount"] = json!("Unmasked");
            spec(p)["hostUsers"] = json!(true);
        },
        |p| {
            isc(p)["procMount"] = json!("Unmasked");
            spec(p)["hostUsers"] = json!(true);
        },
    ];
    all.push(f);

    let mut f = fixture("seLinuxOptions", "seLinuxOptions");
    f.pass = vec![
        |p| {
            ensure_selinux(p);
            sc(p)["seLinuxOptions"] = Value::Null;
            csc(p)["seLinuxOptions"] = Value::Null;
        },
        |p| {
            ensure_selinux(p);
            sc(p)["seLinuxOptions"]["type"] = json!("container_t");
            csc(p)["seLinuxOptions"]["type"] = json!("container_init_t");
            isc(p)["seLinuxOptions"]["type"] = json!("container_kvm_t");
            sc(p)["seLinuxOptions"]["level"] = json!("");
            csc(p)["seLinuxOptions"]["level"] = json!("somevalue");
        },
        |p| csc(p)["seLinuxOptions"] = json!({"type": "container_engine_t"}),
    ];
    f.fail = vec![
        |p| {
            ensure_selinux(p);
            sc(p)["seLinuxOptions"]["type"] = json!("somevalue");
        },
        |p| {
            ensure_selinux(p);
            csc(p)["seLinuxOptions"]["type"] = json!("somevalue");
        },
        |p| {
            ensure_selinux(p);
            isc(p)["seLinuxOptions"]["type"] = json!("somevalue");
        },
        |p| {
            ensure_selinux(p);
            sc(p)["seLinuxOptions"]["user"] = json!("somevalue");
        },
        |p| {
            ensure_selinux(p);
            sc(p)["seLinuxOptions"]["role"] = json!("somevalue");
        },
    ];
    all.push(f);

    let mut f = fixture("seccompProfile_baseline", "seccompProfile");
    f.pass_baseline_only = vec![|p| {
        sc(p)["seccompProfile"] = json!({"type": "RuntimeDefault"});
        csc(p)["seccompProfile"] = json!({"type": "RuntimeDefault"});
    }];
    f.fail = vec![
        |p| sc(p)["seccompProfile"] = json!({"type": "Unconfined"}),
        |p| csc(p)["seccompProfile"] = json!({"type": "Unconfined"}),
        |p| isc(p)["seccompProfile"] = json!({"type": "Unconfined"}),
    ];
    all.push(f);

    let mut f = fixture("sysctls", "forbidden sysctl");
    f.pass = vec![
        |p| sc(p)["sysctls"] = Value::Null,
        |p| {
            sc(p)["sysctls"] = json!([
                {"name": "kernel.shm_rmid_forced", "value": "0"},
                {"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"},
                {"name": "net.ipv4.tcp_syncookies", "value": "0"},
                {"name": "net.ipv4.ping_group_range", "value": "1 0"},
                {"name": "net.ipv4.ip_unprivileged_port_start", "value": "1024"},
                {"name": "net.ipv4.ip_local_reserved_ports", "value": "1024-4999"},
                {"name": "net.ipv4.tcp_keepalive_time", "value": "7200"},
                {"name": "net.ipv4.tcp_fin_timeout", "value": "60"},
                {"name": "net.ipv4.tcp_keepalive_intvl", "value": "75"},
                {"name": "net.ipv4.tcp_keepalive_probes", "value": "9"},
            ])
        },
        |p| {
            sc(p)["sysctls"] = json!([
                {"name": "net.ipv4.tcp_rmem", "value": "4096 87380 16777216"},
                {"name": "net.ipv4.tcp_wmem", "value": "4096 65536 16777216"},
            ])
        },
    ];
    f.fail = vec![|p| sc(p)["sysctls"] = json!([{"name": "othersysctl", "value": "other"}])];
    all.push(f);

    let mut f = fixture("windowsHostProcess", "hostProcess");
    f.fail = vec![
        |p| {
            spec(p)["hostNetwork"] = json!(true);
            sc(p)["windowsOptions"]["hostProcess"] = json!(true);
        },
        |p| {
            spec(p)["hostNetwork"] = json!(true);
            csc(p)["windowsOptions"]["hostProcess"] = json!(true);
            isc(p)["windowsOptions"]["hostProcess"] = json!(true);
        },
    ];
    all.push(f);

    let mut f = fixture("allowPrivilegeEscalation", "allowPrivilegeEscalation");
    f.restricted_only = true;
    f.fail = vec![
        |p| csc(p)["allowPrivilegeEscalation"] = json!(true),
        |p| isc(p)["allowPrivilegeEscalation"] = json!(true),
        |p| csc(p)["allowPrivilegeEscalation"] = Value::Null,
        |p| *csc(p) = Value::Null,
    ];
    all.push(f);

    let mut f = fixture("capabilities_restricted", "unrestricted capabilities");
    f.restricted_only = true;
    f.pass = vec![|p| {
        csc(p)["capabilities"] = json!({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]});
        isc(p)["capabilities"] = json!({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]});
    }];
    f.fail = vec![
        |p| csc(p)["capabilities"]["drop"] = json!([]),
        |p| isc(p)["capabilities"]["drop"] = json!([]),
        |p| {
            // Dropping every capability one by one is not dropping ALL.
            let each = json!([
                "SYS_TIME",
                "SYS_MODULE",
                "SYS_RAWIO",
                "SYS_PACCT",
                "SYS_ADMIN",
                "SYS_NICE",
                "SYS_RESOURCE",
                "SYS_TIME",
                "SYS_TTY_CONFIG",
                "MKNOD",
                "AUDIT_WRITE",
                "AUDIT_CONTROL",
                "MAC_OVERRIDE",
                "MAC_ADMIN",
                "NET_ADMIN",
                "SYSLOG",
                "CHOWN",
                "NET_RAW",
                "DAC_OVERRIDE",
                "FOWNER",
                "DAC_READ_SEARCH",
                "FSETID",
                "KILL",
                "SETGID",
                "SETUID",
                "LINUX_IMMUTABLE",
                "NET_BIND_SERVICE",
                "NET_BROADCAST",
                "IPC_LOCK",
                "IPC_OWNER",
                "SYS_CHROOT",
                "SYS_PTRACE",
                "SYS_BOOT",
                "LEASE",
                "SETFCAP",
                "WAKE_ALARM",
                "BLOCK_SUSPEND",
            ]);
            csc(p)["capabilities"]["drop"] = each.clone();
            isc(p)["capabilities"]["drop"] = each;
        },
        |p| {
            csc(p)["capabilities"]["add"] = json!(BASELINE_SET);
            isc(p)["capabilities"]["add"] = json!(BASELINE_SET);
        },
    ];
    all.push(f);

    let mut f = fixture("procMount_restricted", "procMount");
    f.restricted_only = true;
    f.pass = vec![|p| {
        csc(p)["procMount"] = json!("Default");
        isc(p)["procMount"] = json!("Default");
        spec(p)["hostUsers"] = json!(false);
    }];
    f.fail = vec![
        |p| {
            csc(p)["procMount"] = json!("Unmasked");
            spec(p)["hostUsers"] = json!(false);
        },
        |p| {
            isc(p)["procMount"] = json!("Unmasked");
            spec(p)["hostUsers"] = json!(false);
        },
    ];
    all.push(f);

    let mut f = fixture("restrictedVolumes", "restricted volume types");
    f.restricted_only = true;
    f.pass = vec![|p| {
        spec(p)["volumes"] = json!([
            {"name": "volume0"},
            {"name": "volume1", "emptyDir": {}},
            {"name": "volume2", "secret": {"secretName": "test"}},
            {"name": "volume3", "persistentVolumeClaim": {"claimName": "test"}},
            {"name": "volume4", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "volume5", "configMap": {"name": "test"}},
            {"name": "volume6", "projected": {"sources": []}},
            {"name": "volume7", "csi": {"driver": "inline.storage.kubernetes.io"}},
            {"name": "volume8", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}},
            {"name": "volume9", "image": {"reference": "registry.k8s.io/pause"}},
        ])
    }];
    macro_rules! volume {
        ($type:literal, $source:tt) => {
            |p| spec(p)["volumes"] = json!([{"name": "volume1", $type: $source}])
        };
    }
    f.fail = vec![
        volume!("gcePersistentDisk", {"pdName": "test"}),
        volume!("awsElasticBlockStore", {"volumeID": "test"}),
        volume!("gitRepo", {"repository": "github.com/kubernetes/kubernetes"}),
        volume!("nfs", {"server": "test", "path": "/test"}),
        volume!("iscsi", {"targetPortal": "test", "iqn": "iqn.2001-04.com.example:storage.kube.sys1.xyz", "lun": 0}),
        volume!("glusterfs", {"path": "test", "endpoints": "test"}),
        volume!("rbd", {"monitors": ["test"], "image": "test"}),
        volume!("flexVolume", {"driver": "test"}),
        volume!("cinder", {"volumeID": "test"}),
        volume!("cephfs", {"monitors": ["test"]}),
        volume!("flocker", {"datasetName": "test"}),
        volume!("fc", {"wwids": ["test"]}),
        volume!("azureFile", {"secretName": "test", "shareName": "test"}),
        volume!("vsphereVolume", {"volumePath": "test"}),
        volume!("quobyte", {"registry": "localhost:1234", "volume": "test"}),
        volume!("azureDisk", {"diskName": "test", "diskURI": "https://test.blob.core.windows.net/test/test.vhd"}),
        volume!("portworxVolume", {"volumeID": "test", "fsType": "ext4"}),
        volume!("scaleIO", {"volumeName": "test", "gateway": "localhost", "system": "test"}),
        volume!("storageos", {"volumeName": "test"}),
        volume!("hostPath", {"path": "/dev/null"}),
    ];
    all.push(f);

    let mut f = fixture("runAsNonRoot", "runAsNonRoot");
    f.restricted_only = true;
    f.pass = vec![
        |p| {
            sc(p)["runAsNonRoot"] = json!(true);
            csc(p)["runAsNonRoot"] = Value::Null;
            isc(p)["runAsNonRoot"] = Value::Null;
        },
        |p| {
            sc(p)["runAsNonRoot"] = Value::Null;
            csc(p)["runAsNonRoot"] = json!(true);
            isc(p)["runAsNonRoot"] = json!(true);
        },
    ];
    f.fail = vec![
        |p| {
            sc(p)["runAsNonRoot"] = Value::Null;
            csc(p)["runAsNonRoot"] = Value::Null;
            isc(p)["runAsNonRoot"] = Value::Null;
        },
        |p| sc(p)["runAsNonRoot"] = json!(false),
        |p| csc(p)["runAsNonRoot"] = json!(false),
        |p| isc(p)["runAsNonRoot"] = json!(false),
    ];
    all.push(f);

    let mut f = fixture("runAsUser", "runAsUser");
    f.restricted_only = true;
    f.pass = vec![|p| {
        sc(p)["runAsUser"] = json!(1000);
        csc(p)["runAsUser"] = json!(1000);
        isc(p)["runAsUser"] = json!(1000);
    }];
    f.fail = vec![
        |p| sc(p)["runAsUser"] = json!(0),
        |p| csc(p)["runAsUser"] = json!(0),
        |p| isc(p)["runAsUser"] = json!(0),
    ];
    all.push(f);

    let mut f = fixture("seccompProfile_restricted", "seccompProfile");
    f.restricted_only = true;
    f.pass = vec![
        |p| sc(p)["seccompProfile"] = json!({"type": "RuntimeDefault"}),
        |p| sc(p)["seccompProfile"] = json!({"type": "Localhost", "localhostProfile": "testing"}),
        |p| {
            sc(p)["seccompProfile"] = Value::Null;
            csc(p)["seccompProfile"] = json!({"type": "RuntimeDefault"});
            isc(p)["seccompProfile"] = json!({"type": "Localhost", "localhostProfile": "testing"});
        },
    ];
    f.fail = vec![
        |p| sc(p)["seccompProfile"] = Value::Null,
        |p| sc(p)["seccompProfile"] = json!({"type": "Unconfined"}),
        |p| {
            sc(p)["seccompProfile"] = Value::Null;
            csc(p)["seccompProfile"] = json!({"type": "RuntimeDefault"});
        },
        |p| {
            sc(p)["seccompProfile"] = Value::Null;
            isc(p)["seccompProfile"] = json!({"type": "RuntimeDefault"});
        },
        |p| {
            sc(p)["seccompProfile"] = Value::Null;
            csc(p)["seccompProfile"] = json!({"type": "RuntimeDefault"});
            isc(p)["seccompProfile"] = json!({"type": "Unconfined"});
        },
    ];
    all.push(f);

    all
}

/// The check that judges a baseline fixture at `level` (restricted
/// overrides four of them with stricter ones).
fn judged_by(check: &'static str, level: Level) -> &'static str {
    match (check, level) {
        ("capabilities_baseline", Level::Restricted) => "capabilities_restricted",
        ("hostPathVolumes", Level::Restricted) => "restrictedVolumes",
        ("procMount", Level::Restricted) => "procMount_restricted",
        ("seccompProfile_baseline", Level::Restricted) => "seccompProfile_restricted",
        _ => check,
    }
}

#[test]
fn each_check_passes_and_fails_the_pods_of_pod_security_admission_s_fixtures() {
    let mut judged = 0;
    for f in fixtures() {
        let levels: &[Level] = if f.restricted_only {
            &[Level::Restricted]
        } else {
            &[Level::Baseline, Level::Restricted]
        };
        for &level in levels {
            let base = minimal(level);
            assert_eq!(failures(level, &base), vec![], "minimal {level} pod");
            let extra: &[Tweak] = if level == Level::Baseline {
                &f.pass_baseline_only
            } else {
                &[]
            };
            for (i, tweak) in f.pass.iter().chain(extra).enumerate() {
                let mut pod = base.clone();
                tweak(&mut pod);
                let found = failures(level, &pod);
                assert!(
                    found.is_empty(),
                    "{} pass #{i} at {level}: {}\n{pod:#}",
                    f.check,
                    words(&found)
                );
                judged += 1;
            }
            for (i, tweak) in f.fail.iter().enumerate() {
                let mut pod = base.clone();
                tweak(&mut pod);
                let found = failures(level, &pod);
                let check = judged_by(f.check, level);
                assert!(
                    found.iter().any(|x| x.check == check),
                    "{} fail #{i} at {level}: expected {check}, got {}\n{pod:#}",
                    f.check,
                    words(&found)
                );
                assert!(
                    words(&found).contains(f.expect),
                    "{} fail #{i} at {level}: `{}` lacks `{}`",
                    f.check,
                    words(&found),
                    f.expect
                );
                assert!(
                    found.iter().all(|x| !x.paths.is_empty()),
                    "{} fail #{i}: every failure names its fields: {found:?}",
                    f.check
                );
                assert_eq!(
                    failures(Level::Privileged, &pod),
                    vec![],
                    "privileged allows everything"
                );
                judged += 1;
            }
        }
    }
    assert!(judged > 150, "{judged} pods judged");
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

fn containers(scs: &[(&str, Value)]) -> Value {
    Value::Array(
        scs.iter()
            .map(|(name, sc)| json!({"name": name, "image": "x", "securityContext": sc}))
            .collect(),
    )
}

/// Reason and detail exactly as policy/check_*_test.go expects them.
#[test]
fn the_words_are_the_api_server_s() {
    let cases: Vec<(Level, Value, &str)> = vec![
        (
            Level::Restricted,
            pod(
                json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                    {"name": "a", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["FOO", "BAR"]}}},
                    {"name": "b", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["BAR", "BAZ"]}}},
                    {"name": "c", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"], "drop": ["ALL", "FOO"]}}},
                ]}),
            ),
            r#"unrestricted capabilities (containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; containers "a", "b", "c" must not include "BAR", "BAZ", "CHOWN", "FOO" in securityContext.capabilities.add)"#,
        ),
        (
            Level::Baseline,
            pod(json!({"containers": [
                {"name": "a", "ports": [{"hostPort": 0}]},
                {"name": "b", "ports": [{"hostPort": 0}, {"hostPort": 10}, {"hostPort": 20}]},
                {"name": "c", "ports": [{"hostPort": 0}, {"hostPort": 10}, {"hostPort": 30}]},
            ]})),
            r#"hostPort (containers "b", "c" use hostPorts 10, 20, 30)"#,
        ),
        (
            Level::Baseline,
            pod(
                json!({"securityContext": {"seLinuxOptions": {"type": "foo", "user": "bar", "role": "baz"}},
                "containers": containers(&[
                    ("a", json!({"seLinuxOptions": {"type": "container_t"}})),
                    ("b", json!({"seLinuxOptions": {"type": "container_init_t"}})),
                    ("c", json!({"seLinuxOptions": {"type": "container_kvm_t"}})),
                    ("d", json!({"seLinuxOptions": {"type": "container_engine_t"}})),
                    ("e", json!({"seLinuxOptions": {"type": "bar"}})),
                    ("f", json!({"seLinuxOptions": {"user": "bar"}})),
                    ("g", json!({"seLinuxOptions": {"role": "baz"}})),
                ])}),
            ),
            r#"seLinuxOptions (pod and containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set)"#,
        ),
        (
            Level::Baseline,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {
                "container.apparmor.security.beta.kubernetes.io/": "bogus",
                "container.apparmor.security.beta.kubernetes.io/a": "",
                "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
                "container.apparmor.security.beta.kubernetes.io/c": "localhost/",
                "container.apparmor.security.beta.kubernetes.io/d": "localhost/foo",
                "container.apparmor.security.beta.kubernetes.io/e": "unconfined",
                "container.apparmor.security.beta.kubernetes.io/f": "unknown",
            }}, "spec": {"containers": []}}),
            r#"forbidden AppArmor profiles (annotations must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/="bogus"", "container.apparmor.security.beta.kubernetes.io/e="unconfined"", "container.apparmor.security.beta.kubernetes.io/f="unknown"")"#,
        ),
        (
            Level::Baseline,
            pod(
                json!({"securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "foo"}],
                "initContainers": [{"name": "bar", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}]}),
            ),
            r#"forbidden AppArmor profile (container "bar" must not set AppArmor profile type to "Unconfined")"#,
        ),
        (
            Level::Baseline,
            pod(json!({"hostNetwork": true, "hostPID": true, "hostIPC": true, "containers": []})),
            "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)",
        ),
        (
            Level::Baseline,
            pod(
                json!({"volumes": [{"name": "a", "hostPath": {}}, {"name": "b", "hostPath": {}}, {"name": "c", "emptyDir": {}}], "containers": []}),
            ),
            r#"hostPath volumes (volumes "a", "b")"#,
        ),
        (
            Level::Baseline,
            pod(json!({"containers": containers(&[
                ("a", json!({})), ("b", json!({})), ("c", json!({"privileged": false})),
                ("d", json!({"privileged": true})), ("e", json!({"privileged": true}))])})),
            r#"privileged (containers "d", "e" must not set securityContext.privileged=true)"#,
        ),
        (
            Level::Baseline,
            pod(json!({"containers": containers(&[
                ("a", json!({})), ("b", json!({"procMount": "Default"})),
                ("d", json!({"procMount": "Unmasked"})), ("e", json!({"procMount": "other"}))])})),
            r#"procMount (containers "d", "e" must not set securityContext.procMount to "Unmasked", "other")"#,
        ),
        (
            Level::Baseline,
            pod(
                json!({"securityContext": {"sysctls": [{"name": "a"}, {"name": "b"}]}, "containers": []}),
            ),
            "forbidden sysctls (a, b)",
        ),
        (
            Level::Baseline,
            pod(
                json!({"securityContext": {"windowsOptions": {"hostProcess": true}},
                "containers": containers(&[
                    ("a", json!({})), ("b", json!({"windowsOptions": {}})),
                    ("c", json!({"windowsOptions": {"hostProcess": false}})),
                    ("e", json!({"windowsOptions": {"hostProcess": true}})),
                    ("f", json!({"windowsOptions": {"hostProcess": true}}))])}),
            ),
            r#"hostProcess (pod and containers "e", "f" must not set securityContext.windowsOptions.hostProcess=true)"#,
        ),
        (
            Level::Baseline,
            pod(json!({"containers": [
                {"name": "a", "livenessProbe": {"httpGet": {"host": "localhost"}}, "readinessProbe": {"tcpSocket": {"host": "::1"}},
                 "lifecycle": {"preStop": {"httpGet": {"host": "127.0.0.1"}}}}]})),
            r#"probe or lifecycle host (container "a" uses probe or lifecycle hosts "127.0.0.1", "::1", "localhost")"#,
        ),
        (
            Level::Restricted,
            pod(
                json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": containers(&[
                    ("a", json!({"allowPrivilegeEscalation": true, "capabilities": {"drop": ["ALL"]}})),
                    ("b", json!({"capabilities": {"drop": ["ALL"]}})),
                    ("c", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}))])}),
            ),
            r#"allowPrivilegeEscalation != false (containers "a", "b" must set securityContext.allowPrivilegeEscalation=false)"#,
        ),
        (
            Level::Restricted,
            pod(
                json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "volumes": [{"name": "a", "nfs": {}}, {"name": "b", "hostPath": {}}, {"name": "c", "gitRepo": {}}, {"name": "d", "configMap": {}}],
                "containers": []}),
            ),
            r#"restricted volume types (volumes "a", "b", "c" use restricted volume types "gitRepo", "hostPath", "nfs")"#,
        ),
        (
            Level::Restricted,
            pod(
                json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": containers(&[
                    ("a", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})),
                    ("b", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})),
                    ("c", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true}))])}),
            ),
            r#"runAsNonRoot != true (pod or containers "a", "b" must set securityContext.runAsNonRoot=true)"#,
        ),
        (
            Level::Restricted,
            pod(
                json!({"securityContext": {"runAsNonRoot": false, "seccompProfile": {"type": "RuntimeDefault"}}, "containers": []}),
            ),
            "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)",
        ),
        (
            Level::Restricted,
            pod(
                json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": containers(&[
                    ("c", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsUser": 0})),
                    ("d", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsUser": 0})),
                    ("e", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsUser": 1}))])}),
            ),
            "runAsUser=0 (pod and containers \"c\", \"d\" must not set runAsUser=0)",
        ),
        (
            Level::Restricted,
            pod(
                json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "Unconfined"}},
                "containers": containers(&[
                    ("a", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})),
                    ("c", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "Unconfined"}})),
                    ("d", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "Unconfined"}}))])}),
            ),
            r#"seccompProfile (pod and containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined")"#,
        ),
        (
            Level::Restricted,
            pod(json!({"securityContext": {"runAsNonRoot": true},
                "containers": containers(&[
                    ("a", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})),
                    ("b", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "Localhost"}}))])})),
            r#"seccompProfile (pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
        ),
    ];
    for (level, object, expected) in cases {
        assert_eq!(words(&failures(level, &object)), expected, "{object}");
    }
}

#[test]
fn windows_pods_and_user_namespaces_are_relaxed_where_the_standard_relaxes_them() {
    // Windows: no capabilities, seccomp or allowPrivilegeEscalation requirements.
    let windows = pod(
        json!({"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": true},
        "containers": [{"name": "a", "image": "x"}]}),
    );
    assert_eq!(failures(Level::Restricted, &windows), vec![]);
    let linux = pod(
        json!({"os": {"name": "linux"}, "securityContext": {"runAsNonRoot": true},
        "containers": [{"name": "a", "image": "x"}]}),
    );
    assert_eq!(
        failures(Level::Restricted, &linux)
            .iter()
            .map(|f| f.check)
            .collect::<Vec<_>>(),
        [
            "allowPrivilegeEscalation",
            "capabilities_restricted",
            "seccompProfile_restricted"
        ]
    );
    // hostUsers: false: runAsNonRoot and runAsUser relaxed, only the literal false counts.
    let mut userns = minimal(Level::Restricted);
    userns["spec"]["securityContext"]["runAsNonRoot"] = Value::Null;
    userns["spec"]["securityContext"]["runAsUser"] = json!(0);
    userns["spec"]["hostUsers"] = json!(false);
    assert_eq!(failures(Level::Restricted, &userns), vec![]);
    userns["spec"]["hostUsers"] = json!("false");
    assert_eq!(
        failures(Level::Restricted, &userns)
            .iter()
            .map(|f| f.check)
            .collect::<Vec<_>>(),
        ["runAsNonRoot", "runAsUser"]
    );
}

#[test]
fn a_value_of_the_wrong_type_counts_as_the_forbidden_one() {
    let cases = [
        (
            "privileged",
            json!({"containers": containers(&[("a", json!({"privileged": "true"}))])}),
        ),
        (
            "hostNamespaces",
            json!({"hostNetwork": "yes", "containers": []}),
        ),
        (
            "hostPorts",
            json!({"containers": [{"name": "a", "ports": [{"hostPort": "80"}]}]}),
        ),
        (
            "capabilities_baseline",
            json!({"containers": containers(&[("a", json!({"capabilities": {"add": "SYS_ADMIN"}}))])}),
        ),
        (
            "capabilities_baseline",
            json!({"containers": containers(&[("a", json!({"capabilities": {"add": [7]}}))])}),
        ),
    ];
    for (check, spec) in cases {
        let found = failures(Level::Baseline, &pod(spec));
        assert!(found.iter().any(|f| f.check == check), "{check}: {found:?}");
    }
    let restricted = [
        ("runAsUser", json!({"runAsUser": "0"})),
        ("runAsNonRoot", json!({"runAsNonRoot": "true"})),
    ];
    for (check, pod_sc) in restricted {
        let mut p = minimal(Level::Restricted);
        for (k, v) in pod_sc.as_object().into_iter().flatten() {
            p["spec"]["securityContext"][k] = v.clone();
        }
        let found = failures(Level::Restricted, &p);
        assert!(found.iter().any(|f| f.check == check), "{check}: {found:?}");
    }
    // A volume type the standard does not know is refused at restricted.
    let mut p = minimal(Level::Restricted);
    p["spec"]["volumes"] = json!([{"name": "v", "futureVolume": {}}]);
    assert_eq!(
        words(&failures(Level::Restricted, &p)),
        r#"restricted volume types (volume "v" uses restricted volume type "unknown")"#
    );
}

#[test]
fn the_paths_point_at_the_fields() {
    let mut p = minimal(Level::Restricted);
    p["spec"]["initContainers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]);
    p["spec"]["containers"][0]["ports"] =
        json!([{"containerPort": 80}, {"containerPort": 80, "hostPort": 80}]);
    p["spec"]["securityContext"]["seccompProfile"] = Value::Null;
    let found = failures(Level::Restricted, &p);
    let paths: Vec<&str> = found
        .iter()
        .flat_map(|f| f.paths.iter().map(String::as_str))
        .collect();
    assert_eq!(
        paths,
        [
            "spec.containers[0].ports[1].hostPort",
            "spec.initContainers[0].securityContext.capabilities.add",
            "spec.securityContext.seccompProfile.type",
        ]
    );
}
