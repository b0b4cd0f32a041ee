//! Restore throughput against a store far away: the same backup read through
//! `dr_testing::LatencyStore` at 0, 20 and 50 ms a request (and optionally a per-request
//! bandwidth cap, as one S3 connection has), with the adaptive read-ahead and without it
//! (`read_ahead_bytes = 0`: as many parts in flight as decoders, the behaviour before).
//!
//! `cargo bench --bench latency -- [--size-mib 512] [--latency-ms 0,20,50]
//! [--bandwidth-mbps 0] [--threads 2]`. Each restore runs in its own process
//! (`DR_BENCH_RUNS` times, 3 by default: median time, largest peak RSS). Goal (issue 18): at
//! 50 ms a restore keeps at least 80 % of its 0 ms throughput, memory bounded by the
//! read-ahead budget.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench binary: failing loudly is right

use std::path::PathBuf;
use std::sync::Arc;

use dr::{BackupOptions, BackupSelector, BackupWriter, Identities, PipelineOptions, Repository};
use dr::{Result, SourceInfo};
use dr_testing::{Latency, LatencyStore};

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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        common::child(&args[1..], |_| {}, restore);
        return;
    }
    let size_mib: u64 = arg(&args, "--size-mib").map_or(512, |v| v.parse().expect("--size-mib"));
    let latencies: Vec<u64> = list(&args, "--latency-ms", "0,20,50");
    let bandwidth: u64 = arg(&args, "--bandwidth-mbps").map_or(0, |v| v.parse().expect("MB/s"));
    let threads = arg(&args, "--threads").unwrap_or("2").to_owned();
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-latency");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("create target/bench-latency");
    let (repo, key) = (work.join("repo"), work.join("key.txt"));
    backup(&repo, &key, size_mib * MIB);
    let bytes = size_mib * MIB;
    let cap = if bandwidth == 0 {
        "unlimited".to_owned()
    } else {
        format!("{bandwidth} MB/s")
    };
    println!(
        "restore of {size_mib} MiB mixed data (16 MiB parts, {threads} decoders) to a null sink; per-request bandwidth {cap}"
    );
    println!("| latency | read-ahead | MB/s | of 0 ms | seconds | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    for read_ahead in ["128", "0"] {
        let mut at_zero = None;
        for &ms in &latencies {
            let settings = [
                repo.display().to_string(),
                key.display().to_string(),
                ms.to_string(),
                bandwidth.to_string(),
                read_ahead.to_owned(),
                threads.clone(),
            ];
            let argv: Vec<&str> = settings.iter().map(String::as_str).collect();
            let (secs, rss) = measure(&argv);
            let mbps = bytes as f64 / secs / 1e6;
            let base = *at_zero.get_or_insert(mbps);
            let label = if read_ahead == "0" {
                "off (decoders only)".to_owned()
            } else {
                format!("adaptive, {read_ahead} MiB budget")
            };
            println!(
                "| {ms} ms | {label} | {mbps:.0} | {:.0} % | {secs:.2} | {:.0} |",
                mbps / base * 100.0,
                rss as f64 / 1024.0
            );
        }
    }
    if !args.iter().any(|a| a == "--keep") {
        let _ = std::fs::remove_dir_all(&work);
    }
}

fn backup(repo: &std::path::Path, key: &std::path::Path, size: u64) {
    common::runtime(2).block_on(async {
        let public = dr::generate_identity_file(key, None).expect("keygen");
        let recipients = dr::Recipients::parse(&public, "bench").expect("recipient");
        let repo = dr::storage::init_repository(&repo.display().to_string(), &[], &recipients)
            .await
            .expect("init");
        repo.backup("bench", &Generated(size), &BackupOptions::default())
            .await
            .expect("backup");
    });
}

/// In the child: `REPO KEY LATENCY_MS BANDWIDTH_MBPS READ_AHEAD_MIB THREADS`.
fn restore(args: &[String]) {
    let ms: u64 = args[2].parse().expect("latency");
    let mbps: u64 = args[3].parse().expect("bandwidth");
    let read_ahead: u64 = args[4].parse().expect("read-ahead");
    let threads: usize = args[5].parse().expect("threads");
    common::runtime(threads).block_on(async {
        let local = dr::object_store::local::LocalFileSystem::new_with_prefix(&args[0])
            .expect("local store");
        let mut latency = Latency::ms(ms);
        if mbps > 0 {
            latency = latency.with_bandwidth(mbps * 1_000_000);
        }
        let far = Arc::new(LatencyStore::new(Arc::new(local), latency));
        let options = PipelineOptions::default()
            .with_threads(threads)
            .with_read_ahead_bytes(read_ahead * MIB);
        let repo = Repository::open(far, &args[0])
            .await
            .expect("open")
            .with_cache_dir(None)
            .with_identities(Identities::from_file(std::path::Path::new(&args[1])).expect("key"))
            .with_pipeline(options);
        let reader = repo
            .open_backup("bench", &BackupSelector::Latest)
            .await
            .expect("latest");
        reader
            .copy_artifact("data", &mut tokio::io::sink())
            .await
            .expect("restore");
    });
}
