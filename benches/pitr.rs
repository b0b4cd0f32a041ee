//! PostgreSQL physical backups, side by side in one run: base backup and restore with dr,
//! pgBackRest (full, zstd, process-max 2) and pg_basebackup (client-side zstd); the raw speed
//! of the two ways to read a cluster (the replication protocol and the files themselves);
//! WAL archiving per 16 MiB segment (`dr wal-push` vs `pgbackrest archive-push`, one process
//! per segment as archive_command runs them); and, with `--rpo SECONDS`, the measured RPO
//! with `archive_timeout = 60` under a pgbench load and under a trickle.
//!
//! `cargo build --release -p dr-cli && cargo bench --bench pitr -- [--scale 50] [--segments 20] [--rpo 150] [--only rpo]`
//!
//! Starts its own PostgreSQL 15 on 127.0.0.1. Needs the Debian packages `postgresql`, `zstd`,
//! `age` and `pgbackrest`; run as root (pgBackRest is run as the postgres user).
#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench binary: failing loudly is right

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{arg, dir_size, measure, path, pgbench, row};
use dr::postgres::{PgConnection, PitrOptions, PostgresBaseSource, RecoveryTarget, pitr};
use dr::{BackupOptions, Identities};
use dr_testing::PgServer;
use dr_testing::postgres::{PASSWORD, bin_dir, give_to_postgres};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        common::child(&args[1..], prepare, work);
        return;
    }
    let scale = arg(&args, "--scale").unwrap_or("50").to_owned();
    let segments: usize = arg(&args, "--segments").map_or(20, |v| v.parse().expect("--segments"));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-pitr");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let key = dir.join("key.txt");
    let recipient = dr::generate_identity_file(&key, None).expect("keygen");
    give_to_postgres(&dir);
    let server = PgServer::start_with(&[
        ("archive_mode", "on"),
        ("archive_command", "/bin/true"),
        ("wal_level", "replica"),
        ("max_wal_size", "4GB"),
    ]);
    pgbench(&server, &["-i", "-q", "-s", &scale]);
    server.psql("postgres", "CHECKPOINT");
    let bench = Bench {
        server: &server,
        dir: dir.clone(),
        key: key.clone(),
        recipient,
        // What a base backup copies: the data directory without the recycled WAL segments.
        size: dir_size(&server.data_dir()) - dir_size(&server.data_dir().join("pg_wal")),
    };
    if arg(&args, "--only") != Some("rpo") {
        bench.base_backups();
        bench.restores();
        bench.wal_push(segments);
    }
    drop(server);
    if let Some(seconds) = arg(&args, "--rpo") {
        rpo(&dir, seconds.parse().expect("--rpo"), &key);
    }
}

struct Bench<'a> {
    server: &'a PgServer,
    dir: PathBuf,
    key: PathBuf,
    recipient: String,
    size: u64,
}

