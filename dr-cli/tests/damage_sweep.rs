//! The damage sweep over the kinds the SQLite/directory sweep (corruption.rs) does not
//! reach: a PostgreSQL logical backup, a PostgreSQL base backup with its WAL archive
//! (segments, their records, a timeline history file), a bucket backup, and a recovery
//! point record. Every object is damaged on a fresh copy of the repository; `dr verify`
//! names it (exit 3), restores refuse without writing their target, `dr wal-fetch` of a
//! damaged file exits 255 (PostgreSQL aborts recovery) and leaves nothing behind, and
//! `dr prune` deletes nothing committed.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::sweep::{Damage, Target, config_for, copy_dir, damage, listing_of, sweep_to};
use common::{dr, ok, output_of};
use dr_testing::PgServer;
use dr_testing::postgres::{PASSWORD, give_to_postgres, postgres_owner};

/// Bytes no compressor shrinks (xorshift), so that 1 MiB parts really are several.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn ids(config: &Path, source: &str) -> Vec<String> {
    common::listed_ids(config, Some(source))
}

fn write_config(dir: &Path, sources: &str) -> PathBuf {
    let config = dir.join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[pipeline]\npart_size_mib = 1\n{sources}",
            dir.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn postgres_logical_backup_every_object() {
    let server = PgServer::start();
    server.psql("postgres", "CREATE DATABASE shop");
    server.psql(
        "shop",
        "CREATE TABLE t AS SELECT i, md5(random()::text) || md5(random()::text) AS note FROM generate_series(1, 40000) i",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[sources.shop]\nkind = \"postgres\"\nurl = \"postgres://postgres:{PASSWORD}@127.0.0.1:{}/shop\"\n",
            server.port()
        ),
    );
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    ok(&config, &["backup", "shop"]);
    // Other rows in the newest backup: a part of the older one is really foreign.
    server.psql("shop", "UPDATE t SET note = md5(note) WHERE i % 2 = 0");
    ok(&config, &["backup", "shop"]);
    let id = ids(&config, "shop").remove(0);
    let db_name = |case: &str| {
        let name: String = case
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("r_{}", &name[name.len().saturating_sub(55)..])
    };
    let restore_args = |case: &str, id: &str| {
        ["restore", "shop", id, "--to", &db_name(case)]
            .map(str::to_owned)
            .to_vec()
    };
    let written = |case: &str| {
        server.psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{}'",
                db_name(case)
            ),
        ) != "0"
    };
    // A restore may succeed only with exactly the rows backed up (a damaged stored checksum
    // in the manifest does not change what the plain checksums pin); then it is dropped.
    let digest = "SELECT count(*) || ' ' || md5(string_agg(i || note, ',' ORDER BY i)) FROM t";
    let original = server.psql("shop", digest);
    let same_rows = |case: &str, _: &str, _: &str| {
        let same = server.psql(&db_name(case), digest) == original;
        server.psql("postgres", &format!("DROP DATABASE {}", db_name(case)));
        same
    };
    let target = Target {
        restore_args: &restore_args,
        written: &written,
        objects: &|_| true,
        success_ok: Some(&same_rows),
    };
    let cases = sweep_to(dir.path(), &config, "shop", &id, &target);
    println!("{cases} damage cases checked");
    // manifest (4), SHA256SUMS (3), 2+ dump parts (5 each, the last 4), the globals part.
    assert!(cases >= 20, "{cases} cases");
}

#[test]
fn bucket_backup_every_object() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(bucket.join("media")).unwrap();
    for i in 0..6u64 {
        std::fs::write(bucket.join(format!("media/clip{i}.mp4")), noise(i, 300_000)).unwrap();
    }
    let config = write_config(
        dir.path(),
        &format!(
            "[sources.media]\nkind = \"bucket\"\nurl = \"{}\"\n",
            bucket.display()
        ),
    );
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    ok(&config, &["backup", "media"]);
    std::fs::write(bucket.join("media/clip3.mp4"), noise(99, 1_500_000)).unwrap();
    ok(&config, &["backup", "media"]);
    let root = dir.path().join("restored");
    // Into an existing empty directory, so that a refusal cannot come from a missing target.
    let restore_args = |case: &str, id: &str| {
        let to = root.join(case);
        std::fs::create_dir_all(&to).unwrap();
        ["restore", "media", id, "--to", to.to_str().unwrap()]
            .map(str::to_owned)
            .to_vec()
    };
    let written = |case: &str| !listing_of(&root.join(case)).is_empty();
    let target = Target {
        restore_args: &restore_args,
        written: &written,
        objects: &|_| true,
        success_ok: None,
    };
    let mut cases = 0;
    for id in ids(&config, "media") {
        cases += sweep_to(dir.path(), &config, "media", &id, &target);
    }
    println!("{cases} damage cases checked");
    assert!(cases >= 24, "{cases} cases");
}

