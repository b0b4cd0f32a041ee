//! Fidelity of a physical restore: a base backup and the WAL archive, recovered by
//! `dr restore --start` into a new data directory, give back the awkward database (its
//! properties, schema, rows, sequences, large objects) and the whole cluster's roles,
//! memberships and databases, as psql/pg_dump see them.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dr_testing::fidelity::assert_faithful;
use dr_testing::fidelity::postgres::{
    corpus, database_names, fingerprint_database, fingerprint_roles,
};
use dr_testing::postgres::{PASSWORD, stop_cluster};
use dr_testing::s3::free_port;

/// A work directory with a repository, a key and a configuration for source `db`.
mod common;
use common::pitr::Work;

/// A cluster `dr restore --start` started; stopped by its PID when dropped.
struct Restored {
    dir: PathBuf,
    port: u16,
}

impl Drop for Restored {
    fn drop(&mut self) {
        stop_cluster(&self.dir);
    }
}

fn psql(port: u16, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .args(["-c", sql])
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

/// Switches to a new WAL segment and waits until the finished one is archived.
fn archive_now(port: u16) {
    let segment = psql(port, "SELECT pg_walfile_name(pg_current_wal_lsn())");
    psql(port, "SELECT pg_switch_wal()");
    let deadline = Instant::now() + Duration::from_secs(60);
    // The last archived file may be a `.backup` or `.history` file named after an older
    // segment: only a plain segment name at or past ours says ours is archived.
    let archived = |last: &str| last.len() == 24 && last[8..] >= segment[8..];
    while !archived(&psql(
        port,
        "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
    )) {
        assert!(Instant::now() < deadline, "{segment} not archived");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn physical_recovery_gives_back_the_cluster() {
    let work = Work::new("");
    let server = work.archiving_server("");
    let port = server.port();
    corpus::create(port, "shop");
    work.ok(&["backup", "db"]);
    // After the base backup: replayed from the archive.
    dr_testing::fidelity::postgres::psql(
        port,
        "shop",
        "INSERT INTO app.accounts VALUES (1000, 'late', 1); SELECT nextval('app.invoice')",
    );
    dr_testing::fidelity::postgres::psql(port, "postgres", "CREATE ROLE late_role NOLOGIN");
    let source_db = fingerprint_database(port, "shop");
    let source_roles = fingerprint_roles(port);
    let source_databases = database_names(port);
    archive_now(port);

    let restored = Restored {
        dir: work.path("recovered"),
        port: free_port(),
    };
    let dir = restored.dir.to_str().unwrap().to_owned();
    let port_text = restored.port.to_string();
    let out = work.ok(&[
        "restore", "db", "--to", &dir, "--start", "--port", &port_text,
    ]);
    assert!(out.contains("recovered and promoted"), "{out}");
    // PostgreSQL WAL-logs a sequence 32 values ahead, so a recovery from WAL (this, or any
    // crash) resumes sequences up to 32 steps further: never a value handed out twice. That
    // is the one field compared as "not behind" instead of equal.
    let found = fingerprint_database(restored.port, "shop");
    let sequences: Vec<&str> = source_db
        .fields()
        .filter(|f| f.starts_with("sequence."))
        .collect();
    assert!(!sequences.is_empty());
    for field in &sequences {
        let value = |fp: &dr_testing::fidelity::Fingerprint| -> i64 {
            fp.get(field)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(
            value(&found) >= value(&source_db),
            "{field} went back: {:?}",
            found.get(field)
        );
    }
    assert_faithful(
        "physical",
        &source_db.without(&sequences),
        &found.without(&sequences),
    );
    assert_faithful(
        "physical (roles)",
        &source_roles,
        &fingerprint_roles(restored.port),
    );
    assert_eq!(database_names(restored.port), source_databases);
    drop(restored);
    drop(server);
}