impl Bench<'_> {
    fn env(&self) -> String {
        format!(
            "PGPASSWORD={PASSWORD} PGHOST=127.0.0.1 PGPORT={} PGUSER=postgres",
            self.server.port()
        )
    }

    fn pgbackrest(&self, command: &str) -> String {
        let conf = self.dir.join("pgbackrest.conf");
        if !conf.exists() {
            std::fs::write(
                &conf,
                format!(
                    "[global]\nrepo1-path={}\ncompress-type=zst\nprocess-max=2\nstart-fast=y\narchive-check=n\nlog-level-console=warn\nlog-path={0}/log\nlock-path={0}/lock\n\n[bench]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
                    path(&self.dir.join("pgbackrest")),
                    path(&self.server.data_dir()),
                    self.server.port(),
                    path(self.server.data_dir().parent().unwrap()),
                ),
            )
            .unwrap();
            give_to_postgres(&conf);
        }
        format!(
            "runuser -u postgres -- pgbackrest --config={} --stanza=bench {command}",
            path(&conf)
        )
    }

    fn base_backups(&self) {
        println!(
            "\nbase backup of a `pgbench -i -s` cluster, {:.0} MB on disk",
            self.size as f64 / 1e6
        );
        header();
        let env = self.env();
        let m = measure(&[
            "shell",
            &format!("{env} pg_basebackup -Ft -D - -X fetch -c fast > /dev/null"),
        ]);
        row(
            "read: `pg_basebackup -Ft -D -` to /dev/null",
            "replication protocol",
            self.size,
            m,
            "-",
        );
        let m = measure(&[
            "shell",
            &format!(
                "tar -cf - --exclude=./pg_wal -C {} . | cat > /dev/null",
                path(&self.server.data_dir())
            ),
        ]);
        row(
            "read: `tar -c` of the data directory (no pg_wal)",
            "files",
            self.size,
            m,
            "-",
        );
        let out = self.dir.join("basebackup");
        let m = measure(&[
            "shell",
            &format!(
                "{env} pg_basebackup -Ft -D {0} -X fetch -c fast --compress=client-zstd",
                path(&out)
            ),
            &format!("rm -rf {}", path(&out)),
        ]);
        row(
            "`pg_basebackup -Ft --compress=client-zstd`",
            "level 3, no encryption",
            self.size,
            m,
            &mb(dir_size(&out)),
        );
        let piped = self.dir.join("base.tar.zst.age");
        let m = measure(&[
            "shell",
            &format!(
                "{env} pg_basebackup -Ft -D - -X fetch -c fast | zstd -3 -T2 -q | age -r {} > {}",
                self.recipient,
                path(&piped)
            ),
        ]);
        row(
            "`pg_basebackup -D - \\| zstd -3 -T2 \\| age`",
            "level 3, encrypted",
            self.size,
            m,
            &mb(file_size(&piped)),
        );
        let repo = self.dir.join("pgbackrest");
        let m = measure(&[
            "shell",
            &self.pgbackrest("--type=full backup"),
            &format!(
                "rm -rf {0} && mkdir -p {0} && chown postgres: {0} && {1}",
                path(&repo),
                self.pgbackrest("stanza-create")
            ),
        ]);
        row(
            "pgBackRest full backup",
            "zst, process-max 2, no encryption",
            self.size,
            m,
            &mb(dir_size(&repo)),
        );
        let dr_repo = self.dir.join("repo");
        let url = self.server.url("postgres");
        // Level 3 last: the restores below read this repository.
        for level in ["1", "3"] {
            let m = measure(&["backup", &url, path(&dr_repo), path(&self.key), level]);
            row(
                "dr base backup (pg_basebackup stream, zstd, age, SHA-256)",
                &format!("level {level}, encrypted"),
                self.size,
                m,
                &mb(dir_size(&dr_repo)),
            );
        }
    }

    fn restores(&self) {
        println!(
            "\nrestore of that base backup into a new data directory (files only, no WAL replay)"
        );
        header();
        let target = self.dir.join("restored");
        let clean = format!(
            "rm -rf {0} && mkdir -p {0} && chown postgres: {0} && chmod 700 {0}",
            path(&target)
        );
        let m = measure(&[
            "shell",
            &format!(
                "zstd -d -q < {}/base.tar.zst | tar -x -C {}",
                path(&self.dir.join("basebackup")),
                path(&target)
            ),
            &clean,
        ]);
        row(
            "`zstd -d \\| tar -x` of pg_basebackup's output",
            "-",
            self.size,
            m,
            "-",
        );
        let m = measure(&[
            "shell",
            &format!(
                "age -d -i {} {} | zstd -d -q | tar -x -C {}",
                path(&self.key),
                path(&self.dir.join("base.tar.zst.age")),
                path(&target)
            ),
            &clean,
        ]);
        row("`age -d \\| zstd -d \\| tar -x`", "-", self.size, m, "-");
        let m = measure(&[
            "shell",
            &self.pgbackrest(&format!("--pg1-path={} restore", path(&target))),
            &clean,
        ]);
        row("pgBackRest restore", "process-max 2", self.size, m, "-");
        let m = measure(&[
            "restore",
            path(&self.dir.join("repo")),
            path(&self.key),
            path(&target),
        ]);
        row(
            "dr restore (plan, checked parts, unpack, recovery config)",
            "-",
            self.size,
            m,
            "-",
        );
    }

    /// `segments` real WAL segments pushed one process each, as archive_command does.
    fn wal_push(&self, segments: usize) {
        let dr_bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/dr");
        assert!(
            dr_bin.is_file(),
            "build the CLI first: cargo build --release -p dr-cli"
        );
        let wal = self.dir.join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        pgbench(self.server, &["-T", "20", "-c", "2"]);
        let pg_wal = self.server.data_dir().join("pg_wal");
        let mut names: Vec<String> = std::fs::read_dir(&pg_wal)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.len() == 24)
            .collect();
        names.sort();
        names.truncate(segments);
        for name in &names {
            std::fs::copy(pg_wal.join(name), wal.join(name)).unwrap();
        }
        give_to_postgres(&wal);
        let bytes = (names.len() as u64) * 16 * common::MIB;
        let list = names
            .iter()
            .map(|n| path(&wal.join(n)).to_owned())
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "\nWAL archiving: {} segments of 16 MiB, one process per segment",
            names.len()
        );
        println!("| archive_command | MB/s | seconds | segments/s | peak RSS MiB |");
        println!("|---|---|---|---|---|");
        let config = self.dir.join("dr.toml");
        std::fs::write(
            &config,
            format!(
                "repository = \"{}\"\nidentity = \"{}\"\n[sources.db]\nkind = \"postgres\"\nmethod = \"physical\"\nurl = \"postgres://postgres@127.0.0.1/postgres\"\n",
                path(&self.dir.join("wal-repo")),
                path(&self.key)
            ),
        )
        .unwrap();
        let dr_push = format!(
            "for f in {list}; do {} --config {} wal-push --pgdata {} $f; done",
            path(&dr_bin),
            path(&config),
            path(&self.server.data_dir())
        );
        let init = format!(
            "rm -rf {0} && {1} --config {2} init",
            path(&self.dir.join("wal-repo")),
            path(&dr_bin),
            path(&config)
        );
        let m = measure(&["shell", &dr_push, &init]);
        push_row(
            "`dr wal-push` (zstd, age, SHA-256, local repository)",
            names.len(),
            bytes,
            m,
        );
        let repo = self.dir.join("pgbackrest");
        let push = format!(
            "for f in {list}; do {}; done",
            self.pgbackrest("archive-push $f")
        );
        let m = measure(&[
            "shell",
            &push,
            &format!(
                "rm -rf {0} && mkdir -p {0} && chown postgres: {0} && {1}",
                path(&repo),
                self.pgbackrest("stanza-create")
            ),
        ]);
        push_row(
            "`pgbackrest archive-push` (zst, no encryption)",
            names.len(),
            bytes,
            m,
        );
    }
}

