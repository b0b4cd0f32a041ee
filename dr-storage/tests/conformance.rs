//! The conformance suite against every repository kind: local directory, memory, and a real
//! S3-compatible server (moto) on 127.0.0.1.

use std::sync::Arc;

use dr_core::object_store::ObjectStore;
use dr_testing::S3Server;
use dr_testing::conformance::run_all;

const LARGE: u64 = 300 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory() {
    let root = tempfile::tempdir().unwrap();
    let fresh = |case: &str| -> Arc<dyn ObjectStore> {
        let path = root.path().join(case);
        dr_storage::open_store(path.to_str().unwrap(), &[], true)
            .unwrap()
            .store()
    };
    run_all(fresh, LARGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    let fresh = |_: &str| {
        dr_storage::open_store("memory://", &[], true)
            .unwrap()
            .store()
    };
    run_all(fresh, LARGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_compatible_server() {
    let server = S3Server::start();
    let options = server.options();
    let fresh = |case: &str| -> Arc<dyn ObjectStore> {
        let opts: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
        dr_storage::open_store(&server.url(case), &opts, false)
            .unwrap()
            .store()
    };
    run_all(fresh, LARGE).await;
}

#[test]
fn unknown_scheme_and_missing_directory_are_clear() {
    let err = dr_storage::open_store("ftp://host/x", &[], false).unwrap_err();
    assert!(err.to_string().contains("unknown scheme ftp://"), "{err}");
    let err = dr_storage::open_store("/nonexistent/dr-repo-xyz", &[], false).unwrap_err();
    assert!(
        matches!(err, dr_core::Error::NotInitialised { .. }),
        "{err}"
    );
}

#[test]
fn credentials_never_shown() {
    let location = dr_storage::open_store(
        "s3://bucket/prefix?secret_access_key=hunter2",
        &[
            ("aws_region", "us-east-1"),
            ("aws_endpoint", "http://127.0.0.1:1"),
        ],
        false,
    )
    .unwrap();
    assert!(!location.to_string().contains("hunter2"));
    assert!(!format!("{location:?}").contains("hunter2"));
}
