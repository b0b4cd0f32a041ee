//! PostgreSQL over TLS against a real PostgreSQL 15 with libpq's `sslmode` meanings: what
//! dr's own connection does is checked in the server's `pg_stat_ssl`, and every refusal is
//! compared with what libpq (psql) does with the same settings.

use std::path::Path;
use std::process::Command;

use dr_postgres::PgConnection;
use dr_testing::PgServer;
use dr_testing::TlsCertificates;
use dr_testing::pg_tls::{CERT_USER, Hba};
use dr_testing::postgres::PASSWORD;

/// Whether dr's own connection to `url` is encrypted, according to the server.
async fn encrypted(conn: &PgConnection) -> bool {
    let client = conn
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{conn}: {e}"));
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn conn(url: &str) -> PgConnection {
    PgConnection::from_url(url).unwrap()
}

/// The error dr's connection fails with.
async fn refused(conn: &PgConnection) -> String {
    match conn.connect().await {
        Ok(_) => panic!("{conn} connected"),
        Err(e) => e.to_string(),
    }
}

/// psql (libpq) with a connection string; its exit status and stderr.
fn psql(conninfo: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-c"])
        .arg("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .arg(conninfo)
        .env("PGPASSWORD", PASSWORD)
        .env_remove("PGSSLMODE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
            + &String::from_utf8_lossy(&out.stderr),
    )
}

fn libpq(server: &PgServer, extra: &str) -> (bool, String) {
    psql(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres {extra}",
        server.port()
    ))
}

#[tokio::test]
async fn hostssl_only_server_with_every_sslmode() {
    let certs = TlsCertificates::generate();
    let server = PgServer::start_tls(&certs, Hba::SslOnly, &[]);
    let ca = certs.ca().display().to_string();
    let wrong = certs.other_ca().display().to_string();
    let url = |host: &str, query: &str| server.url_with(host, "postgres", query);

    // Encrypted without verifying; verified fully by IP and by name; prefer and allow end
    // up on TLS because the server refuses plaintext.
    assert!(encrypted(&conn(&url("127.0.0.1", "sslmode=require"))).await);
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    assert!(encrypted(&conn(&url("127.0.0.1", &full))).await);
    assert!(encrypted(&conn(&url("localhost", &full))).await);
    assert!(encrypted(&conn(&url("127.0.0.1", ""))).await);
    assert!(encrypted(&conn(&url("127.0.0.1", "sslmode=allow"))).await);
    assert_eq!(libpq(&server, "sslmode=allow"), (true, "t".into()));

    // The wrong CA: refused under verify-full, and under require too (libpq verifies the
    // chain whenever a root certificate is given).
    for mode in ["verify-full", "verify-ca", "require"] {
        let err = refused(&conn(&url(
            "127.0.0.1",
            &format!("sslmode={mode}&sslrootcert={wrong}"),
        )))
        .await;
        assert!(
            err.contains("certificate not trusted") && err.contains("sslrootcert"),
            "{mode}: {err}"
        );
        assert!(!err.contains(PASSWORD), "{err}");
        let (ok, said) = libpq(&server, &format!("sslmode={mode} sslrootcert={wrong}"));
        assert!(!ok && said.contains("certificate verify failed"), "{said}");
    }

    // A copy of the server reached by address while the name is otherhost: verify-full
    // refuses the name, verify-ca only checks the chain. libpq (hostaddr) agrees.
    let other = conn(&url("otherhost", &full)).on("127.0.0.1", server.port());
    let err = refused(&other).await;
    assert!(
        err.contains("name mismatch")
            && err.contains("otherhost")
            && err.contains("sslmode=verify-ca"),
        "{err}"
    );
    let (ok, said) = psql(&format!(
        "host=otherhost hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={ca}",
        server.port()
    ));
    assert!(!ok && said.contains("does not match host name"), "{said}");
    let chain_only = format!("sslmode=verify-ca&sslrootcert={ca}");
    assert!(encrypted(&conn(&url("otherhost", &chain_only)).on("127.0.0.1", server.port())).await);

    // Plaintext against hostssl-only: the message names sslmode; libpq is refused too.
    let err = refused(&conn(&url("127.0.0.1", "sslmode=disable"))).await;
    assert!(
        err.contains("the server requires TLS") && err.contains("sslmode=require"),
        "{err}"
    );
    let (ok, said) = libpq(&server, "sslmode=disable");
    assert!(!ok && said.contains("no encryption"), "{said}");

    children_get_the_settings(&server, &ca, &wrong).await;
    client_certificates(&server, &certs).await;
    unusable_files(&server, &certs).await;
}

/// A child started by `PgConnection::command` connects as dr does, with nothing on its
/// command line but the SQL.
async fn children_get_the_settings(server: &PgServer, ca: &str, wrong: &str) {
    let query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let run = |c: &PgConnection| {
        let mut command = c.command("psql");
        command.args(["-X", "-A", "-t", "-c", query]);
        command
    };
    let good = conn(&server.url_with(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    let out = run(&good).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
    let bad = conn(&server.url_with(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={wrong}"),
    ));
    let out = run(&bad).output().await.unwrap();
    assert!(!out.status.success());
    let mismatch = conn(&server.url_with(
        "otherhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .on("127.0.0.1", server.port());
    let out = run(&mismatch).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("does not match host name"),
        "{stderr}"
    );
}

/// `hostssl ... cert`: the client certificate logs in; without one the message says which
/// parameters to set.
async fn client_certificates(server: &PgServer, certs: &TlsCertificates) {
    server.psql("postgres", &format!("CREATE ROLE {CERT_USER} LOGIN"));
    let (cert, key) = certs.client();
    let ca = certs.ca().display().to_string();
    let with_cert = format!(
        "postgres://{CERT_USER}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
        server.port(),
        cert.display(),
        key.display()
    );
    let client = conn(&with_cert).connect().await.unwrap();
    let dn: String = client
        .query_one(
            "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dn, format!("/CN={CERT_USER}"));
    let without = format!(
        "postgres://{CERT_USER}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}",
        server.port()
    );
    let err = refused(&conn(&without)).await;
    assert!(err.contains("sslcert") && err.contains("sslkey"), "{err}");
}

/// Files dr cannot use are named with their parameter before anything connects.
async fn unusable_files(server: &PgServer, certs: &TlsCertificates) {
    let url = |query: String| server.url_with("localhost", "postgres", &query);
    let err = refused(&conn(&url(
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem".into(),
    )))
    .await;
    assert!(err.contains("sslrootcert /nonexistent/ca.pem"), "{err}");
    let (cert, key) = certs.client();
    let open_key = certs.path("open.key");
    std::fs::copy(&key, &open_key).unwrap();
    chmod(&open_key, 0o644);
    let err = refused(&conn(&url(format!(
        "sslmode=require&sslcert={}&sslkey={}",
        cert.display(),
        open_key.display()
    ))))
    .await;
    assert!(
        err.contains("sslkey") && err.contains("group or world access"),
        "{err}"
    );
    let err = PgConnection::from_url(&url("sslmode=verify-ful".into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sslmode=verify-ful") && !err.contains(PASSWORD),
        "{err}"
    );
    let home_root = std::env::var_os("HOME").map(|h| Path::new(&h).join(".postgresql/root.crt"));
    if !home_root.is_some_and(|p| p.exists()) {
        let err = refused(&conn(&url("sslmode=verify-full".into()))).await;
        assert!(err.contains("set sslrootcert="), "{err}");
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A server taking both: prefer (the default) encrypts, disable and allow do not.
#[tokio::test]
async fn a_server_taking_both_follows_the_mode() {
    let certs = TlsCertificates::generate();
    let server = PgServer::start_tls(&certs, Hba::Both, &[]);
    let url = |query: &str| server.url_with("127.0.0.1", "postgres", query);
    assert!(encrypted(&conn(&url(""))).await);
    assert!(encrypted(&conn(&url("sslmode=prefer"))).await);
    assert!(!encrypted(&conn(&url("sslmode=disable"))).await);
    assert!(!encrypted(&conn(&url("sslmode=allow"))).await);
    assert_eq!(libpq(&server, "sslmode=allow"), (true, "f".into()));
    assert_eq!(libpq(&server, ""), (true, "t".into()));
}

/// A server without TLS: prefer falls back to plaintext, require says what to change.
#[tokio::test]
async fn a_server_without_tls() {
    let server = PgServer::start();
    let url = |query: &str| server.url_with("127.0.0.1", "postgres", query);
    assert!(!encrypted(&conn(&url(""))).await);
    let err = refused(&conn(&url("sslmode=require"))).await;
    assert!(
        err.contains("does not accept TLS") && err.contains("sslmode=prefer"),
        "{err}"
    );
    let (ok, said) = libpq(&server, "sslmode=require");
    assert!(!ok && said.contains("does not support SSL"), "{said}");
}