/// `dr` as the postgres user (when root): the archive command writes as that user.
fn dr_pg(config: &Path, args: &[&str]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dr"));
    command.arg("--config").arg(config).args(args);
    if let Some((uid, gid)) = postgres_owner() {
        command.uid(uid).gid(gid);
    }
    output_of(command)
}

fn ok_pg(config: &Path, args: &[&str]) -> String {
    let (code, out) = dr_pg(config, args);
    assert_eq!(code, 0, "dr {args:?}: {out}");
    out
}

/// Writes a little, switches to a new WAL segment and waits until the finished one is
/// archived (a switch out of an empty segment does nothing).
fn archive_now(server: &PgServer) {
    server.psql(
        "postgres",
        "INSERT INTO t SELECT i FROM generate_series(1, 1000) i",
    );
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
}

/// A base backup on timeline 1, WAL after it, and a history file of timeline 2 that leaves
/// timeline 1 past everything archived (pushed by `dr wal-push`, as PostgreSQL would).
fn archived_cluster(dir: &Path) -> (PgServer, PathBuf, String) {
    give_to_postgres(dir);
    let config = write_config(
        dir,
        "[sources.db]\nkind = \"postgres\"\nmethod = \"physical\"\nurl = \"postgres://postgres:PW@127.0.0.1:1/postgres\"\n",
    );
    ok_pg(&config, &["keygen"]);
    ok_pg(&config, &["init"]);
    let command = format!(
        "{} --config {} wal-push --source db %p",
        env!("CARGO_BIN_EXE_dr"),
        config.display()
    );
    let server = PgServer::start_with(&[
        ("archive_mode", "on"),
        ("archive_command", &command),
        ("wal_level", "replica"),
    ]);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "postgres:PW@127.0.0.1:1",
        &format!("postgres:{PASSWORD}@127.0.0.1:{}", server.port()),
    );
    std::fs::write(&config, text).unwrap();
    server.psql(
        "postgres",
        "CREATE TABLE t AS SELECT i FROM generate_series(1, 1000) i",
    );
    ok_pg(&config, &["backup", "db"]);
    archive_now(&server);
    ok_pg(&config, &["backup", "db"]);
    for _ in 0..3 {
        archive_now(&server);
    }
    let history = dir.join("pushed/00000002.history");
    std::fs::create_dir_all(history.parent().unwrap()).unwrap();
    std::fs::write(&history, "1\t0/FF000000\tno recovery target specified\n").unwrap();
    give_to_postgres(&dir.join("pushed"));
    ok_pg(
        &config,
        &[
            "wal-push",
            "--source",
            "db",
            "--pgdata",
            server.data_dir().to_str().unwrap(),
            history.to_str().unwrap(),
        ],
    );
    // What retention removes anyway (WAL older than both bases) goes now: whatever a prune
    // of a damaged copy deletes is then the damage's doing.
    ok_pg(&config, &["prune"]);
    let id = ids(&config, "db").remove(0);
    (server, config, id)
}

