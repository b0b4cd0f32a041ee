//! Redis over TLS against real redis-server 7 (`--port 0 --tls-port P`): RDB and logical
//! backups, RESTORE replays into TLS servers (one requiring client certificates), verify at
//! restore level, all compared with the fidelity fingerprint (redis-cli --tls: DEBUG DIGEST,
//! keyspace counts, PEXPIRETIME; no dr code); client certificates required and missing; a
//! wrong CA, a self-signed server, `tls_insecure`; an ACL user; settings refused.

use std::sync::Arc;

use dr_core::{
    BackupOptions, BackupSelector, Error, Identities, Manifest, Registry, Repository,
    RestoreOptions, RestoreRequest, Source, SourceSettings, Verify, VerifyLevel,
};
use dr_redis::{RedisConnection, RedisTls};
use dr_testing::fidelity::redis::{
    EXPIRY_TOLERANCE_MS, assert_faithful_within, fingerprint_server,
};
use dr_testing::{ClientCertificates, RedisServer, ServerCertificate, TlsCertificates};
use serde_json::{Value, json};

async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://test", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

fn build(values: Value) -> dr_core::Result<Arc<dyn Source>> {
    let mut registry = Registry::new();
    dr_redis::register(&mut registry);
    registry.build_source("redis", &SourceSettings::new(values))
}

async fn backup(repo: &Repository, source: &dyn Source) -> dr_core::Result<Manifest> {
    let capture = source.backup(repo, "cache", false).await?;
    repo.backup("cache", capture.as_ref(), &BackupOptions::default())
        .await
}

fn tls_server(certs: &TlsCertificates, clients: ClientCertificates) -> RedisServer {
    RedisServer::start_tls(certs, ServerCertificate::SignedByCa, clients, None, &[])
}

/// The settings of a source at `server` trusting the test CA, with the client certificate.
fn settings(server: &RedisServer, certs: &TlsCertificates, mode: &str) -> Value {
    let (cert, key) = certs.client();
    json!({
        "url": server.url(),
        "mode": mode,
        "tls_ca_file": certs.ca(),
        "tls_cert_file": cert,
        "tls_key_file": key,
    })
}

#[tokio::test]
async fn rdb_and_logical_backups_over_tls_replay_faithfully_into_tls_servers() {
    let certs = TlsCertificates::generate();
    let server = tls_server(&certs, ClientCertificates::NotRequired);
    server.load_fidelity_corpus();
    let original = fingerprint_server(&server);
    assert!(original.get("digest.db0").is_some(), "{original:?}");
    let repo = repository().await;
    for mode in ["rdb", "logical"] {
        let source = build(settings(&server, &certs, mode)).unwrap();
        let manifest = backup(&repo, source.as_ref()).await.unwrap();
        assert_eq!(manifest.kind, format!("redis.{mode}"));
        let report = dr_redis::RedisVerifier::new()
            .verify(&repo.reader(manifest.clone()), VerifyLevel::Restore)
            .await
            .unwrap();
        assert!(report.problems.is_empty(), "{mode}: {report:?}");

        // Replay with --server rediss://: the source's TLS settings (CA, client
        // certificate) apply to it; this target requires the client certificate.
        let target = tls_server(&certs, ClientCertificates::Required);
        let options = RestoreOptions::default().with_server(Some(target.url()));
        let selector = BackupSelector::Id(manifest.id.clone());
        source
            .restore(&RestoreRequest::new(&repo, "cache", &selector, &options))
            .await
            .unwrap();
        assert_faithful_within(
            mode,
            &original,
            &fingerprint_server(&target),
            EXPIRY_TOLERANCE_MS,
        );
    }
}

#[tokio::test]
async fn a_server_requiring_client_certificates_refuses_a_client_without_one_clearly() {
    let certs = TlsCertificates::generate();
    let server = tls_server(&certs, ClientCertificates::Required);
    server.cli(&["SET", "k", "v"]);
    let repo = repository().await;
    let without = build(json!({ "url": server.url(), "tls_ca_file": certs.ca() })).unwrap();
    let err = backup(&repo, without.as_ref())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("client certificate") && err.contains("tls_cert_file"),
        "{err}"
    );
    let with = build(settings(&server, &certs, "rdb")).unwrap();
    let manifest = backup(&repo, with.as_ref()).await.unwrap();
    assert_eq!(manifest.source_info["rdb"]["databases"]["0"]["keys"], 1);
}

