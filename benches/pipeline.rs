//! Pipeline throughput and peak memory, side by side with the stock tools, in one run.
//!
//! `cargo bench --bench pipeline -- [--size-mib 1024] [--part-mib 16] [--level 3] [--threads N]`
//! (`--part-mib 8,16,32` and `--level 1,3` sweep). Writes mixed data (about 70 % JSON-like
//! text, 30 % random) to `target/bench/`, then measures, each in its own process:
//! dr backup (file -> local repository), dr restore (repository -> null sink, every part
//! decrypted, decompressed and hashed), `zstd -LEVEL -T2 | age -r R` and
//! `age -d -i K | zstd -d | sha256sum`. Each is run `DR_BENCH_RUNS` times (3 by default):
//! the median time and the largest peak RSS are reported. Needs `age` and `zstd` (Debian
//! packages). Peak RSS of a stock pipeline is that of its largest process.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench binary: failing loudly is right

use std::path::{Path, PathBuf};

use dr::{
    BackupOptions, BackupSelector, BackupWriter, Identities, PipelineOptions, Result, SourceInfo,
};

mod common;

use common::{MIB, arg, dir_size, list, measure, path};

struct FileSource(PathBuf);

#[dr::async_trait]
impl dr::Backup for FileSource {
    fn kind(&self) -> &'static str {
        "bench.file"
    }
    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let mut file = tokio::fs::File::open(&self.0)
            .await
            .map_err(|e| dr::Error::io("open input", e))?;
        out.put_artifact("data", &mut file).await?;
        Ok(SourceInfo::new())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    let size_mib: u64 = arg(&args, "--size-mib").map_or(1024, |v| v.parse().expect("--size-mib"));
    let parts: Vec<u64> = list(&args, "--part-mib", "16");
    let levels: Vec<i32> = list(&args, "--level", "3");
    let threads: usize = arg(&args, "--threads").map_or(2, |v| v.parse().expect("--threads"));
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("create target/bench");
    let input = work.join("input.bin");
    make_input(&input, size_mib * MIB);
    let key = work.join("key.txt");
    let public = dr::generate_identity_file(&key, None).expect("keygen");
    let bytes = size_mib * MIB;
    println!(
        "input: {size_mib} MiB mixed data; machine: {} cores",
        threads_available()
    );
    println!("| pipeline | part MiB | level | MB/s | seconds | peak RSS MiB | stored / plain |");
    println!("|---|---|---|---|---|---|---|");
    for &level in &levels {
        let stock_out = work.join("stock.zst.age");
        let stock = format!(
            "zstd -{level} -T{threads} -q -c {} | age -r {public} > {}",
            input.display(),
            stock_out.display()
        );
        let m = measure(&["shell", &stock]);
        let ratio =
            std::fs::metadata(&stock_out).map(|m| m.len()).unwrap_or(0) as f64 / bytes as f64;
        row(
            &format!("stock `zstd -{level} -T{threads} | age -r`"),
            "-",
            level,
            bytes,
            m,
            ratio,
        );
        let restore = format!(
            "age -d -i {} {} | zstd -d -q | sha256sum > /dev/null",
            key.display(),
            stock_out.display()
        );
        let m = measure(&["shell", &restore]);
        row(
            "stock `age -d | zstd -d | sha256sum`",
            "-",
            level,
            bytes,
            m,
            ratio,
        );
        for &part in &parts {
            let repo = work.join(format!("repo-{part}-{level}"));
            let tuning = [part.to_string(), level.to_string(), threads.to_string()];
            let run_dr = |mode: &str| {
                let (input, repo, key) = (path(&input), path(&repo), path(&key));
                measure(&[mode, input, repo, key, &tuning[0], &tuning[1], &tuning[2]])
            };
            let m = run_dr("write");
            let ratio = dir_size(&repo) as f64 / bytes as f64;
            row(
                "dr backup (file -> repository)",
                &tuning[0],
                level,
                bytes,
                m,
                ratio,
            );
            let m = run_dr("read");
            row(
                "dr restore (repository -> sink, checked)",
                &tuning[0],
                level,
                bytes,
                m,
                ratio,
            );
        }
    }
    if !args.iter().any(|a| a == "--keep") {
        let _ = std::fs::remove_dir_all(&work);
    }
}

fn row(name: &str, part: &str, level: i32, bytes: u64, (secs, rss): (f64, u64), ratio: f64) {
    let mbps = bytes as f64 / secs / 1e6;
    println!(
        "| {name} | {part} | {level} | {mbps:.0} | {secs:.2} | {:.0} | {ratio:.3} |",
        rss as f64 / 1024.0
    );
}

fn child(args: &[String]) {
    common::child(
        args,
        |args| {
            if args[0] == "write" {
                let _ = std::fs::remove_dir_all(&args[2]);
            }
        },
        |args| run_dr(&args[0], args),
    );
}

fn run_dr(mode: &str, args: &[String]) {
    let (input, repo_dir, key) = (PathBuf::from(&args[1]), &args[2], PathBuf::from(&args[3]));
    let part: usize = args[4].parse().expect("part");
    let level: i32 = args[5].parse().expect("level");
    let threads: usize = args[6].parse().expect("threads");
    common::runtime(threads).block_on(async {
        let ids = Identities::from_file(&key).expect("identity");
        let options = PipelineOptions::default()
            .with_part_size(part * MIB as usize)
            .with_zstd_level(level)
            .with_threads(threads);
        if mode == "write" {
            let repo = dr::storage::init_repository(repo_dir, &[], &ids.to_recipients())
                .await
                .expect("init");
            let repo = repo.with_pipeline(options);
            repo.backup("bench", &FileSource(input), &BackupOptions::default())
                .await
                .expect("backup");
        } else {
            let repo = dr::storage::open_repository(repo_dir, &[])
                .await
                .expect("open");
            let repo = repo.with_identities(ids).with_pipeline(options);
            let reader = repo
                .open_backup("bench", &BackupSelector::Latest)
                .await
                .expect("latest");
            reader
                .copy_artifact("data", &mut tokio::io::sink())
                .await
                .expect("restore");
        }
    });
}

fn make_input(path: &Path, size: u64) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut data = dr_testing::MixedData::new(42, size);
        let mut file = tokio::fs::File::create(path).await.expect("create input");
        tokio::io::copy(&mut data, &mut file)
            .await
            .expect("write input");
    });
}

fn threads_available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
