//! `--auth kubernetes` against the real API server: tokens minted by the
//! TokenRequest API for real service accounts, reviewed by TokenReview and
//! authorized by SubjectAccessReview on gitfaas.io's virtual resources in
//! gitfaas' own namespace (its kubeconfig context's, here a namespace of
//! the test's, as the pod's namespace is in a cluster).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::ObjectMeta;
use secrecy::SecretString;

use crate::common::TestNamespace;
use crate::helpers::OpenUnlessChosen as _;
use crate::helpers::{
    config, eventually, kubeconfig_path, namespace, post, spawn_app_with, Answer, TestApp, JOB,
};

/// The identity tests read process-wide metrics (the reviews' count): they
/// run one at a time.
pub(crate) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The admin's kubeconfig with its context's namespace set to `home`, and,
/// given a token, that token as its user: gitfaas' own namespace is
/// `home`, as a pod's is its own.
pub(crate) fn kubeconfig_in(home: &str, dir: &Path, token: Option<&str>) -> PathBuf {
    kubeconfig_from_in(&kubeconfig_path(), home, dir, token)
}

/// As [`kubeconfig_in`], from the kubeconfig `source`.
fn kubeconfig_from_in(source: &Path, home: &str, dir: &Path, token: Option<&str>) -> PathBuf {
    let mut kc = kube::config::Kubeconfig::read_from(source).expect("kubeconfig");
    let current = kc.current_context.clone().expect("a current context");
    let mut user = None;
    for named in &mut kc.contexts {
        if named.name == current {
            let context = named.context.as_mut().expect("the context");
            context.namespace = Some(home.to_string());
            user = Some(context.user.clone());
        }
    }
    if let Some(token) = token {
        let user = user.expect("the context's user");
        for named in &mut kc.auth_infos {
            if Some(&named.name) == user.as_ref() {
                named.auth_info = Some(kube::config::AuthInfo {
                    token: Some(SecretString::from(token.to_string())),
                    ..Default::default()
                });
            }
        }
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_vec(&kc).expect("kubeconfig as JSON")).expect("write");
    path
}