fn header() {
    println!("| operation | settings | MB/s (cluster size) | seconds | peak RSS MiB | stored MB |");
    println!("|---|---|---|---|---|---|");
}

fn push_row(name: &str, segments: usize, bytes: u64, (secs, rss): (f64, u64)) {
    println!(
        "| {name} | {:.0} | {secs:.2} | {:.1} | {:.0} |",
        bytes as f64 / secs / 1e6,
        segments as f64 / secs,
        rss as f64 / 1024.0
    );
}

/// Before the clock: `shell CMD PREP` runs PREP; dr's runs start from a clean target.
fn prepare(args: &[String]) {
    match args[0].as_str() {
        "shell" if args.len() > 2 => {
            let status = Command::new("bash")
                .args(["-c", &args[2]])
                .status()
                .unwrap();
            assert!(status.success(), "preparation failed: {}", args[2]);
        }
        "backup" => {
            let _ = std::fs::remove_dir_all(&args[2]);
        }
        "restore" => {
            let _ = std::fs::remove_dir_all(&args[3]);
        }
        _ => {}
    }
}

fn work(args: &[String]) {
    common::runtime(2).block_on(async {
        if args[0] == "backup" {
            let conn = PgConnection::from_url(&args[1]).unwrap();
            let ids = Identities::from_file(Path::new(&args[3])).unwrap();
            let level: i32 = args[4].parse().unwrap();
            let repo = dr::storage::init_repository(&args[2], &[], &ids.to_recipients())
                .await
                .unwrap()
                .with_pipeline(dr::PipelineOptions::default().with_zstd_level(level));
            repo.backup(
                "db",
                &PostgresBaseSource::new(conn),
                &BackupOptions::default(),
            )
            .await
            .unwrap();
        } else {
            let ids = Identities::from_file(Path::new(&args[2])).unwrap();
            let repo = dr::storage::open_repository(&args[1], &[])
                .await
                .unwrap()
                .with_identities(ids);
            let plan = pitr::plan(&repo, "db", RecoveryTarget::Latest)
                .await
                .unwrap();
            let options = PitrOptions {
                data_dir: PathBuf::from(&args[3]),
                restore_command: "dr wal-fetch %f %p".into(),
                keep_archiving: false,
                start_on_port: None,
            };
            dr::postgres::restore_pitr(&repo, plan, &options)
                .await
                .unwrap();
        }
    });
}

