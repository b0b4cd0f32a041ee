//! `dr` against PostgreSQL servers that take TCP connections only over TLS (hostssl-only
//! pg_hba.conf), every source URL with `sslmode=verify-full`: logical backup, restore in every
//! mode, verify and drill; a physical source with wal-push/wal-fetch, a point-in-time restore
//! and a drill. The server's own log (log_connections) is the oracle that dr and each child
//! it ran connected with TLS.

use std::path::Path;
use std::time::{Duration, Instant};

use dr_testing::PgServer;
use dr_testing::TlsCertificates;
use dr_testing::pg_tls::Hba;
use dr_testing::postgres::{PASSWORD, stop_cluster};
use dr_testing::s3::free_port;

mod common;
use common::pitr::Work;

/// psql (libpq) over TLS, verifying the server, as an operator would check a restore.
fn psql_tls(port: u16, ca: &Path, db: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .arg(format!(
            "host=localhost port={port} user=postgres dbname={db} sslmode=verify-full sslrootcert={}",
            ca.display()
        ))
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Asserts the server logged a TLS connection by each of `programs` (application_name).
fn connected_with_tls(server: &PgServer, programs: &[&str]) {
    let log = server.log();
    for program in programs {
        assert!(
            log.contains(&format!("application_name={program} SSL enabled")),
            "no TLS connection by {program} in the server log:\n{log}"
        );
    }
}

fn logical_config(dir: &Path, url: &str) -> std::path::PathBuf {
    let config = dir.join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n\n[sources.shop]\nkind = \"postgres\"\nurl = \"{url}\"\npassword_env = \"SHOP_DB_PASSWORD\"\n",
            dir.display()
        ),
    )
    .unwrap();
    config
}

fn dr(config: &Path, args: &[&str]) -> (i32, String) {
    let (code, out) = common::dr_with(config, args, &[("SHOP_DB_PASSWORD", PASSWORD)]);
    assert!(!out.contains(PASSWORD), "the password was shown: {out}");
    (code, out)
}

fn ok(config: &Path, args: &[&str]) -> String {
    let (code, out) = dr(config, args);
    assert_eq!(code, 0, "dr {args:?}: {out}");
    out
}

#[test]
fn logical_source_over_verified_tls_in_every_restore_mode() {
    let certs = TlsCertificates::generate();
    let server = PgServer::start_tls(&certs, Hba::SslOnly, &[("log_connections", "on")]);
    let port = server.port();
    let ca = certs.ca();
    server.psql("postgres", "CREATE DATABASE shop");
    server.psql(
        "shop",
        "CREATE TABLE customers (id serial PRIMARY KEY, email text);
         CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers(id));
         INSERT INTO customers (email) SELECT 'u' || i FROM generate_series(1, 100) i;
         INSERT INTO orders (customer_id) SELECT 1 + i % 100 FROM generate_series(1, 1000) i;",
    );
    let dir = tempfile::tempdir().unwrap();
    let query = format!("sslmode=verify-full&sslrootcert={}", ca.display());
    let url = |host: &str| format!("postgres://postgres@{host}:{port}/shop?{query}");
    let config = logical_config(dir.path(), &url("localhost"));
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    ok(&config, &["backup", "shop"]);
    let full = common::listed_ids(&config, Some("shop"))[0].clone();
    connected_with_tls(&server, &["dr", "pg_dump", "pg_dumpall"]);

    let out = ok(&config, &["verify", "shop", "--level", "restore"]);
    assert!(out.contains("no orphaned rows"), "{out}");
    connected_with_tls(&server, &["pg_restore"]);

    ok(&config, &["restore", "shop", "--to", "shop_copy"]);
    assert_eq!(
        psql_tls(port, &ca, "shop_copy", "SELECT count(*) FROM orders"),
        "1000"
    );

    server.psql("shop", "DELETE FROM orders");
    let out = ok(&config, &["restore", "shop", "--swap"]);
    assert!(out.contains("shop_pre_restore_"), "{out}");
    assert_eq!(
        psql_tls(port, &ca, "shop", "SELECT count(*) FROM orders"),
        "1000"
    );

    server.psql("shop", "DELETE FROM orders WHERE id > 10");
    let out = ok(&config, &["restore", "shop", "--in-place"]);
    assert!(out.contains("safety backup"), "{out}");
    assert_eq!(
        psql_tls(port, &ca, "shop", "SELECT count(*) FROM orders"),
        "1000"
    );

    // --server takes its own TLS parameters (here: verified by IP address).
    let elsewhere = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/?{query}");
    let args = [
        "restore",
        "shop",
        &full,
        "--server",
        &elsewhere,
        "--to",
        "shop_elsewhere",
    ];
    ok(&config, &args);
    assert_eq!(
        psql_tls(port, &ca, "shop_elsewhere", "SELECT count(*) FROM orders"),
        "1000"
    );

    let drilled: serde_json::Value =
        serde_json::from_str(&ok(&config, &["drill", "shop", "--json"])).unwrap();
    assert_eq!(drilled["drills"][0]["ok"], true, "{drilled}");

    refusals(dir.path(), port, &certs);
}

