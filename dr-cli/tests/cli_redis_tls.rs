//! `kind = "redis"` over TLS from the command line: a `rediss://` source with `tls_ca_file`
//! and a client certificate (the server requires one), RDB and logical backups, verify at
//! restore level, a drill, `dr restore --server rediss://...` into another TLS server,
//! compared with redis-cli --tls (DEBUG DIGEST, keyspace, expiry times); a wrong CA named.

use std::path::Path;

mod common;

use dr_testing::fidelity::redis::{
    EXPIRY_TOLERANCE_MS, assert_faithful_within, fingerprint_server,
};
use dr_testing::{ClientCertificates, RedisServer, ServerCertificate, TlsCertificates};

fn tls_server(certs: &TlsCertificates) -> RedisServer {
    RedisServer::start_tls(
        certs,
        ServerCertificate::SignedByCa,
        ClientCertificates::Required,
        Some("pa55"),
        &[],
    )
}

/// dr.toml with sources `cache` (RDB) and `keys` (logical) at `server`, password from the
/// environment, the CA and client certificate of `certs`, `ca` as the trusted CA.
fn config(
    work: &Path,
    server: &RedisServer,
    certs: &TlsCertificates,
    ca: &Path,
) -> std::path::PathBuf {
    let (cert, key) = certs.client();
    let tls = format!(
        "url = \"rediss://127.0.0.1:{}\"\npassword_env = \"CACHE_PASSWORD\"\ntls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        server.port(),
        ca.display(),
        cert.display(),
        key.display()
    );
    let path = work.join("dr.toml");
    std::fs::write(
        &path,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[sources.cache]\nkind = \"redis\"\n{tls}[sources.keys]\nkind = \"redis\"\nmode = \"logical\"\n{tls}",
            work.display()
        ),
    )
    .unwrap();
    path
}

fn dr(config: &Path, args: &[&str]) -> (i32, String) {
    common::dr_with(config, args, &[("CACHE_PASSWORD", "pa55")])
}

#[test]
fn rediss_sources_back_up_verify_drill_and_restore_into_a_tls_server() {
    let certs = TlsCertificates::generate();
    let source = tls_server(&certs);
    source.load_fidelity_corpus();
    let original = fingerprint_server(&source);
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &source, &certs, &certs.ca());
    let ok = |args: &[&str]| {
        let (code, out) = dr(&config, args);
        assert_eq!(code, 0, "dr {args:?}: {out}");
        out
    };
    ok(&["keygen"]);
    ok(&["init"]);
    for name in ["cache", "keys"] {
        let out = ok(&["backup", name]);
        assert!(out.contains(&format!("backed up {name}")), "{out}");
        let out = ok(&["verify", name, "--level", "restore"]);
        assert!(
            out.contains("scratch redis-server holds the recorded keys"),
            "{out}"
        );
        ok(&["drill", name]);

        let target = RedisServer::start_tls(
            &certs,
            ServerCertificate::SignedByCa,
            ClientCertificates::Required,
            None,
            &[],
        );
        let out = ok(&["restore", name, "--server", &target.url()]);
        assert!(out.contains("rediss://127.0.0.1"), "{out}");
        assert_faithful_within(
            name,
            &original,
            &fingerprint_server(&target),
            EXPIRY_TOLERANCE_MS,
        );
    }
}

#[test]
fn a_wrong_ca_is_named_and_nothing_is_backed_up() {
    let certs = TlsCertificates::generate();
    let source = tls_server(&certs);
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &source, &certs, &certs.other_ca());
    assert_eq!(dr(&config, &["keygen"]).0, 0);
    assert_eq!(dr(&config, &["init"]).0, 0);
    let (code, out) = dr(&config, &["backup", "cache"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("tls_ca_file") && out.contains("other-ca.pem") && !out.contains("pa55"),
        "{out}"
    );
    let (_, listed) = dr(&config, &["list"]);
    assert!(!listed.contains("redis.rdb"), "{listed}");
}
