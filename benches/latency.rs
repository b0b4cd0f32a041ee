//! dr against a store far away: the same operations through `dr::latency::LatencyStore` at
//! 0, 20 and 50 ms a request (and optionally a per-request bandwidth cap, as one S3
//! connection has):
//!
//! - **restore**: a backup read to a null sink (every part decrypted, decompressed, checked),
//!   with the adaptive read-ahead and without it (`read_ahead_bytes = 0`: as many parts in
//!   flight as decoders, the behaviour before);
//! - **verify**: every part's stored and plain SHA-256 (`verify_objects`);
//! - **copy**: the backup copied from a local repository to a far one;
//! - **bucket backup**: a bucket of small objects (64 KiB) backed up from a far store.
//!
//! `cargo bench --bench latency -- [--size-mib 512] [--latency-ms 0,20,50]
//! [--bandwidth-mbps 0] [--threads 2] [--objects 2000] [--object-kib 64]
//! [--only restore,verify,copy,bucket]`. At scale (issue 18): `--only bucket --objects
//! 1000000 --object-kib 1 --latency-ms 0` (a bucket of a million small objects).
//! Each run is its own process (`DR_BENCH_RUNS` times, 3 by default: median time, largest
//! peak RSS). Goal (issue 18): at 50 ms a restore keeps at least 80 % of its 0 ms
//! throughput, memory bounded by the read-ahead budget.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench binary: failing loudly is right

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr::latency::{Latency, LatencyStore};
use dr::object_store::ObjectStore;
use dr::object_store::local::LocalFileSystem;
use dr::{BackupOptions, BackupSelector, BackupWriter, Identities, PipelineOptions, Repository};
use dr::{Result, SourceInfo, VerifyLevel};

mod common;

use common::{MIB, arg, list, measure};

struct Generated(u64);

#[dr::async_trait]
impl dr::Backup for Generated {
    fn kind(&self) -> &'static str {
        "bench.generated"
    }
    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let mut data = dr_testing::MixedData::new(7, self.0);
        out.put_artifact("data", &mut data).await?;
        Ok(SourceInfo::new())
    }
}

/// What one child run does, and its settings as command-line words.
struct Run<'a> {
    operation: &'a str,
    work: &'a Path,
    ms: u64,
    bandwidth_mbps: u64,
    read_ahead_mib: u64,
    threads: usize,
}

impl Run<'_> {
    fn argv(&self) -> Vec<String> {
        vec![
            self.operation.to_owned(),
            self.work.display().to_string(),
            self.ms.to_string(),
            self.bandwidth_mbps.to_string(),
            self.read_ahead_mib.to_string(),
            self.threads.to_string(),
        ]
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        common::child(&args[1..], prepare, child);
        return;
    }
    let size_mib: u64 = arg(&args, "--size-mib").map_or(512, |v| v.parse().expect("--size-mib"));
    let objects: u64 = arg(&args, "--objects").map_or(2000, |v| v.parse().expect("--objects"));
    let object_bytes: u64 =
        arg(&args, "--object-kib").map_or(64, |v| v.parse::<u64>().expect("--object-kib")) * 1024;
    let latencies: Vec<u64> = list(&args, "--latency-ms", "0,20,50");
    let bandwidth: u64 = arg(&args, "--bandwidth-mbps").map_or(0, |v| v.parse().expect("MB/s"));
    let threads: usize = arg(&args, "--threads").map_or(2, |v| v.parse().expect("--threads"));
    let only: Vec<String> = list(&args, "--only", "restore,verify,copy,bucket");
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-latency");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("create target/bench-latency");
    backup(&work, size_mib * MIB);
    let cap = if bandwidth == 0 {
        "unlimited".to_owned()
    } else {
        format!("{bandwidth} MB/s")
    };
    println!(
        "{size_mib} MiB of mixed data (16 MiB parts, {threads} decoders); per-request bandwidth {cap}"
    );
    println!("| operation | latency | read-ahead | MB/s | of 0 ms | seconds | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|");
    let table = |operation: &str, read_ahead_mib: u64, bytes: u64, label: &str| {
        let mut at_zero = None;
        for &ms in &latencies {
            let run = Run {
                operation,
                work: &work,
                ms,
                bandwidth_mbps: bandwidth,
                read_ahead_mib,
                threads,
            };
            let argv = run.argv();
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let (secs, rss) = measure(&argv);
            let mbps = bytes as f64 / secs / 1e6;
            let base = *at_zero.get_or_insert(mbps);
            println!(
                "| {operation} | {ms} ms | {label} | {mbps:.0} | {:.0} % | {secs:.2} | {:.0} |",
                mbps / base * 100.0,
                rss as f64 / 1024.0
            );
        }
    };
    let bytes = size_mib * MIB;
    if only.iter().any(|o| o == "restore") {
        table("restore", 128, bytes, "adaptive, 128 MiB budget");
        table("restore", 0, bytes, "off (decoders only)");
    }
    if only.iter().any(|o| o == "verify") {
        table("verify", 128, bytes, "adaptive, 128 MiB budget");
    }
    if only.iter().any(|o| o == "copy") {
        table("copy", 128, bytes, "8 objects at once");
    }
    if only.iter().any(|o| o == "bucket") {
        make_bucket(&work.join("bucket"), objects, object_bytes);
        let label = format!("{objects} objects of {} KiB", object_bytes / 1024);
        table("bucket", 128, objects * object_bytes, &label);
    }
    if !args.iter().any(|a| a == "--keep") {
        let _ = std::fs::remove_dir_all(&work);
    }
}