/// Plaintext, the wrong CA and the wrong host name fail before anything is written, each
/// saying which parameter to change.
fn refusals(dir: &Path, port: u16, certs: &TlsCertificates) {
    let cases = [
        (
            "sslmode=disable".to_owned(),
            "localhost",
            "set sslmode=require or verify-full",
        ),
        (
            format!(
                "sslmode=verify-full&sslrootcert={}",
                certs.other_ca().display()
            ),
            "localhost",
            "certificate not trusted",
        ),
        (
            format!(
                "sslmode=verify-full&sslrootcert={}&sslcert=/nonexistent.crt",
                certs.ca().display()
            ),
            "localhost",
            "sslcert /nonexistent.crt",
        ),
        (
            "sslmode=verify-full&sslcrl=/crl.pem".to_owned(),
            "localhost",
            "sslcrl",
        ),
    ];
    for (query, host, expected) in cases {
        let sub = dir.join(format!("refusal-{}", free_port()));
        std::fs::create_dir(&sub).unwrap();
        std::fs::copy(dir.join("key.txt"), sub.join("key.txt")).unwrap();
        let config = logical_config(
            &sub,
            &format!("postgres://postgres@{host}:{port}/shop?{query}"),
        );
        std::fs::write(
            &config,
            std::fs::read_to_string(&config).unwrap().replace(
                &format!("{}/repo", sub.display()),
                &format!("{}/repo", dir.display()),
            ),
        )
        .unwrap();
        let (code, out) = dr(&config, &["backup", "shop"]);
        assert_ne!(code, 0, "{query}: {out}");
        assert!(out.contains(expected), "{query}: {out}");
    }
}

/// Switches to a new WAL segment and waits until it is archived; returns its name.
fn archive_now(server: &PgServer) -> String {
    let segment = server.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
    server.psql("postgres", "SELECT pg_switch_wal()");
    let deadline = Instant::now() + Duration::from_secs(60);
    let archived = |last: &str| last.len() == 24 && last[8..] >= segment[8..];
    while !archived(&server.psql(
        "postgres",
        "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
    )) {
        assert!(
            Instant::now() < deadline,
            "{segment} not archived: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    segment
}

#[test]
fn physical_source_over_verified_tls_with_wal_and_point_in_time_restore() {
    let certs = TlsCertificates::generate();
    let ca = certs.ca();
    let work = Work::new("");
    let command = work.archive_command();
    let server = PgServer::start_tls(
        &certs,
        Hba::SslOnly,
        &[
            ("archive_mode", "on"),
            ("archive_command", &command),
            ("wal_level", "replica"),
            ("log_connections", "on"),
        ],
    );
    server.psql(
        "postgres",
        &format!("ALTER SYSTEM SET archive_command = '{command}'"),
    );
    server.psql("postgres", "ALTER SYSTEM SET archive_mode = on");
    let query = format!("sslmode=verify-full&sslrootcert={}", ca.display());
    work.write_config_url(&server.url_with("localhost", "postgres", &query), "");
    server.psql(
        "postgres",
        "CREATE TABLE events (id serial PRIMARY KEY, note text); \
         INSERT INTO events (note) SELECT 'before backup' FROM generate_series(1, 100)",
    );
    work.ok(&["backup", "db"]);
    connected_with_tls(&server, &["dr", "pg_basebackup"]);
    server.psql(
        "postgres",
        "INSERT INTO events (note) SELECT 'after backup' FROM generate_series(1, 50)",
    );
    std::thread::sleep(Duration::from_millis(1100));
    let t = server.psql(
        "postgres",
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(Duration::from_millis(1100));
    server.psql(
        "postgres",
        "INSERT INTO events (note) SELECT 'after T' FROM generate_series(1, 30)",
    );
    let segment = archive_now(&server);

    // wal-fetch gives back the segment the archive_command pushed, byte for byte.
    let fetched = work.path("fetched");
    work.ok(&["wal-fetch", &segment, fetched.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        std::fs::read(server.data_dir().join("pg_wal").join(&segment)).unwrap()
    );

    // The restored copy keeps the source's TLS settings: psql verifies it like the source.
    let restored = work.path("at-t");
    let restored_port = free_port();
    let port_text = restored_port.to_string();
    let out = work.ok(&[
        "restore",
        "db",
        "--at",
        &t,
        "--to",
        restored.to_str().unwrap(),
        "--start",
        "--port",
        &port_text,
    ]);
    assert!(out.contains("recovered and promoted"), "{out}");
    let count = psql_tls(
        restored_port,
        &ca,
        "postgres",
        "SELECT count(*) FROM events",
    );
    let ssl = psql_tls(
        restored_port,
        &ca,
        "postgres",
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    stop_cluster(&restored);
    assert_eq!((count.as_str(), ssl.as_str()), ("150", "t"));

    // A drill recovers a scratch copy and queries it over verified TLS on 127.0.0.1.
    let drilled: serde_json::Value =
        serde_json::from_str(&work.ok(&["drill", "db", "--json"])).unwrap();
    assert_eq!(drilled["drills"][0]["ok"], true, "{drilled}");
}
