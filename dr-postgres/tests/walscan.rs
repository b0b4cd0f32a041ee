//! The WAL segment reader against pg_waldump (the oracle) on segments a real PostgreSQL 15
//! wrote: records across page and segment boundaries, large and small commits, an abort.

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, NaiveDateTime, Utc};
use dr_postgres::Lsn;
use dr_postgres::walscan::summarize;
use dr_testing::PgServer;
use dr_testing::postgres::bin_dir;

/// What pg_waldump shows of one segment read alone: the last transaction record (commit or
/// abort: its position and time), and the last record's position.
fn waldump(segment: &Path) -> (Option<(Lsn, DateTime<Utc>)>, Option<Lsn>) {
    let alone = tempfile::tempdir().unwrap();
    let copy = alone.path().join(segment.file_name().unwrap());
    std::fs::copy(segment, &copy).unwrap();
    let name = copy.file_name().unwrap().to_str().unwrap();
    let out = Command::new(bin_dir().join("pg_waldump"))
        .arg("--path")
        .arg(alone.path())
        .args([name, name])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lsn_of = |line: &str| -> Lsn {
        let rest = line.split("lsn: ").nth(1).unwrap();
        rest.split(',').next().unwrap().trim().parse().unwrap()
    };
    let mut last_xact = None;
    let mut last = None;
    for line in text.lines().filter(|l| l.starts_with("rmgr:")) {
        last = Some(lsn_of(line));
        let Some(desc) = line.split("desc: ").nth(1) else {
            continue;
        };
        let time_text = ["COMMIT ", "ABORT "]
            .iter()
            .find_map(|word| desc.strip_prefix(word));
        if let (true, Some(rest)) = (line.contains("rmgr: Transaction"), time_text) {
            let stamp: String = rest.split(" UTC").next().unwrap().to_owned();
            let time = NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S%.f")
                .unwrap_or_else(|e| panic!("{stamp}: {e}"))
                .and_utc();
            last_xact = Some((lsn_of(line), time));
        }
    }
    (last_xact, last)
}

#[test]
fn segment_summaries_match_pg_waldump() {
    // Segments stay in pg_wal (no checkpoint recycles them before they are read).
    let server = PgServer::start_with(&[("wal_keep_size", "1GB")]);
    let first = server.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
    server.psql(
        "postgres",
        "CREATE TABLE t (id serial, pad text); CREATE TABLE small (v int)",
    );
    // Large commits fill more than two segments, so some start with the tail of a record
    // from the previous one; small commits between them end at awkward offsets.
    for round in 0..36 {
        server.psql(
            "postgres",
            &format!(
                "INSERT INTO t (pad) SELECT repeat(md5(i::text), {}) FROM generate_series(1, 2000) i",
                10 + round % 7
            ),
        );
        server.psql("postgres", &format!("INSERT INTO small VALUES ({round})"));
    }
    server.psql("postgres", "BEGIN; INSERT INTO small VALUES (-1); ROLLBACK");
    let last = server.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
    server.psql("postgres", "SELECT pg_switch_wal()");
    assert!(last[8..] > first[8..], "{first} .. {last}: too little WAL");

    let wal = server.data_dir().join("pg_wal");
    let mut names: Vec<String> = std::fs::read_dir(&wal)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24 && n[8..] >= first[8..] && n[8..] <= last[8..])
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    let mut with_xacts = 0;
    for name in &names {
        let path = wal.join(name);
        let bytes = std::fs::read(&path).unwrap();
        let summary = summarize(&bytes).unwrap_or_else(|| panic!("{name} not understood"));
        let (xact, record) = waldump(&path);
        assert_eq!(
            summary.last_xact.map(|x| (x.lsn, x.time)),
            xact,
            "{name}: last transaction"
        );
        assert_eq!(summary.last_record, record, "{name}: last record");
        if xact.is_some() {
            with_xacts += 1;
            assert!(summary.max_xact_time >= xact.map(|x| x.1), "{name}");
        }
    }
    assert!(with_xacts >= 2, "{with_xacts} of {names:?}");

    // A damaged byte in the middle: the summary stops before it, never claims past it.
    let path = wal.join(&names[1]);
    let mut bytes = std::fs::read(&path).unwrap();
    let whole = summarize(&bytes).unwrap();
    let middle = bytes.len() / 2;
    // Eight bytes: at least one is in a record or a page header, not alignment padding.
    for byte in &mut bytes[middle..middle + 8] {
        *byte ^= 0xff;
    }
    let damaged = summarize(&bytes).unwrap();
    assert!(damaged.last_record <= whole.last_record);
    assert!(
        damaged
            .last_record
            .is_none_or(|l| l.0 % (16 << 20) < middle as u64),
        "{damaged:?}"
    );
}