fn backup(work: &Path, size: u64) {
    common::runtime(2).block_on(async {
        let public = dr::generate_identity_file(&work.join("key.txt"), None).expect("keygen");
        let recipients = dr::Recipients::parse(&public, "bench").expect("recipient");
        let url = work.join("repo").display().to_string();
        let repo = dr::storage::init_repository(&url, &[], &recipients)
            .await
            .expect("init");
        repo.backup("bench", &Generated(size), &BackupOptions::default())
            .await
            .expect("backup");
    });
}

fn make_bucket(dir: &Path, objects: u64, bytes_each: u64) {
    for i in 0..objects {
        let sub = dir.join(format!("d{:03}", i % 1000));
        std::fs::create_dir_all(&sub).expect("bucket dir");
        let bytes = dr_testing::MixedData::bytes(i, bytes_each);
        std::fs::write(sub.join(format!("object-{i:07}.bin")), bytes).expect("object");
    }
}

/// Before the clock: a copy starts from an empty destination, a bucket backup from an empty
/// repository.
fn prepare(args: &[String]) {
    let work = Path::new(&args[1]);
    match args[0].as_str() {
        "copy" => {
            let _ = std::fs::remove_dir_all(work.join("copy"));
            std::fs::create_dir_all(work.join("copy")).expect("copy dir");
        }
        "bucket" => {
            let _ = std::fs::remove_dir_all(work.join("bucket-repo"));
            std::fs::create_dir_all(work.join("bucket-repo")).expect("repo dir");
        }
        _ => {}
    }
}

/// In the child: `OPERATION WORK LATENCY_MS BANDWIDTH_MBPS READ_AHEAD_MIB THREADS`.
fn child(args: &[String]) {
    let work = PathBuf::from(&args[1]);
    let mut latency = Latency::ms(args[2].parse().expect("latency"));
    let mbps: u64 = args[3].parse().expect("bandwidth");
    if mbps > 0 {
        latency = latency.with_bandwidth(mbps * 1_000_000);
    }
    let read_ahead: u64 = args[4].parse().expect("read-ahead");
    let threads: usize = args[5].parse().expect("threads");
    let options = PipelineOptions::default()
        .with_threads(threads)
        .with_read_ahead_bytes(read_ahead * MIB);
    common::runtime(threads).block_on(async {
        let identities = Identities::from_file(&work.join("key.txt")).expect("key");
        match args[0].as_str() {
            "restore" | "verify" => {
                let repo = open(&work.join("repo"), latency).await;
                let repo = repo.with_identities(identities).with_pipeline(options);
                let reader = repo
                    .open_backup("bench", &BackupSelector::Latest)
                    .await
                    .expect("latest");
                if args[0] == "restore" {
                    reader
                        .copy_artifact("data", &mut tokio::io::sink())
                        .await
                        .expect("restore");
                } else {
                    let report = reader
                        .verify_objects(VerifyLevel::Checksums)
                        .await
                        .expect("verify");
                    assert!(report.is_ok(), "{}", report.problems_text());
                }
            }
            "copy" => {
                let from = open(&work.join("repo"), Latency::ms(0)).await;
                let manifest = from.list(None).await.expect("list").backups.remove(0);
                let to = dr::copy::open_or_init_like(
                    &from,
                    far_store(&work.join("copy"), latency),
                    "copy",
                )
                .await
                .expect("destination");
                dr::copy::copy_backup(&from, &to, &manifest)
                    .await
                    .expect("copy");
            }
            "bucket" => {
                let repo = Repository::init(
                    Arc::new(
                        LocalFileSystem::new_with_prefix(work.join("bucket-repo")).expect("repo"),
                    ),
                    "bucket-repo",
                    &identities.to_recipients(),
                )
                .await
                .expect("init");
                let bucket = dr::storage::files::BucketSource::new(
                    far_store(&work.join("bucket"), latency),
                    None,
                );
                repo.backup("bucket", &bucket, &BackupOptions::default())
                    .await
                    .expect("bucket backup");
            }
            other => panic!("unknown operation {other}"),
        }
    });
}

fn far_store(dir: &Path, latency: Latency) -> Arc<dyn ObjectStore> {
    let local = LocalFileSystem::new_with_prefix(dir).expect("local store");
    Arc::new(LatencyStore::new(Arc::new(local), latency))
}

async fn open(dir: &Path, latency: Latency) -> Repository {
    Repository::open(far_store(dir, latency), &dir.display().to_string())
        .await
        .expect("open")
        .with_cache_dir(None)
}
