//! The shared test kit itself (tests/common): what the other tests rely on.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

use crate::helpers::{eventually, Fixture, TestNamespace};

/// Whether the namespace is gone or being deleted.
async fn deleting(kube: &kube::Client, name: &str) -> bool {
    match Api::<Namespace>::all(kube.clone()).get_opt(name).await {
        Ok(None) => true,
        Ok(Some(ns)) => ns.metadata.deletion_timestamp.is_some(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_tests_namespace_is_deleted_when_the_test_panics() {
    let kube = kube::Client::try_default().await.expect("kube client");
    // What #[tokio::test] does with a failing test: a runtime on a thread of
    // its own whose block_on unwinds through the test's values.
    let (names, got) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let kube = kube::Client::try_default().await.expect("kube client");
            let ns = TestNamespace::new(&kube).await;
            let fx = Fixture::job().await;
            names.send([ns.to_string(), fx.ns.clone()]).expect("send");
            panic!("the test fails");
        })
    });
    assert!(test.join().is_err(), "the test panicked");
    for name in got.recv().expect("the namespaces") {
        assert!(
            deleting(&kube, &name).await,
            "namespace {name} was deleted as the test unwound"
        );
    }
}

#[tokio::test]
async fn an_awaited_cleanup_deletes_the_namespace_then_and_there() {
    let fx = Fixture::job().await;
    let (kube, name) = (fx.kube.clone(), fx.ns.clone());
    fx.cleanup().await;
    eventually(
        "the namespace deleting",
        Duration::from_secs(10),
        || async { deleting(&kube, &name).await.then_some(()) },
    )
    .await;
}