/// A service account `name` in `ns`.
pub(crate) async fn service_account(kube: &kube::Client, ns: &str, name: &str) {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(kube.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("service account");
}

/// A Role `name` in `ns` with `rules` (group gitfaas.io), bound to service
/// account `sa` of `ns`.
pub(crate) async fn grant(
    kube: &kube::Client,
    ns: &str,
    sa: &str,
    name: &str,
    rules: &[(&str, &str, Option<&str>)],
) {
    let role = Role {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        rules: Some(
            rules
                .iter()
                .map(|(verb, resource, resource_name)| PolicyRule {
                    api_groups: Some(vec!["gitfaas.io".into()]),
                    resources: Some(vec![(*resource).into()]),
                    verbs: vec![(*verb).into()],
                    resource_names: resource_name.map(|n| vec![n.to_string()]),
                    ..Default::default()
                })
                .collect(),
        ),
    };
    Api::<Role>::namespaced(kube.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("role");
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: name.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: sa.into(),
            namespace: Some(ns.into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(kube.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("role binding");
}

/// A token of service account `sa` of `ns` for `audiences` (none: the API
/// server's own), from the TokenRequest API.
pub(crate) async fn token(kube: &kube::Client, ns: &str, sa: &str, audiences: &[&str]) -> String {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: (!audiences.is_empty())
                .then(|| audiences.iter().map(|a| a.to_string()).collect()),
            expiration_seconds: Some(600),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(kube.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .expect("token request")
        .status
        .and_then(|s| s.token)
        .expect("a minted token")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn publish_as(app: &TestApp, topic: &str, token: &str) -> Answer {
    let auth = bearer(token);
    app.publish_with(topic, "", &[("authorization", auth.as_str())], "x")
        .await
}

pub(crate) async fn get_as(app: &TestApp, path: &str, token: &str) -> Answer {
    let resp = app
        .http
        .get(format!("{}{path}", app.address))
        .header("authorization", bearer(token))
        .send()
        .await
        .expect("request");
    Answer::read(resp).await
}

/// gitfaas' count of reviews of `kind` (`token`, `access`).
async fn reviews(app: &TestApp, kind: &str) -> u64 {
    let metrics = app.metrics().await;
    let prefix = format!("gitfaas_auth_reviews_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

/// One test's caller under `--auth kubernetes`, the identity tests' common
/// start: the tests' turn (they read process-wide counts), gitfaas
/// reviewing in its own namespace `home` (topics `a`, `b`, `c`), and a
/// service account `account` of `home`, bound by `binding` to `rules`, with
/// its token for the audience `gitfaas`.
pub(crate) struct Reviewed {
    pub(crate) serial: tokio::sync::MutexGuard<'static, ()>,
    pub(crate) kube: kube::Client,
    pub(crate) home: TestNamespace,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) app: TestApp,
    pub(crate) token: String,
}

pub(crate) async fn reviewed_caller(
    account: &str,
    binding: &str,
    rules: &[(&str, &str, Option<&str>)],
) -> Reviewed {
    let serial = ONE_AT_A_TIME.lock().await;
    let kube = kube::Client::try_default().await.expect("kube client");
    let home = namespace(&kube).await;
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_reviewing(home.name(), dir.path(), None).await;
    service_account(&kube, home.name(), account).await;
    grant(&kube, home.name(), account, binding, rules).await;
    let token = token(&kube, home.name(), account, &["gitfaas"]).await;
    Reviewed {
        serial,
        kube,
        home,
        dir,
        app,
        token,
    }
}

/// A ConfigMap per publish: the load test's runs cost the cluster no pods.
const CONFIG_MAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c-{{RANDOM}}\ndata:\n  a: b\n";

/// gitfaas with `--auth kubernetes`, its own namespace `home`, topics `a`
/// and `b` (a Job each) and `c` (a ConfigMap).
pub(crate) async fn spawn_reviewing(home: &str, dir: &Path, token: Option<&str>) -> TestApp {
    let kc = kubeconfig_in(home, dir, token);
    let kc = kc.display().to_string();
    spawn_app_with(
        &[
            (
                "config.json",
                &config(&[("a", &["j.yaml"]), ("b", &["j.yaml"]), ("c", &["cm.yaml"])]),
            ),
            ("j.yaml", JOB),
            ("cm.yaml", CONFIG_MAP),
        ],
        &["--auth", "kubernetes", "--kubeconfig", &kc],
    )
    .await
}

/// A service account bound to publish topic `a`: `a` 202, `b` 403 naming
/// the missing permission (and nothing applied), runs unreadable without
/// `get/list runs`, then readable once granted; the same account's token for
/// the API server's audience 401, no token 401.
#[tokio::test]
async fn a_service_account_publishes_only_the_topics_its_role_grants() {
    let Reviewed {
        serial: _serial,
        kube,
        home,
        dir: _dir,
        app,
        token,
    } = reviewed_caller("pipeline", "publish-a", &[("create", "topics", Some("a"))]).await;

    let uid = publish_as(&app, "a", &token).await.accepted();
    assert_eq!(app.job_count().await, 1, "topic a applied");

    let refused = publish_as(&app, "b", &token).await;
    refused
        .assert_error(403, "access_denied")
        .assert_message_contains(&format!(
            "system:serviceaccount:{}:pipeline may not create gitfaas.io topics `b` in namespace {}",
            home.name(),
            home.name()
        ))
        .assert_message_contains("resourceNames [b]");
    assert_eq!(app.job_count().await, 1, "nothing applied for topic b");

    get_as(&app, "/requests", &token)
        .await
        .assert_error(403, "access_denied")
        .assert_message_contains("may not list gitfaas.io runs");
    get_as(&app, &format!("/requests/{uid}"), &token)
        .await
        .assert_error(403, "access_denied")
        .assert_message_contains("may not get gitfaas.io runs");
    // Cancel, re-run, refresh: each its own permission, named.
    let delete = app
        .http
        .delete(format!("{}/requests/{uid}", app.address))
        .header("authorization", bearer(&token))
        .send()
        .await
        .expect("request");
    Answer::read(delete)
        .await
        .assert_error(403, "access_denied")
        .assert_message_contains("may not delete gitfaas.io runs");
    let url = format!("{}/requests/{uid}/retry", app.address);
    let auth = bearer(&token);
    post(&app.http, &url, &[("authorization", auth.as_str())], "")
        .await
        .assert_error(403, "access_denied")
        .assert_message_contains("may not create gitfaas.io runs/retry");
    get_as(&app, "/refresh", &token)
        .await
        .assert_error(403, "access_denied")
        .assert_message_contains("may not update gitfaas.io sync");
    grant(
        &kube,
        home.name(),
        "pipeline",
        "read-runs",
        &[("get", "runs", None), ("list", "runs", None)],
    )
    .await;
    // A refusal is cached briefly (2 s): the grant shows soon after.
    eventually(
        "reading runs once granted",
        Duration::from_secs(30),
        || async { (get_as(&app, "/requests", &token).await.status == 200).then_some(()) },
    )
    .await;
    get_as(&app, &format!("/requests/{uid}"), &token)
        .await
        .assert_status(200);

    // The same account, the API server's own audience: not for gitfaas.
    let for_the_api_server = self::token(&kube, home.name(), "pipeline", &[]).await;
    publish_as(&app, "a", &for_the_api_server)
        .await
        .assert_error(401, "unauthorized")
        .assert_message_contains("audience `gitfaas`");
    app.publish("a", "", "x")
        .await
        .assert_error(401, "unauthorized");
    publish_as(&app, "a", "not-a-token")
        .await
        .assert_error(401, "unauthorized");
    assert_eq!(app.job_count().await, 1, "nothing applied for the refused");

    // Who called: /status and the metrics name the account, never a token.
    let user = format!("system:serviceaccount:{}:pipeline", home.name());
    let status = app.get("/status").await;
    let callers = status.body["callers"].as_array().expect("callers");
    assert!(
        callers
            .iter()
            .any(|c| c["user"] == user.as_str() && c["action"] == "publish" && c["target"] == "a"),
        "{status}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&format!(
            "gitfaas_caller_requests_total{{user=\"{user}\",action=\"publish\"}}"
        )),
        "{metrics}"
    );
    assert!(!status.to_string().contains(&token) && !metrics.contains(&token));
    app.cleanup().await;
    drop(home);
}

/// The API server's own count of the reviews it answered (`tokenreviews`
/// or `subjectaccessreviews`), from its metrics: what gitfaas really asked
/// for, whatever gitfaas says of itself.
async fn reviews_answered(kube: &kube::Client, resource: &str) -> f64 {
    let metrics = crate::helpers::api_server_metrics(kube).await;
    let resource = format!("resource=\"{resource}\"");
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains(&resource)
                && l.contains("verb=\"POST\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A thousand publishes with one token (32 at a time) cost a handful of
/// reviews, not one each: an allow is cached for 10 s, so at most one
/// token review and one access review per 10 s of the load, counted by the
/// API server itself and by gitfaas. Every publish applied its ConfigMap.
#[tokio::test]
async fn a_thousand_publishes_with_one_token_cost_a_handful_of_reviews() {
    let Reviewed {
        serial: _serial,
        kube,
        home,
        dir: _dir,
        app,
        token,
    } = reviewed_caller("burst", "publish-c", &[("create", "topics", Some("c"))]).await;
    let _load = crate::helpers::LOAD.lock().await;
    // The grant is seen by the authorizer soon, not at once: one publish
    // that passes first, so the load starts from a cached allow or none.
    eventually(
        "the grant to publish c",
        Duration::from_secs(30),
        || async { (publish_as(&app, "c", &token).await.status == 202).then_some(()) },
    )
    .await;

    const PUBLISHES: usize = 1_000;
    let api_before = (
        reviews_answered(&kube, "tokenreviews").await,
        reviews_answered(&kube, "subjectaccessreviews").await,
    );
    // The publish above was reviewed: the API server's count sees it.
    assert!(
        api_before.0 >= 1.0 && api_before.1 >= 1.0,
        "the API server's metrics count no reviews at all ({api_before:?}): is the metric read right?"
    );
    let own_before = (reviews(&app, "token").await, reviews(&app, "access").await);
    let started = std::time::Instant::now();
    let answers: Vec<u16> = futures::stream::iter(0..PUBLISHES)
        .map(|_| async { publish_as(&app, "c", &token).await.status })
        .buffer_unordered(32)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let refused: Vec<&u16> = answers.iter().filter(|s| **s != 202).collect();
    assert!(refused.is_empty(), "answers other than 202: {refused:?}");
    let api = (
        reviews_answered(&kube, "tokenreviews").await - api_before.0,
        reviews_answered(&kube, "subjectaccessreviews").await - api_before.1,
    );
    let own = (
        reviews(&app, "token").await - own_before.0,
        reviews(&app, "access").await - own_before.1,
    );
    // One of each per 10 s the load lasted, and one more for a window
    // that started just before it.
    let allowed = elapsed.as_secs() / 10 + 2;
    println!(
        "{PUBLISHES} publishes in {elapsed:?}: the API server answered {} token and {} access reviews; gitfaas counts {} and {}",
        api.0, api.1, own.0, own.1
    );
    assert!(
        own.0 <= allowed && own.1 <= allowed,
        "{PUBLISHES} publishes in {elapsed:?} cost {} token and {} access reviews (at most {allowed} each)",
        own.0,
        own.1
    );
    // The API server saw no more than gitfaas says it asked (the suite
    // runs its tests one at a time, so nobody else reviews meanwhile).
    assert!(
        api.0 <= allowed as f64 && api.1 <= allowed as f64,
        "the API server answered {} token and {} access reviews during {PUBLISHES} publishes (at most {allowed} each)",
        api.0,
        api.1
    );
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(kube.clone(), &app.namespace);
    let made = config_maps
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .iter()
        .filter(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("c-"))
        })
        .count();
    assert_eq!(made, PUBLISHES + 1, "every publish applied its ConfigMap");
    app.cleanup().await;
    drop(home);
}

/// `token` with its times moved: issued `issued` seconds from now (negative:
/// ago) and valid `lives` seconds, re-signed with the local cluster's
/// service-account key (tests/cluster's `pki/sa.key`, beside the
/// kubeconfig), as the API server itself signs. TokenRequest will not mint
/// a token shorter than 10 minutes, so this is how a test gets an expired
/// token of a real service account without waiting for one.
fn retimed(token: &str, issued: i64, lives: i64) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = kubeconfig_path()
        .parent()
        .expect("the kubeconfig's directory")
        .join("pki/sa.key");
    assert!(
        key.exists(),
        "{} is missing: the expired-token test signs with the local cluster's service-account key (tests/cluster)",
        key.display()
    );
    let mut parts = token.split('.');
    let (header, payload) = (
        parts.next().expect("header"),
        parts.next().expect("payload"),
    );
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(payload).expect("base64 claims")).expect("JSON claims");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    claims["iat"] = (now + issued).into();
    claims["nbf"] = (now + issued).into();
    claims["exp"] = (now + issued + lives).into();
    let signed = format!("{header}.{}", b64.encode(claims.to_string()));
    let mut openssl = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    std::io::Write::write_all(&mut openssl.stdin.take().expect("stdin"), signed.as_bytes())
        .expect("write to openssl");
    let out = openssl.wait_with_output().expect("openssl's signature");
    assert!(out.status.success(), "openssl dgst -sign failed");
    format!("{signed}.{}", b64.encode(out.stdout))
}

/// An expired token of a service account that may publish is refused
/// (401, nothing applied); the same token re-signed the same way but still
/// valid publishes, so the refusal is the expiry's, not the signature's; a
/// token that expires while its allow is cached is reviewed again from its
/// expiry.
#[tokio::test]
async fn an_expired_token_is_refused() {
    let Reviewed {
        serial: _serial,
        kube: _,
        home,
        dir: _dir,
        app,
        token,
    } = reviewed_caller("late", "publish-a", &[("create", "topics", Some("a"))]).await;
    let valid = retimed(&token, -60, 600);
    eventually(
        "the re-signed valid token publishes",
        Duration::from_secs(30),
        || async { (publish_as(&app, "a", &valid).await.status == 202).then_some(()) },
    )
    .await;
    let jobs = app.job_count().await;

    // Issued 20 minutes ago for 10: expired 10 minutes ago.
    let expired = retimed(&token, -1200, 600);
    publish_as(&app, "a", &expired)
        .await
        .assert_error(401, "unauthorized")
        .assert_message_contains("expired");
    assert_eq!(
        app.job_count().await,
        jobs,
        "nothing applied for the expired token"
    );

    // A token that expires in 3 s: its allow is cached until then, not for
    // the usual 10 s, so a publish after its expiry is reviewed again (and
    // the API server, which allows a minute of clock skew past `exp`,
    // decides; its leeway is its own).
    let ending = retimed(&token, -597, 600);
    publish_as(&app, "a", &ending).await.assert_status(202);
    let reviewed = reviews(&app, "token").await;
    publish_as(&app, "a", &ending).await.assert_status(202);
    assert_eq!(
        reviews(&app, "token").await,
        reviewed,
        "cached before its expiry"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    publish_as(&app, "a", &ending).await;
    assert_eq!(
        reviews(&app, "token").await,
        reviewed + 1,
        "reviewed again once expired, within the 10 s an allow is otherwise kept"
    );
    app.cleanup().await;
    drop(home);
}

/// A token whose service account was deleted no longer publishes (once
/// the allow cached for at most 10 s is gone): 401.
#[tokio::test]
async fn a_token_of_a_deleted_service_account_is_refused() {
    let Reviewed {
        serial: _serial,
        kube,
        home,
        dir: _dir,
        app,
        token,
    } = reviewed_caller("gone", "publish", &[("create", "topics", None)]).await;
    publish_as(&app, "a", &token).await.assert_status(202);
    Api::<ServiceAccount>::namespaced(kube.clone(), home.name())
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete the service account");
    let refused = eventually(
        "the deleted account's token refused",
        Duration::from_secs(40),
        || async {
            let answer = publish_as(&app, "a", &token).await;
            (answer.status != 202).then_some(answer)
        },
    )
    .await;
    refused.assert_error(401, "unauthorized");
    app.cleanup().await;
    drop(home);
}

/// A token bound to a pod stops working when the pod is deleted: 401.
#[tokio::test]
async fn a_token_bound_to_a_deleted_pod_is_refused() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let kube = kube::Client::try_default().await.expect("kube client");
    let home = namespace(&kube).await;
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_reviewing(home.name(), dir.path(), None).await;
    service_account(&kube, home.name(), "stepper").await;
    grant(
        &kube,
        home.name(),
        "stepper",
        "publish",
        &[("create", "topics", None)],
    )
    .await;
    let pods = Api::<Pod>::namespaced(kube.clone(), home.name());
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("step".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some("stepper".into()),
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox:1.36".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec!["gitfaas".into()]),
            expiration_seconds: Some(600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some("step".into()),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(kube.clone(), home.name())
        .create_token_request("stepper", &PostParams::default(), &request)
        .await
        .expect("token request")
        .status
        .and_then(|s| s.token)
        .expect("a minted token");
    publish_as(&app, "a", &token).await.assert_status(202);
    pods.delete("step", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete the pod");
    let refused = eventually(
        "the deleted pod's token refused",
        Duration::from_secs(40),
        || async {
            let answer = publish_as(&app, "a", &token).await;
            (answer.status != 202).then_some(answer)
        },
    )
    .await;
    refused.assert_error(401, "unauthorized");
    app.cleanup().await;
    drop(home);
}

/// gitfaas not allowed to create TokenReviews (its service account bound
/// to `edit` only): a caller's valid token answers 503, never lets it in,
/// and nothing is applied.
#[tokio::test]
async fn a_review_that_fails_is_503_not_an_open_door() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let kube = kube::Client::try_default().await.expect("kube client");
    let home = namespace(&kube).await;
    // gitfaas' own identity: may edit (apply Jobs) anywhere, not review.
    service_account(&kube, home.name(), "gitfaas").await;
    let binding_name = format!("{}-edit", home.name());
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(binding_name.clone()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "edit".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "gitfaas".into(),
            namespace: Some(home.name().into()),
            ..Default::default()
        }]),
    };
    let bindings = Api::<ClusterRoleBinding>::all(kube.clone());
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("cluster role binding");
    let gitfaas_token = token(&kube, home.name(), "gitfaas", &[]).await;
    service_account(&kube, home.name(), "caller").await;
    grant(
        &kube,
        home.name(),
        "caller",
        "publish",
        &[("create", "topics", None)],
    )
    .await;
    let caller = token(&kube, home.name(), "caller", &["gitfaas"]).await;

    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_reviewing(home.name(), dir.path(), Some(&gitfaas_token)).await;
    let answer = publish_as(&app, "a", &caller).await;
    let _ = bindings
        .delete(&binding_name, &DeleteParams::default())
        .await;
    answer
        .assert_error(503, "auth_unavailable")
        .assert_message_contains("system:auth-delegator");
    assert_eq!(app.job_count().await, 0, "nothing applied");
    // Not cached: each request asks again, and is refused again.
    let url = format!("{}/publish/b", app.address);
    let auth = bearer(&caller);
    post(&app.http, &url, &[("authorization", auth.as_str())], "x")
        .await
        .assert_error(503, "auth_unavailable");
    app.cleanup().await;
    drop::<TestNamespace>(home);
}

/// The step that publishes the next: on the real node, with its pod's
/// projected service-account token (audience gitfaas), first `third` (not
/// granted), then `second` (granted).
const STEP: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: first-{{RANDOM}}
spec:
  backoffLimit: 0
  ttlSecondsAfterFinished: 300
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: step
          image: gitfaas.local/examples:1
          imagePullPolicy: IfNotPresent
          command: ["/bin/sh", "-c"]
          args:
            - |
              t=$(cat /var/run/secrets/gitfaas/token)
              wget -q -O - --header "Authorization: Bearer $t" --post-data x "$GITFAAS_URL/publish/third" || echo "third refused"
              wget -q -O - --header "Authorization: Bearer $t" --post-data x "$GITFAAS_URL/publish/second"
          env:
            - name: GITFAAS_URL
              value: "{{GITFAAS_URL}}"
          volumeMounts:
            - name: gitfaas-token
              mountPath: /var/run/secrets/gitfaas
              readOnly: true
      volumes:
        - name: gitfaas-token
          projected:
            sources:
              - serviceAccountToken:
                  audience: gitfaas
                  expirationSeconds: 600
                  path: token
"#;

/// A function on the real node publishes its next step with its own
/// projected token: the step granted to its namespace's `default` account
/// runs, the one not granted does not.
#[tokio::test]
async fn a_function_publishes_its_next_step_with_its_projected_token() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let kube = kube::Client::try_default().await.expect("kube client");
    let Some(node) = crate::helpers::real_node(&kube).await else {
        return;
    };
    let home = namespace(&kube).await;
    let dir = tempfile::tempdir().expect("dir");
    let kc = kubeconfig_in(home.name(), dir.path(), None)
        .display()
        .to_string();
    let suspended = JOB.replace("  backoffLimit: 0", "  suspend: true\n  backoffLimit: 0");
    let app = crate::helpers::spawn_app_on_real_node(
        &[
            (
                "config.json",
                &config(&[
                    ("first", &["step.yaml"]),
                    ("second", &["next.yaml"]),
                    ("third", &["next.yaml"]),
                ]),
            ),
            ("step.yaml", STEP),
            ("next.yaml", &suspended),
        ],
        &["--auth", "kubernetes", "--kubeconfig", &kc],
        &node,
    )
    .await;
    // The test publishes `first`; the functions' `default` account may
    // publish `second` only.
    service_account(&kube, home.name(), "tester").await;
    grant(
        &kube,
        home.name(),
        "tester",
        "tester",
        &[("create", "topics", Some("first"))],
    )
    .await;
    let steps = Role {
        metadata: ObjectMeta {
            name: Some("steps".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["gitfaas.io".into()]),
            resources: Some(vec!["topics".into()]),
            resource_names: Some(vec!["second".into()]),
            verbs: vec!["create".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(kube.clone(), home.name())
        .create(&PostParams::default(), &steps)
        .await
        .expect("role");
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("steps".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "steps".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "default".into(),
            namespace: Some(app.namespace.clone()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(kube.clone(), home.name())
        .create(&PostParams::default(), &binding)
        .await
        .expect("role binding");
    let tester = token(&kube, home.name(), "tester", &["gitfaas"]).await;
    publish_as(&app, "first", &tester).await.assert_status(202);
    let jobs = app.jobs();
    let count = |topic: &'static str| {
        let jobs = jobs.clone();
        async move {
            jobs.list(
                &kube::api::ListParams::default().labels(&format!("gitfaas.io/topic={topic}")),
            )
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
        }
    };
    eventually(
        "the step's publish of `second` with its projected token",
        Duration::from_secs(120),
        || async { (count("second").await == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        count("third").await,
        0,
        "`third` is not granted to the step"
    );
    let status = app.get("/status").await;
    let user = format!("system:serviceaccount:{}:default", app.namespace);
    assert!(
        status.body["callers"]
            .as_array()
            .expect("callers")
            .iter()
            .any(|c| c["user"] == user.as_str() && c["target"] == "second"),
        "{status}"
    );
    app.cleanup().await;
    drop(home);
}

/// At debug level, the log of a publish with a Kubernetes token names the
/// caller and holds no token (nor any part of one).
#[tokio::test]
async fn no_token_appears_in_the_log_at_debug_level() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let fx = crate::helpers::Fixture::job().await;
    let home = namespace(&fx.kube).await;
    let dir = tempfile::tempdir().expect("dir");
    let kc = kubeconfig_in(home.name(), dir.path(), None);
    service_account(&fx.kube, home.name(), "logged").await;
    grant(
        &fx.kube,
        home.name(),
        "logged",
        "publish",
        &[("create", "topics", Some("t"))],
    )
    .await;
    let token = token(&fx.kube, home.name(), "logged", &["gitfaas"]).await;
    let other_audience = self::token(&fx.kube, home.name(), "logged", &[]).await;
    let port = crate::helpers::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gitfaas"))
        .args([
            "serve",
            "--dir",
            &fx.dir_arg(),
            "--data-dir",
            &fx.data_arg(),
        ])
        .args([
            "--namespace",
            &fx.ns,
            "--auth",
            "kubernetes",
            "--log-level",
            "debug",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--kubeconfig"])
        .arg(&kc)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .open_unless_chosen()
        .spawn()
        .expect("start gitfaas");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually("gitfaas to be ready", Duration::from_secs(30), || async {
        let r = http.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let url = format!("{base}/publish/t");
    let ok = bearer(&token);
    post(&http, &url, &[("authorization", ok.as_str())], "x")
        .await
        .assert_status(202);
    let refused = bearer(&other_audience);
    post(&http, &url, &[("authorization", refused.as_str())], "x")
        .await
        .assert_status(401);
    let (_, log) = crate::helpers::stop_and_read_log(&mut child).await;
    assert!(
        log.contains(&format!("system:serviceaccount:{}:logged", home.name())),
        "the log names the caller"
    );
    for secret in [&token, &other_audience] {
        // A JWT's signature is its third part: not even that is logged.
        let signature = secret.rsplit('.').next().expect("a JWT");
        assert!(
            !log.contains(secret.as_str()) && !log.contains(signature),
            "a token in the log"
        );
    }
    fx.cleanup().await;
    drop(home);
}

/// The API server goes away: a token not reviewed yet answers 503
/// `auth_unavailable` and nothing is applied; back up, it publishes.
#[tokio::test]
async fn the_api_server_down_is_503_and_back_up_publishes_again() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut apiserver = crate::outage::OwnApiServer::start().await;
    let kube = kube::Client::try_default().await.expect("kube client");
    let home = namespace(&kube).await;
    let dir = tempfile::tempdir().expect("dir");
    let kc = kubeconfig_from_in(
        Path::new(&apiserver.kubeconfig_arg()),
        home.name(),
        dir.path(),
        None,
    )
    .display()
    .to_string();
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("a", &["j.yaml"])])),
            ("j.yaml", JOB),
            ("cm.yaml", CONFIG_MAP),
        ],
        &["--auth", "kubernetes", "--kubeconfig", &kc],
    )
    .await;
    service_account(&kube, home.name(), "steady").await;
    grant(
        &kube,
        home.name(),
        "steady",
        "publish",
        &[("create", "topics", None)],
    )
    .await;
    let first = token(&kube, home.name(), "steady", &["gitfaas"]).await;
    // A second token of the same account: not reviewed (nor cached) yet.
    let second = token(&kube, home.name(), "steady", &["gitfaas"]).await;
    publish_as(&app, "a", &first).await.assert_status(202);
    let before = app.job_count().await;

    apiserver.kill();
    publish_as(&app, "a", &second)
        .await
        .assert_error(503, "auth_unavailable");
    assert_eq!(app.job_count().await, before, "nothing applied");

    apiserver.restart().await;
    eventually(
        "a publish once the API server is back",
        Duration::from_secs(60),
        || async { (publish_as(&app, "a", &second).await.status == 202).then_some(()) },
    )
    .await;
    app.cleanup().await;
    drop(home);
}
