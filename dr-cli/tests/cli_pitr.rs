//! Point-in-time recovery against real clusters: base backups with `dr backup`, WAL through
//! a real `archive_command`, `dr restore --at` into new data directories started by dr, a
//! second recovery on the new timeline, gaps reported and refused, WAL pruned with its bases.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

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

impl Restored {
    fn psql(&self, sql: &str) -> String {
        psql(self.port, sql)
    }
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

/// Notes the server's time between two commits, a second apart from each.
fn note_time(port: u16) -> String {
    std::thread::sleep(Duration::from_millis(1100));
    let t = psql(
        port,
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(Duration::from_millis(1100));
    t
}

fn restore(work: &Work, name: &str, at: &str, extra: &[&str]) -> Restored {
    let restored = Restored {
        dir: work.path(name),
        port: free_port(),
    };
    let dir = restored.dir.to_str().unwrap().to_owned();
    let port_text = restored.port.to_string();
    let mut args = vec![
        "restore", "db", "--at", at, "--to", &dir, "--start", "--port", &port_text,
    ];
    args.extend_from_slice(extra);
    let out = work.ok(&args);
    assert!(out.contains("recovered and promoted"), "{out}");
    restored
}

#[test]
fn recovers_to_a_time_to_latest_and_again_on_the_new_timeline() {
    let work = Work::new("");
    let server = work.archiving_server("");
    let port = server.port();
    psql(
        port,
        "CREATE TABLE events (id serial PRIMARY KEY, note text, at timestamptz DEFAULT clock_timestamp()); \
         CREATE TABLE customers AS SELECT i AS id, 'customer ' || i AS name FROM generate_series(1, 500) i; \
         INSERT INTO events (note) SELECT 'before backup' FROM generate_series(1, 100)",
    );
    let out = work.ok(&["backup", "db"]);
    assert!(out.contains("backed up db"), "{out}");
    psql(
        port,
        "INSERT INTO events (note) SELECT 'after backup' FROM generate_series(1, 50)",
    );
    let lsn = psql(port, "SELECT pg_current_wal_insert_lsn()");
    let t = note_time(port);
    psql(
        port,
        "INSERT INTO events (note) SELECT 'after T' FROM generate_series(1, 30)",
    );
    psql(port, "DROP TABLE customers");
    archive_now(port);

    // The plan names the base backup and the WAL, and downloads nothing.
    let plan = work.ok(&["restore", "db", "--at", &t, "--dry-run"]);
    assert!(
        plan.contains("base backup") && plan.contains("WAL 0000000100"),
        "{plan}"
    );
    let listed = work.ok(&["list"]);
    assert!(listed.contains("db: recoverable from"), "{listed}");
    let verified = work.ok(&["verify", "db"]);
    assert!(verified.contains("WAL archive continuous"), "{verified}");

    // To T: exactly the rows committed before T, and the table dropped later still there.
    let at_t = restore(&work, "at-t", &t, &[]);
    assert_eq!(at_t.psql("SELECT count(*) FROM events"), "150");
    assert_eq!(
        at_t.psql("SELECT count(*) FROM events WHERE note = 'after T'"),
        "0"
    );
    assert_eq!(at_t.psql("SELECT count(*) FROM customers"), "500");
    assert_eq!(at_t.psql("SELECT pg_is_in_recovery()"), "f");
    drop(at_t);

    // To a WAL position: the same rows.
    let at_lsn = restore(&work, "at-lsn", &lsn, &[]);
    assert_eq!(
        at_lsn.psql("SELECT count(*) FROM events"),
        "150",
        "{}",
        std::fs::read_to_string(at_lsn.dir.join("dr-recovery.log")).unwrap_or_default()
    );
    drop(at_lsn);

    // To the latest: everything, the drop included; the original cluster untouched.
    let latest = restore(&work, "latest", "latest", &[]);
    assert_eq!(latest.psql("SELECT count(*) FROM events"), "180");
    assert_eq!(
        latest.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'customers'"),
        "0"
    );
    drop(latest);
    assert_eq!(
        server.psql("postgres", "SELECT count(*) FROM events"),
        "180"
    );

    // Recover to T again, this time as the new primary archiving timeline 2 ...
    let primary = restore(&work, "new-primary", &t, &["--keep-archiving"]);
    let timeline = primary.psql("SELECT timeline_id FROM pg_control_checkpoint()");
    primary.psql("CHECKPOINT");
    assert_ne!(
        primary.psql("SELECT timeline_id FROM pg_control_checkpoint()"),
        "1",
        "was {timeline}"
    );
    primary.psql("INSERT INTO events (note) SELECT 'timeline 2' FROM generate_series(1, 7)");
    let t2 = note_time(primary.port);
    primary.psql("DELETE FROM events WHERE note = 'before backup'");
    archive_now(primary.port);

    // ... and recover that one to T2: the old base backup, timeline 1 then timeline 2.
    let plan = work.ok(&["restore", "db", "--at", &t2, "--dry-run"]);
    assert!(plan.contains("00000002.history"), "{plan}");
    let second = restore(&work, "second", &t2, &[]);
    assert_eq!(second.psql("SELECT count(*) FROM events"), "157");
    assert_eq!(
        second.psql("SELECT count(*) FROM events WHERE note = 'before backup'"),
        "100"
    );
}

#[test]
fn gaps_are_reported_and_refused_and_prune_keeps_what_bases_need() {
    let retention = "[retention]\nkeep_last = 1\n";
    let work = Work::new(retention);
    let server = work.archiving_server(retention);
    let port = server.port();
    psql(
        port,
        "CREATE TABLE t AS SELECT i FROM generate_series(1, 1000) i",
    );
    work.ok(&["backup", "db"]);
    for _ in 0..3 {
        psql(
            port,
            "INSERT INTO t SELECT i FROM generate_series(1, 1000) i",
        );
        archive_now(port);
    }
    work.ok(&["backup", "db"]);
    let second_start = second_base_start(&work);
    psql(
        port,
        "INSERT INTO t SELECT i FROM generate_series(1, 1000) i",
    );
    archive_now(port);
    let before = archived_segments(&work);
    assert!(
        before.iter().any(|s| s[8..] < second_start[8..]),
        "{before:?}"
    );

    // Prune: the first base backup goes, and with it the WAL only it needed.
    let out = work.ok(&["prune"]);
    assert!(out.contains("archived WAL files older than"), "{out}");
    let after = archived_segments(&work);
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|s| s[8..] >= second_start[8..]),
        "{after:?}"
    );
    let verified = work.ok(&["verify", "db", "--level", "restore"]);
    assert!(verified.contains("pg_verifybackup"), "{verified}");

