//! The WAL archive against real clusters: `archive_command` calling `dr wal-push`, fetched
//! back byte-identical, idempotent pushes, refusals, and the missing-file exit status.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::dr;
use dr_testing::PgServer;
use dr_testing::postgres::give_to_postgres;

#[test]
fn archive_command_pushes_and_fetch_restores() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n\n[sources.shop]\nkind = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1/shop\"\n",
            work.path().display()
        ),
    )
    .unwrap();
    assert_eq!(dr(&config, &["keygen"]).0, 0);
    assert_eq!(dr(&config, &["init"]).0, 0);
    give_to_postgres(work.path());
    let archive_command = format!(
        "{} --config {} wal-push --source shop %p",
        env!("CARGO_BIN_EXE_dr"),
        config.display()
    );
    let server = PgServer::start_with(&[
        ("archive_mode", "on"),
        ("archive_command", &archive_command),
        ("wal_level", "replica"),
    ]);
    server.psql(
        "postgres",
        "CREATE TABLE t AS SELECT i FROM generate_series(1, 10000) i",
    );
    let segment = server.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
    server.psql("postgres", "SELECT pg_switch_wal()");
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.psql(
        "postgres",
        "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
    ) < segment
    {
        assert!(Instant::now() < deadline, "not archived: {}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let original = server.data_dir().join("pg_wal").join(&segment);

    // Fetched back byte-identical.
    let fetched = work.path().join("fetched");
    let (code, out) = dr(&config, &["wal-fetch", &segment, fetched.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        std::fs::read(&original).unwrap()
    );

    // Pushing the same file again succeeds; a different file under the same name fails.
    let pgdata = server.data_dir();
    let push = |file: &Path| {
        dr(
            &config,
            &[
                "wal-push",
                "--source",
                "shop",
                "--pgdata",
                pgdata.to_str().unwrap(),
                file.to_str().unwrap(),
            ],
        )
    };
    assert_eq!(push(&original).0, 0, "idempotent push");
    let forged_dir = work.path().join("forged");
    std::fs::create_dir(&forged_dir).unwrap();
    let forged = forged_dir.join(&segment);
    let mut bytes = std::fs::read(&original).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&forged, bytes).unwrap();
    let (code, out) = push(&forged);
    assert_ne!(code, 0);
    assert!(
        out.contains("a different") && out.contains("already archived"),
        "{out}"
    );

    // Another cluster (another system identifier) is refused.
    let other = PgServer::start();
    let (code, out) = dr(
        &config,
        &[
            "wal-push",
            "--source",
            "shop",
            "--pgdata",
            other.data_dir().to_str().unwrap(),
            forged.to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        out.contains("two clusters must never share one archive"),
        "{out}"
    );

    // A file the archive does not have: exit status 1, which ends recovery cleanly.
    let (code, out) = dr(
        &config,
        &[
            "wal-fetch",
            "0000000100000000000000FF",
            fetched.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not in the WAL archive"), "{out}");

    // A repository it cannot read: 255, so PostgreSQL aborts recovery instead of ending it.
    let broken = work.path().join("broken.toml");
    std::fs::write(&broken, "repository = \"/nonexistent/dr-repo\"\n[sources.shop]\nkind = \"postgres\"\nurl = \"postgres://x@127.0.0.1/shop\"\n").unwrap();
    let (code, out) = dr(&broken, &["wal-fetch", &segment, fetched.to_str().unwrap()]);
    assert_eq!(code, 255, "{out}");
}
