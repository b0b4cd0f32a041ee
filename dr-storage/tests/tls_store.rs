//! `ca_file`: a repository on the S3-compatible test server behind a throwaway CA opens with
//! it, is refused without it (the error names `ca_file`), and `ca_file` on a store without
//! TLS is refused.

use dr_core::{Error, Identities};
use dr_testing::S3Server;

fn pairs<'a>(options: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    options.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn a_repository_behind_a_private_ca_needs_its_ca_file() {
    let s3 = S3Server::start_tls();
    let url = s3.url("repo");
    let recipients = Identities::generate().to_recipients();
    let ca = s3.ca_file().unwrap().display().to_string();
    let mut with_ca = s3.options();
    with_ca.push((dr_storage::CA_FILE_OPTION, ca));
    dr_storage::init_repository(&url, &pairs(&with_ca), &recipients)
        .await
        .unwrap();
    dr_storage::open_repository(&url, &pairs(&with_ca))
        .await
        .unwrap();

    let refused = dr_storage::open_repository(&url, &pairs(&s3.options()))
        .await
        .err()
        .unwrap();
    assert!(matches!(refused, Error::Backend { .. }), "{refused:?}");
    let text = refused.to_string();
    assert!(
        text.contains("not trusted") && text.contains("ca_file"),
        "{text}"
    );
    assert!(!refused.is_retryable(), "{text}");
}

#[test]
fn ca_file_is_refused_where_there_is_no_tls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    for url in [path, "memory://"] {
        let err = dr_storage::open_store(url, &[("ca_file", "/etc/ssl/ca.pem")], true)
            .err()
            .unwrap();
        assert!(matches!(err, Error::InvalidLocation { .. }), "{err:?}");
        assert!(err.to_string().contains("ca_file"), "{err}");
    }
}

#[test]
fn an_unreadable_ca_file_is_named() {
    let err = dr_storage::open_store("s3://b/p", &[("ca_file", "/nonexistent/ca.pem")], false)
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(
        text.contains("cannot read ca_file /nonexistent/ca.pem"),
        "{text}"
    );
}
