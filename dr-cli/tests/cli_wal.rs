//! The WAL archive against real clusters: `archive_command` calling `dr wal-push`, fetched
//! back byte-identical, idempotent pushes, refusals, and the missing-file exit status.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::dr;
use dr_testing::PgServer;
use dr_testing::postgres::give_to_postgres;

/// A repository with a key in `work`, a source `shop` (with `settings` added to its table)
/// and a server whose `archive_command` pushes to it: (dr.toml, the server).
fn archiving_server(work: &Path, settings: &str) -> (std::path::PathBuf, PgServer) {
    let config = work.join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n\n[sources.shop]\nkind = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1/shop\"\n{settings}",
            work.display()
        ),
    )
    .unwrap();
    assert_eq!(dr(&config, &["keygen"]).0, 0);
    assert_eq!(dr(&config, &["init"]).0, 0);
    give_to_postgres(work);
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
    (config, server)
}

#[test]
fn archive_command_pushes_and_fetch_restores() {
    let work = tempfile::tempdir().unwrap();
    let (config, server) = archiving_server(work.path(), "");
    server.psql(
        "postgres",
        "CREATE TABLE t AS SELECT i FROM generate_series(1, 10000) i",
    );
    let segment = server.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
    server.psql("postgres", "SELECT pg_switch_wal()");
    wait_archived(&server, &segment);
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

/// Waits until `server` has archived `segment` (or a later one).
fn wait_archived(server: &PgServer, segment: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server
        .psql(
            "postgres",
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
        )
        .as_str()
        < segment
    {
        assert!(Instant::now() < deadline, "not archived: {}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn prefetched_segments_are_served_without_the_repository_and_damage_is_never_spooled() {
    let work = tempfile::tempdir().unwrap();
    let (config, server) =
        archiving_server(work.path(), "method = \"physical\"\nwal_prefetch = 8\n");
    // Five segments with data, each kept as PostgreSQL wrote it.
    let mut segments = Vec::new();
    for i in 0..5 {
        server.psql(
            "postgres",
            &format!("CREATE TABLE t{i} AS SELECT g FROM generate_series(1, 5000) g"),
        );
        let name = server.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
        server.psql("postgres", "SELECT pg_switch_wal()");
        wait_archived(&server, &name);
        let bytes = std::fs::read(server.data_dir().join("pg_wal").join(&name)).unwrap();
        segments.push((name, bytes));
    }
    let data_object = |name: &str| {
        work.path()
            .join(format!("repo/wal/shop/{}/{name}.zst.age", &name[..8]))
    };
    dr_testing::damage::damage_file(&data_object(&segments[2].0), dr_testing::Damage::Flip);

    let pg_wal = work.path().join("recovered/pg_wal");
    std::fs::create_dir_all(&pg_wal).unwrap();
    let dest = pg_wal.join("RECOVERYXLOG");
    let fetch = |name: &str| dr(&config, &["wal-fetch", name, dest.to_str().unwrap()]);
    let (code, out) = fetch(&segments[0].0);
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read(&dest).unwrap(), segments[0].1);

    // The background prefetcher fills the spool with what it could check, then lets go.
    let spool = pg_wal.join(".dr-prefetch/shop");
    let deadline = Instant::now() + Duration::from_secs(60);
    while spool.join(".prefetcher.lock").exists() || !spool.join(&segments[4].0).exists() {
        assert!(Instant::now() < deadline, "the prefetcher did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(spool.join(&segments[1].0).is_file());
    assert!(
        !spool.join(&segments[2].0).exists(),
        "a damaged segment must never be spooled"
    );

    // With the repository gone, prefetched segments still come back byte-identical; the
    // damaged one cannot (255: recovery aborts, never ends early).
    let repo = work.path().join("repo");
    let away = work.path().join("repo-away");
    std::fs::rename(&repo, &away).unwrap();
    let (code, out) = fetch(&segments[1].0);
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read(&dest).unwrap(), segments[1].1);
    let (code, out) = fetch(&segments[2].0);
    assert_eq!(code, 255, "{out}");
    std::fs::rename(&away, &repo).unwrap();
    let (code, out) = fetch(&segments[2].0);
    assert_eq!(
        code, 255,
        "the damaged segment is refused from the archive too: {out}"
    );
    for (name, bytes) in &segments[3..] {
        let (code, out) = fetch(name);
        assert_eq!(code, 0, "{out}");
        assert_eq!(&std::fs::read(&dest).unwrap(), bytes, "{name}");
    }

    // The end of the archive: exit 1, as without prefetch, and the spool is emptied.
    // (Right after a switch, pg_walfile_name of the current position names the segment
    // just completed: take one far beyond the archive instead.)
    let after = "000000010000000A00000000";
    let deadline = Instant::now() + Duration::from_secs(30);
    while spool.join(".prefetcher.lock").exists() {
        assert!(Instant::now() < deadline, "a prefetcher is still running");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out) = fetch(after);
    assert_eq!(code, 1, "{out}");
    assert!(
        !spool.exists(),
        "the spool is emptied when the archive ends"
    );
}