#[tokio::test]
async fn a_wrong_ca_fails_naming_tls_ca_file() {
    let certs = TlsCertificates::generate();
    let server = tls_server(&certs, ClientCertificates::NotRequired);
    let repo = repository().await;
    let wrong = build(json!({ "url": server.url(), "tls_ca_file": certs.other_ca() })).unwrap();
    let err = backup(&repo, wrong.as_ref()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("tls_ca_file")
            && text.contains(&certs.other_ca().display().to_string())
            && text.contains("not accepted"),
        "{text}"
    );
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "a certificate problem is not worth retrying: {err:?}"
    );
    // The system's store does not hold the test CA either.
    let conn = RedisConnection::from_url(&server.url()).unwrap();
    let err = conn.connect().await.err().unwrap().to_string();
    assert!(err.contains("set tls_ca_file"), "{err}");
}

#[tokio::test]
async fn tls_insecure_accepts_a_self_signed_server_that_verification_refuses() {
    let certs = TlsCertificates::generate();
    let server = RedisServer::start_tls(
        &certs,
        ServerCertificate::SelfSigned,
        ClientCertificates::NotRequired,
        None,
        &[],
    );
    server.load_fidelity_corpus();
    let repo = repository().await;
    let verified = build(json!({ "url": server.url(), "tls_ca_file": certs.ca() })).unwrap();
    let err = backup(&repo, verified.as_ref())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("tls_ca_file"), "{err}");
    let insecure = build(json!({ "url": server.url(), "tls_insecure": true })).unwrap();
    let manifest = backup(&repo, insecure.as_ref()).await.unwrap();
    // Replayed into a plain server, the keys are the source's.
    let plain = RedisServer::start();
    let conn = RedisConnection::from_url(&plain.url()).unwrap();
    dr_core::Restore::restore(
        &dr_redis::RedisReplayTarget::new(conn),
        &repo.reader(manifest),
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert_faithful_within(
        "insecure",
        &fingerprint_server(&server),
        &fingerprint_server(&plain),
        EXPIRY_TOLERANCE_MS,
    );
}

#[tokio::test]
async fn an_acl_user_backs_up_over_tls_and_a_wrong_password_is_refused() {
    let certs = TlsCertificates::generate();
    let server = tls_server(&certs, ClientCertificates::NotRequired);
    server.cli(&[
        "ACL", "SETUSER", "backup", "on", ">b4ckup", "~*", "&*", "+@all",
    ]);
    server.cli(&["ACL", "SETUSER", "default", "off"]);
    let port = server.port();
    let tls = RedisTls::default().with_ca_file(certs.ca());
    let url = format!("rediss://backup:b4ckup@127.0.0.1:{port}");
    let repo = repository().await;
    for mode in [dr_redis::RedisMode::Rdb, dr_redis::RedisMode::Logical] {
        let conn = RedisConnection::from_url(&url)
            .unwrap()
            .with_tls(tls.clone());
        let source = dr_redis::RedisSource::new(conn).with_mode(mode);
        repo.backup("cache", &source, &BackupOptions::default())
            .await
            .unwrap();
    }
    let wrong = RedisConnection::from_url(&format!("rediss://backup:n0pe@127.0.0.1:{port}"))
        .unwrap()
        .with_tls(tls);
    let err = wrong.connect().await.err().unwrap().to_string();
    assert!(
        err.contains("refused the login") && err.contains("WRONGPASS") && !err.contains("n0pe"),
        "{err}"
    );
}

#[test]
fn tls_settings_need_rediss_and_must_not_contradict_each_other() {
    let plain = build(json!({ "url": "redis://127.0.0.1:1", "tls_ca_file": "/ca.pem" }));
    assert!(
        matches!(&plain, Err(Error::Usage(m)) if m.contains("rediss://")),
        "{:?}",
        plain.err()
    );
    let half = build(json!({ "url": "rediss://127.0.0.1:1", "tls_cert_file": "/c.pem" }));
    assert!(
        matches!(&half, Err(Error::Usage(m)) if m.contains("tls_key_file")),
        "{:?}",
        half.err()
    );
    let typo = build(json!({ "url": "rediss://127.0.0.1:1", "tls_ca": "/ca.pem" }));
    assert!(
        matches!(&typo, Err(Error::Usage(m)) if m.contains("tls_ca")),
        "{:?}",
        typo.err()
    );
    assert!(build(json!({ "url": "rediss://127.0.0.1:1", "tls_insecure": true })).is_ok());
}
