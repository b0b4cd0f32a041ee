//! A store that cannot be reached gives a clear error, in bounded time.

use std::time::{Duration, Instant};

#[tokio::test]
async fn unreachable_s3_endpoint_is_a_clear_store_error() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let options = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_region", "us-east-1"),
        ("aws_access_key_id", "id"),
        ("aws_secret_access_key", "hunter2"),
    ];
    let started = Instant::now();
    let err = dr_storage::open_repository("s3://bucket/repo", &options)
        .await
        .unwrap_err();
    let text = err.to_string();
    println!("{text}");
    assert!(matches!(err, dr_core::Error::Store { .. }), "{err:?}");
    assert!(
        text.contains("check the repository URL, credentials and network"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}