/// RPO with `archive_timeout = 60`: how old the newest archived WAL gets, sampled twice a
/// second, under a pgbench load and under a trickle of 1 transaction per second.
fn rpo(dir: &Path, seconds: u64, key: &Path) {
    let dr_bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/dr");
    println!("\nRPO with archive_timeout = 60 s and `dr wal-push` ({seconds} s per load)");
    println!("| load | segments archived | worst RPO s | mean RPO s |");
    println!("|---|---|---|---|");
    for (i, (name, load)) in [
        ("pgbench -c 2 (full speed)", vec!["-c", "2"]),
        ("pgbench -R 1 (a trickle)", vec!["-c", "1", "-R", "1"]),
    ]
    .into_iter()
    .enumerate()
    {
        // Each cluster its own archive: dr refuses two clusters in one.
        let config = dir.join(format!("rpo-{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "repository = \"{}\"\nidentity = \"{}\"\n[sources.db]\nkind = \"postgres\"\nmethod = \"physical\"\nurl = \"postgres://postgres@127.0.0.1/postgres\"\n",
                path(&dir.join(format!("rpo-repo-{i}"))),
                path(key)
            ),
        )
        .unwrap();
        let init = Command::new(&dr_bin)
            .args(["--config", path(&config), "init"])
            .status()
            .unwrap();
        assert!(init.success());
        give_to_postgres(dir);
        let command = format!("{} --config {} wal-push %p", path(&dr_bin), path(&config));
        let server = PgServer::start_with(&[
            ("archive_mode", "on"),
            ("archive_command", &command),
            ("archive_timeout", "60"),
            ("wal_level", "replica"),
        ]);
        pgbench(&server, &["-i", "-q", "-s", "5"]);
        server.psql("postgres", "SELECT pg_switch_wal()");
        std::thread::sleep(Duration::from_secs(2));
        let duration = seconds.to_string();
        let mut args: Vec<&str> = vec!["-T", &duration];
        args.extend(&load);
        let port = server.port();
        let runner = std::thread::spawn({
            let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
            move || {
                let status = Command::new(bin_dir().join("pgbench"))
                    .args(&args)
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                        "-U",
                        "postgres",
                        "postgres",
                    ])
                    .env("PGPASSWORD", PASSWORD)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success());
            }
        });
        let started = Instant::now();
        let first = archived_count(&server);
        let mut samples = Vec::new();
        while started.elapsed() < Duration::from_secs(seconds) {
            std::thread::sleep(Duration::from_millis(500));
            let age: f64 = server
                .psql(
                    "postgres",
                    "SELECT extract(epoch FROM now() - last_archived_time) FROM pg_stat_archiver",
                )
                .parse()
                .expect("nothing archived yet: see the server log");
            samples.push(age);
        }
        runner.join().unwrap();
        let worst = samples.iter().copied().fold(0.0, f64::max);
        let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
        println!(
            "| {name} | {} | {worst:.1} | {mean:.1} |",
            archived_count(&server) - first
        );
    }
}

fn archived_count(server: &PgServer) -> i64 {
    server
        .psql("postgres", "SELECT archived_count FROM pg_stat_archiver")
        .parse()
        .unwrap()
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn mb(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / 1e6)
}