#[test]
fn postgres_base_backup_sampled_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, config, id) = archived_cluster(dir.path());
    let verified = ok(&config, &["verify", &id]);
    assert!(verified.contains("decoded and checked"), "{verified}");
    let root = dir.path().join("restored");
    let restore_args = |case: &str, _: &str| {
        let to = root.join(case);
        [
            "restore",
            "db",
            "--at",
            "latest",
            "--to",
            to.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let written = |case: &str| !listing_of(&root.join(case)).is_empty();
    // Every part goes through the same code: the first two (swap, foreign) stand for all.
    let sample =
        |o: &str| !o.ends_with(".zst.age") || o.contains(".000000.") || o.contains(".000001.");
    // Recovering to the latest point from the older base backup gives the same cluster: with
    // the newest one's manifest unreadable, that is what a restore may do.
    let elsewhere = |_: &str, id: &str, out: &str| {
        out.contains("restored db ") && !out.contains(&format!("restored db {id}"))
    };
    let target = Target {
        restore_args: &restore_args,
        written: &written,
        objects: &sample,
        success_ok: Some(&elsewhere),
    };
    let cases = sweep_to(dir.path(), &config, "db", &id, &target);
    println!("{cases} damage cases checked");
    assert!(cases >= 15, "{cases} cases");
}

/// The committed records of the WAL archive (`<timeline>/<name>.json`).
fn wal_records(repo: &Path) -> Vec<String> {
    let wal = repo.join("wal/db");
    let mut records = Vec::new();
    for timeline in listing_of(&wal) {
        for name in listing_of(&wal.join(&timeline)) {
            if name.ends_with(".json") {
                records.push(format!("{timeline}/{name}"));
            }
        }
    }
    records
}

#[test]
fn wal_archive_every_kind_of_object() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, config, id) = archived_cluster(dir.path());
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&config, &["show", "--json", &id])).unwrap();
    let start = shown["source_info"]["start_wal_file"]
        .as_str()
        .unwrap()
        .to_owned();
    let segments: Vec<String> = wal_records(&dir.path().join("repo"))
        .iter()
        .filter_map(|r| {
            r.strip_prefix("00000001/")?
                .strip_suffix(".json")
                .map(str::to_owned)
        })
        .filter(|n| n.len() == 24 && n[8..] >= start[8..])
        .collect();
    assert!(segments.len() >= 4, "{segments:?}");
    // The base backup's first segment and one in the middle of its run (not the newest: a
    // missing newest segment looks like one not archived yet), and the history file.
    let chosen = [
        segments[0].clone(),
        segments[segments.len() / 2].clone(),
        "00000002.history".to_owned(),
    ];
    let mut cases = 0;
    for name in &chosen {
        for (suffix, how) in [
            ("zst.age", Damage::Flip),
            ("zst.age", Damage::Truncate),
            ("zst.age", Damage::Delete),
            ("json", Damage::Flip),
            ("json", Damage::Truncate),
            ("json", Damage::InvalidJson),
            ("json", Damage::Delete),
        ] {
            wal_case(dir.path(), &config, (&id, &segments[0]), name, suffix, how);
            cases += 1;
        }
    }
    // The newest segment: its data gone while its record stays is damage (wal-fetch fails,
    // and recovery with it); its record gone looks like a file not archived yet.
    let newest = segments.last().unwrap();
    wal_case(
        dir.path(),
        &config,
        (&id, &segments[0]),
        newest,
        "zst.age",
        Damage::Delete,
    );
    cases += 1;
    println!("{cases} WAL damage cases checked");
}

/// One case: `name`'s object `suffix` damaged, checked against base backup `id` whose first
/// segment is `start`.
fn wal_case(
    dir: &Path,
    config: &Path,
    (id, start): (&str, &str),
    name: &str,
    suffix: &str,
    how: Damage,
) {
    let case = format!("{name}.{suffix}-{how:?}");
    let repo = dir.join("cases").join(&case);
    copy_dir(&dir.join("repo"), &repo);
    let config = config_for(dir, config, &repo);
    let object = repo.join(format!("wal/db/{}/{name}.{suffix}", &name[..8]));
    damage(&object, how);
    let history = name.ends_with(".history");
    // Without its record (or its data) a file is not in the archive: for a segment in the
    // middle that is a gap; a history file that is gone leaves an archive of timeline 1.
    if !(history && how == Damage::Delete) {
        let (code, out) = dr(&config, &["verify", id]);
        assert_eq!(code, 3, "{case}: verify passed:\n{out}");
        assert!(out.contains(name), "{case}: {name} not named:\n{out}");
    }
    let dest = dir.join("fetched").join(&case);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let (code, out) = dr(&config, &["wal-fetch", name, dest.to_str().unwrap()]);
    let not_archived = suffix == "json" && how == Damage::Delete;
    assert_eq!(
        code,
        if not_archived { 1 } else { 255 },
        "{case}: wal-fetch:\n{out}"
    );
    let leftovers: Vec<String> = listing_of(dest.parent().unwrap())
        .into_iter()
        .filter(|n| n.starts_with(&case))
        .collect();
    assert!(leftovers.is_empty(), "{case}: wal-fetch left {leftovers:?}");
    let target = dir.join("restored").join(&case);
    let (code, out) = dr(
        &config,
        &[
            "restore",
            "db",
            "--at",
            "latest",
            "--to",
            target.to_str().unwrap(),
        ],
    );
    // The base backup holds its own first segment: without the archived copy's record
    // recovery reads that one (wal-fetch said "not archived"), so this restore may go on.
    let in_base = name == start && not_archived;
    let recoverable = in_base || (history && how == Damage::Delete);
    if !recoverable {
        assert_ne!(code, 0, "{case}: restore succeeded:\n{out}");
        assert!(
            listing_of(&target).is_empty(),
            "{case}: the target was written:\n{out}"
        );
    }
    let records = wal_records(&repo);
    let backups = listing_of(&repo.join("backups/db"));
    let (_, out) = dr(&config, &["prune", "--orphan-grace", "0s"]);
    assert_eq!(
        wal_records(&repo),
        records,
        "{case}: prune deleted WAL:\n{out}"
    );
    assert_eq!(
        listing_of(&repo.join("backups/db")),
        backups,
        "{case}: prune:\n{out}"
    );
    std::fs::remove_dir_all(&repo).unwrap();
}
