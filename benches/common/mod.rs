//! Shared by the bench binaries: each measurement runs in a fresh child process (so its peak
//! RSS is its own), `DR_BENCH_RUNS` times (3 by default); the median time is reported.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)] // bench helpers: failing loudly is right

use std::path::Path;
use std::process::Command;
use std::time::Instant;

pub const MIB: u64 = 1024 * 1024;

/// Runs `--child ARGS...` of the current bench binary; returns (median seconds, max peak RSS KiB).
pub fn measure(args: &[&str]) -> (f64, u64) {
    let runs: Vec<(f64, u64)> = (0..runs()).map(|_| measure_once(args)).collect();
    let mut secs: Vec<f64> = runs.iter().map(|r| r.0).collect();
    secs.sort_by(f64::total_cmp);
    (
        secs[secs.len() / 2],
        runs.iter().map(|r| r.1).max().unwrap_or(0),
    )
}

fn runs() -> usize {
    std::env::var("DR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn measure_once(args: &[&str]) -> (f64, u64) {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .arg("--child")
        .args(args)
        .output()
        .expect("spawn child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let (secs, rss) = line.split_once(' ').expect("child output");
    (secs.parse().expect("secs"), rss.parse().expect("rss"))
}

/// In the child: runs `work` (or, for `shell CMD`, the shell pipeline), then prints the
/// seconds and peak RSS for the parent. `prepare` runs before the clock starts.
pub fn child(args: &[String], prepare: impl FnOnce(&[String]), work: impl FnOnce(&[String])) {
    prepare(args);
    let started = Instant::now();
    if args[0] == "shell" {
        let status = Command::new("bash")
            .args(["-o", "pipefail", "-c", &args[1]])
            .status()
            .expect("bash");
        assert!(status.success(), "stock command failed: {}", args[1]);
    } else {
        work(args);
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{secs} {}", peak_rss_kib().max(children_peak_rss_kib()));
}

/// A markdown table row: name, settings, MB/s over `bytes`, seconds, peak RSS, extra column.
pub fn row(name: &str, settings: &str, bytes: u64, (secs, rss): (f64, u64), extra: &str) {
    let mbps = bytes as f64 / secs / 1e6;
    println!(
        "| {name} | {settings} | {mbps:.0} | {secs:.2} | {:.0} | {extra} |",
        rss as f64 / 1024.0
    );
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Peak RSS of the largest waited-for descendant (for stock pipelines: the largest stage).
#[allow(unsafe_code)]
fn children_peak_rss_kib() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage into the pointer we own; no aliasing.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: rc == 0 means the kernel filled the struct.
    let usage = unsafe { usage.assume_init() };
    u64::try_from(usage.ru_maxrss).unwrap_or(0)
}

/// Total size of the files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// `--name VALUE`.
pub fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// `--name A,B,C` parsed, or `default`.
pub fn list<T: std::str::FromStr>(args: &[String], name: &str, default: &str) -> Vec<T> {
    arg(args, name)
        .unwrap_or(default)
        .split(',')
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("bad value for {name}: {v}"))
        })
        .collect()
}

/// A path as `&str`.
pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A tokio runtime with `threads` workers.
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `pgbench ARGS` against `server`'s `postgres` database.
pub fn pgbench(server: &dr_testing::PgServer, args: &[&str]) {
    let status = Command::new(dr_testing::postgres::bin_dir().join("pgbench"))
        .args(args)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port().to_string(),
            "-U",
            "postgres",
            "postgres",
        ])
        .env("PGPASSWORD", dr_testing::postgres::PASSWORD)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("pgbench");
    assert!(status.success(), "pgbench {args:?} failed");
}
