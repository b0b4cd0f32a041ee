//! WAL replay during point-in-time recovery against a store far away: a real PostgreSQL 15
//! recovers a dr base backup through `restore_command = dr wal-fetch %f %p` (the release CLI,
//! one process per segment as PostgreSQL runs it), with every request of the repository's
//! store delayed (`DR_BENCH_ADDED_LATENCY_MS`, the same `LatencyStore` as benches/latency.rs)
//! and the WAL prefetcher on (`wal_prefetch = 16`) or off (`0`).
//!
//! `cargo build --release -p dr-cli && cargo bench --bench wal_replay -- [--segments 200]
//! [--latency-ms 0,50] [--prefetch 16,0]`
//!
//! Reports PostgreSQL's own redo time (`redo done ... elapsed`) and the whole `dr restore
//! --start` (unpacking, the check of every WAL file before anything is written, replay,
//! promotion). Goal (issue 18): replay of 200 segments at 50 ms within 1.2x of 0 ms.
//! Run as root: PostgreSQL and dr run as the postgres user.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench binary: failing loudly is right

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{arg, list, path, pgbench};
use dr_testing::PgServer;
use dr_testing::postgres::{give_to_postgres, stop_cluster};

const SEGMENT: u64 = 16 * 1024 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let segments: u64 = arg(&args, "--segments").map_or(200, |v| v.parse().expect("--segments"));
    let latencies: Vec<u64> = list(&args, "--latency-ms", "0,50");
    let prefetches: Vec<u64> = list(&args, "--prefetch", "16,0");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dr = root.join("target/release/dr");
    assert!(
        dr.is_file(),
        "build the CLI first: cargo build --release -p dr-cli"
    );
    let dir = root.join("target/bench-wal-replay");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let key = dir.join("key.txt");
    dr::generate_identity_file(&key, None).expect("keygen");
    let archive_config = dir.join("dr-push.toml");
    let push = format!(
        "{} --config {} wal-push --source db %p",
        path(&dr),
        path(&archive_config)
    );
    let server = PgServer::start_with(&[
        ("archive_mode", "on"),
        ("archive_command", push.as_str()),
        ("wal_level", "replica"),
        ("max_wal_size", "4GB"),
    ]);
    let bench = Replay {
        dr,
        dir: dir.clone(),
        key,
        url: server.url("postgres"),
    };
    bench.write_config(&archive_config, 16);
    give_to_postgres(&dir);
    bench.as_postgres(&archive_config, 0, &["init"]);
    pgbench(&server, &["-i", "-q", "-s", "5"]);
    bench.as_postgres(&archive_config, 0, &["backup", "db"]);
    let written = write_wal(&server, segments);
    println!(
        "\nrecovery of a base backup plus {written} WAL segments ({} MB) of pgbench load, restore_command = dr wal-fetch",
        written * SEGMENT / 1_000_000
    );
    println!(
        "| added latency | wal_prefetch | redo s (PostgreSQL) | redo of 0 ms | whole restore s |"
    );
    println!("|---|---|---|---|---|");
    drop(server);
    for &prefetch in &prefetches {
        let config = dir.join(format!("dr-{prefetch}.toml"));
        bench.write_config(&config, prefetch);
        give_to_postgres(&config);
        let mut at_zero = None;
        for &ms in &latencies {
            let (redo, whole) = bench.recover(&config, ms);
            let base = *at_zero.get_or_insert(redo);
            println!(
                "| {ms} ms | {prefetch} | {redo:.2} | {:.2}x | {whole:.2} |",
                redo / base
            );
        }
    }
    if !args.iter().any(|a| a == "--keep") {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

struct Replay {
    dr: PathBuf,
    dir: PathBuf,
    key: PathBuf,
    url: String,
}

impl Replay {
    fn write_config(&self, config: &Path, prefetch: u64) {
        std::fs::write(
            config,
            format!(
                "repository = \"{}\"\nidentity = \"{}\"\n\n[sources.db]\nkind = \"postgres\"\nmethod = \"physical\"\nurl = \"{}\"\nwal_prefetch = {prefetch}\n",
                path(&self.dir.join("repo")),
                path(&self.key),
                self.url
            ),
        )
        .expect("write dr.toml");
    }

    /// Runs `dr --config CONFIG ARGS` as the postgres user with `ms` of added latency.
    fn as_postgres(&self, config: &Path, ms: u64, args: &[&str]) {
        let status = Command::new("runuser")
            .args(["-u", "postgres", "--", "env"])
            .arg(format!("DR_BENCH_ADDED_LATENCY_MS={ms}"))
            .arg(&self.dr)
            .arg("--config")
            .arg(config)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("runuser");
        assert!(status.success(), "dr {args:?} failed");
    }

    /// A whole `dr restore db --at latest --start` at `ms`: (PostgreSQL's redo seconds, the
    /// restore's seconds).
    fn recover(&self, config: &Path, ms: u64) -> (f64, f64) {
        let target = self.dir.join("recovered");
        let _ = std::fs::remove_dir_all(&target);
        let port = dr_testing::s3::free_port().to_string();
        let started = Instant::now();
        self.as_postgres(
            config,
            ms,
            &[
                "restore",
                "db",
                "--at",
                "latest",
                "--to",
                path(&target),
                "--start",
                "--port",
                &port,
            ],
        );
        let whole = started.elapsed().as_secs_f64();
        let log = std::fs::read_to_string(target.join(dr::postgres::LOG_FILE)).expect("log");
        stop_cluster(&target);
        (redo_seconds(&log), whole)
    }
}

/// `redo done at ... elapsed: 12.34 s` of PostgreSQL's log.
fn redo_seconds(log: &str) -> f64 {
    let line = log
        .lines()
        .find(|l| l.contains("redo done at"))
        .unwrap_or_else(|| panic!("no `redo done` in the log:\n{log}"));
    let elapsed = line.rsplit("elapsed: ").next().expect("elapsed");
    elapsed
        .trim_end_matches(" s")
        .trim()
        .parse()
        .expect("seconds")
}

/// Runs pgbench until `segments` segments were written after the base backup, switches to a
/// new segment and waits until the archiver has pushed it; returns the segments written.
fn write_wal(server: &PgServer, segments: u64) -> u64 {
    let lsn = |s: &PgServer| s.psql("postgres", "SELECT pg_current_wal_lsn() - '0/0'");
    let start: u64 = lsn(server).trim().parse().expect("lsn");
    loop {
        pgbench(server, &["-T", "10", "-c", "2", "-N"]);
        let now: u64 = lsn(server).trim().parse().expect("lsn");
        if now - start >= segments * SEGMENT {
            break;
        }
    }
    let last = server.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    let last = last.trim().to_owned();
    let waited = Instant::now();
    loop {
        let archived = server.psql(
            "postgres",
            "SELECT coalesce(last_archived_wal, '') || ' ' || failed_count FROM pg_stat_archiver",
        );
        let (name, failed) = archived.trim().split_once(' ').unwrap_or(("", "0"));
        assert_eq!(failed, "0", "archive_command failed: {}", server.log());
        if name >= last.as_str() {
            break;
        }
        assert!(
            waited.elapsed().as_secs() < 600,
            "archiving did not catch up"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let end: u64 = lsn(server).trim().parse().expect("lsn");
    (end - start).div_ceil(SEGMENT)
}