    // A segment goes missing: verify says where, a recovery past it is refused.
    psql(
        port,
        "INSERT INTO t SELECT i FROM generate_series(1, 1000) i",
    );
    archive_now(port);
    let all = archived_segments(&work);
    let missing = all.iter().rev().nth(1).unwrap().clone();
    for suffix in ["json", "zst.age"] {
        std::fs::remove_file(
            work.path(&format!("repo/wal/db/{}/{missing}.{suffix}", &missing[..8])),
        )
        .unwrap();
    }
    let (code, out) = work.dr(&["verify", "db"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("gap") && out.contains(&missing), "{out}");
    let (code, out) = work.dr(&["restore", "db", "--at", "2000-01-01T00:00:00Z", "--dry-run"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no base backup finished before it"), "{out}");
    let target = work.path("refused");
    let (code, out) = work.dr(&[
        "restore",
        "db",
        "--at",
        "latest",
        "--to",
        target.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(out.contains("gap") && out.contains(&missing), "{out}");
    assert!(
        !target.exists(),
        "nothing is created for a refused recovery"
    );
    // A drill recovers on a scratch server: the gap fails it (exit 3), and the report says so.
    let (code, out) = work.dr(&["drill", "db"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("recovery drill failed") && out.contains(&missing),
        "{out}"
    );
    let report = work.ok(&["report"]);
    assert!(
        report.contains("| db |") && report.contains("FAILED"),
        "{report}"
    );
    // Monitoring says so too.
    let (code, out) = work.dr(&["status"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("WAL archive:") && out.contains(&missing),
        "{out}"
    );
}

#[test]
fn a_drill_recovers_on_a_scratch_server_and_measures_the_rpo_from_the_archive() {
    let work = Work::new("[objectives]\nrto = \"10m\"\nrpo = \"5m\"\n");
    let server = work.archiving_server("[objectives]\nrto = \"10m\"\nrpo = \"5m\"\n");
    let port = server.port();
    psql(
        port,
        "CREATE TABLE t AS SELECT i FROM generate_series(1, 1000) i",
    );
    work.ok(&["backup", "db"]);
    std::thread::sleep(Duration::from_secs(2));
    psql(port, "INSERT INTO t SELECT i FROM generate_series(1, 10) i");
    archive_now(port);
    let drilled: serde_json::Value =
        serde_json::from_str(&work.ok(&["drill", "db", "--json"])).unwrap();
    let record = &drilled["drills"][0];
    assert_eq!(record["ok"], true, "{record}");
    let passed = record["passed"].to_string();
    // dr runs as the postgres user here (Work::dr), so the drill really recovers.
    assert!(passed.contains("promoted a scratch server"), "{passed}");
    // The RPO is checked by a probe row written into the live cluster before the drill.
    assert!(
        passed.contains("RPO probe: the row written at")
            && passed.contains("is in the recovered cluster"),
        "{passed}"
    );
    assert_eq!(
        server.psql("postgres", "SELECT count(*) FROM dr_probe"),
        "1",
        "one probe row per drill"
    );
    // The WAL archive reaches past the base backup: the RPO counts from the newest WAL.
    let listed: serde_json::Value =
        serde_json::from_str(&work.ok(&["list", "--json", "db"])).unwrap();
    let id = listed[0]["id"].as_str().unwrap();
    let shown: serde_json::Value = serde_json::from_str(&work.ok(&["show", "--json", id])).unwrap();
    let finished = chrono_secs(shown["finished_at"].as_str().unwrap());
    let until = chrono_secs(record["recoverable_until"].as_str().unwrap());
    assert!(until > finished + 1.5, "{until} vs {finished}");
    assert!(record["rpo_s"].as_f64().unwrap() < 60.0, "{record}");
    // Nothing is left running or on disk: the scratch server is gone.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("dr-drill-pg-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The limit `dr` advertises for db, from the plan of `--at latest` (or of an earlier time
/// when latest is refused), and checked against `dr list` and `dr status`.
fn advertised_limit(work: &Work, at: &str) -> String {
    let plan: serde_json::Value =
        serde_json::from_str(&work.ok(&["restore", "db", "--at", at, "--dry-run", "--json"]))
            .unwrap();
    let until = plan["restore"]["details"]["plan"]["recoverable_until"]
        .as_str()
        .unwrap()
        .to_owned();
    let exact = chrono_secs(&until);
    let listed = work.ok(&["list"]);
    let shown = listed
        .lines()
        .find(|l| l.starts_with("db: recoverable from"))
        .unwrap_or_else(|| panic!("{listed}"));
    let to = shown
        .split(" to ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert_eq!(chrono_secs(to), exact, "{shown} vs {until}");
    let (_, status) = work.dr(&["status", "--json"]);
    // stdout and stderr together: the JSON array is the lines from `[` to `]`.
    let lines: Vec<&str> = status.lines().collect();
    let start = lines.iter().position(|l| *l == "[").unwrap();
    let end = lines.iter().rposition(|l| *l == "]").unwrap();
    let status: serde_json::Value = serde_json::from_str(&lines[start..=end].join("\n"))
        .unwrap_or_else(|e| panic!("{e}: {status}"));
    let db = status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "db")
        .unwrap();
    assert_eq!(
        chrono_secs(db["recoverable_until"].as_str().unwrap()),
        exact,
        "{db}"
    );
    until
}

/// The server's clock after a commit's statement (the commit itself is a moment later).
fn server_now(port: u16) -> f64 {
    psql(port, "SELECT extract(epoch FROM clock_timestamp())")
        .parse()
        .unwrap()
}

#[test]
fn the_advertised_limit_is_reached_with_and_without_a_gap() {
    let work = Work::new("");
    let server = work.archiving_server("");
    let port = server.port();
    psql(port, "CREATE TABLE t (note text PRIMARY KEY)");
    work.ok(&["backup", "db"]);
    psql(port, "INSERT INTO t VALUES ('early')");
    let early_done = note_time(port);
    psql(port, "INSERT INTO t VALUES ('last before the gap')");
    let committed_after = server_now(port);
    archive_now(port);
    let archived_at = server_now(port);

    // The limit is the last commit: after the row's statement, before the segment was archived.
    let limit = advertised_limit(&work, "latest");
    let limit_s = chrono_secs(&limit);
    assert!(
        limit_s >= committed_after - 1.0 && limit_s <= archived_at,
        "{limit} against {committed_after} .. {archived_at}"
    );
    let at_limit = restore(&work, "at-limit", &limit, &[]);
    assert_eq!(at_limit.psql("SELECT count(*) FROM t"), "2");
    drop(at_limit);

    // Two more segments, the middle one lost: the limit stays the last commit before it.
    psql(port, "INSERT INTO t VALUES ('in the lost segment')");
    // The segment that holds it, by the server's own account (not by position in the archive:
    // a checkpoint or archive_timeout can switch segments in between).
    // (the insert position: with asynchronous commit the write position may still sit on the
    // boundary of the previous segment, which pg_walfile_name names as the previous file).
    let missing = psql(port, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())");
    archive_now(port);
    psql(port, "INSERT INTO t VALUES ('after the gap')");
    archive_now(port);
    let all = archived_segments(&work);
    assert!(all.contains(&missing), "{missing} not in {all:?}");
    for suffix in ["json", "zst.age"] {
        std::fs::remove_file(
            work.path(&format!("repo/wal/db/{}/{missing}.{suffix}", &missing[..8])),
        )
        .unwrap();
    }
    let gap_limit = advertised_limit(&work, &early_done);
    assert_eq!(chrono_secs(&gap_limit), limit_s, "{gap_limit} vs {limit}");

    // --at latest is refused, naming the command that recovers as far as the archive goes ...
    let (code, out) = work.dr(&["restore", "db", "--at", "latest", "--to", "/nonexistent"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("gap") && out.contains(&missing), "{out}");
    let named = out
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in {out}"));
    let words: Vec<&str> = named.split(' ').collect();
    assert_eq!(words[..4], ["dr", "restore", "db", "--at"], "{named}");
    assert_eq!(words[5..], ["--to", "NEW_DATA_DIR"], "{named}");
    assert_eq!(chrono_secs(words[4]), limit_s, "{named}");
    // ... and that command works: everything up to the gap, nothing after it.
    let named_run = restore(&work, "named", words[4], &[]);
    assert_eq!(
        named_run.psql("SELECT string_agg(note, ',' ORDER BY note) FROM t"),
        "early,last before the gap"
    );
    drop(named_run);

    // An earlier time still works, and stops where it should.
    let early = restore(&work, "early", &early_done, &[]);
    assert_eq!(early.psql("SELECT string_agg(note, ',') FROM t"), "early");
    drop(early);
    // A moment past the limit is refused before anything is written.
    let past =
        chrono::DateTime::parse_from_rfc3339(&limit).unwrap() + chrono::TimeDelta::seconds(1);
    let target = work.path("past");
    let (code, out) = work.dr(&[
        "restore",
        "db",
        "--at",
        &past.to_rfc3339(),
        "--to",
        target.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&missing) && !target.exists(), "{out}");
}

fn chrono_secs(rfc3339: &str) -> f64 {
    let out = Command::new("date")
        .args(["-d", rfc3339, "+%s.%N"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn archived_segments(work: &Work) -> Vec<String> {
    let dir = work.path("repo/wal/db/00000001");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .filter(|n| n.len() == 24)
        .collect();
    names.sort();
    names
}

fn second_base_start(work: &Work) -> String {
    let listed: serde_json::Value =
        serde_json::from_str(&work.ok(&["list", "--json", "db"])).unwrap();
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let shown: serde_json::Value =
        serde_json::from_str(&work.ok(&["show", "--json", &id])).unwrap();
    shown["source_info"]["start_wal_file"]
        .as_str()
        .unwrap()
        .to_owned()
}
