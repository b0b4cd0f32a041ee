//! Listing cost at many backups, against a moto S3 server on 127.0.0.1: requests (LIST pages,
//! GETs) and seconds of `list`, `open_backup(Latest)` and a retention plan over the listing,
//! with the manifest cache off, cold and warm.
//!
//! `cargo bench --bench listing -- [--backups 400,10000]` (default `400`, small for CI)
//!
//! The first backup of each size is a real one (one tiny part); the others are copies of its
//! objects (`manifest.json` with a new id and time, `SHA256SUMS`, the part), so the LIST
//! sees three objects per backup as a real repository of tiny backups would.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench binary: failing loudly is right

use std::sync::Arc;
use std::time::Instant;

use dr::core::object_store::aws::AmazonS3Builder;
use dr::core::object_store::path::Path;
use dr::core::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use dr::{BackupOptions, BackupSelector, Identities, Repository, RetentionPolicy};
use dr_testing::{CountingStore, S3Server, StreamSource};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes: Vec<usize> = args
        .iter()
        .position(|a| a == "--backups")
        .and_then(|i| args.get(i + 1))
        .map_or("400", String::as_str)
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = S3Server::start();
    println!(
        "| backups | cache | operation | LIST pages | GETs | deletes | seconds | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in sizes {
        runtime.block_on(run(&server, n));
    }
}

async fn run(server: &S3Server, n: usize) {
    let prefix = format!("listing-{n}");
    let mut builder = AmazonS3Builder::new().with_bucket_name("dr-test");
    for (key, value) in server.options() {
        builder = builder.with_config(key.parse().unwrap(), value);
    }
    let s3: Arc<dyn ObjectStore> = Arc::new(dr::core::object_store::prefix::PrefixStore::new(
        builder.build().unwrap(),
        prefix.as_str(),
    ));
    let counting = Arc::new(CountingStore::new(s3));
    let ids = Identities::generate();
    let location = server.url(&prefix);
    let repo = Repository::init(counting.clone(), &location, &ids.to_recipients())
        .await
        .unwrap()
        .with_identities(ids);
    let started = Instant::now();
    populate(&repo, n).await;
    eprintln!(
        "{n} backups written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let cache = tempfile::tempdir().unwrap();
    let cases = [
        ("off", repo.clone().with_cache_dir(None)),
        (
            "cold",
            repo.clone().with_cache_dir(Some(cache.path().to_owned())),
        ),
        (
            "warm",
            repo.clone().with_cache_dir(Some(cache.path().to_owned())),
        ),
    ];
    for (name, repo) in cases {
        if name == "cold" {
            let _ = std::fs::remove_dir_all(cache.path());
        }
        measure(n, name, "list", &counting, || async {
            assert_eq!(repo.list(None).await.unwrap().backups.len(), n);
        })
        .await;
        if name == "cold" {
            let _ = std::fs::remove_dir_all(cache.path());
        }
        measure(n, name, "open_backup(Latest)", &counting, || async {
            repo.open_backup("db", &BackupSelector::Latest)
                .await
                .unwrap();
        })
        .await;
        if name == "cold" {
            let _ = std::fs::remove_dir_all(cache.path());
        }
        measure(n, name, "list + retention plan", &counting, || async {
            let listing = repo.list(None).await.unwrap();
            let items: Vec<dr::retention::RetentionItem> =
                listing.backups.iter().map(Into::into).collect();
            let plan = dr::retention::plan(&items, &RetentionPolicy::seed_default(), chrono_now());
            assert_eq!(plan.decisions.len(), n);
        })
        .await;
    }
    let repo = repo.with_cache_dir(Some(cache.path().to_owned()));
    let system = dr::ops::System::default().with_default_retention(RetentionPolicy::seed_default());
    let progress = dr::ProgressHandle::new(Arc::new(dr::NoProgress));
    measure(n, "warm", "status", &counting, || async {
        let report = dr::ops::status::status(
            &repo,
            &system,
            &dr::ops::status::StatusOptions::default(),
            &progress,
        )
        .await
        .unwrap();
        assert_eq!(report.sources.len(), 1);
    })
    .await;
    for dry_run in [true, false] {
        let mut options = dr::ops::prune::PruneOptions::default();
        options.dry_run = dry_run;
        let op = if dry_run { "prune --dry-run" } else { "prune" };
        measure(n, "warm", op, &counting, || async {
            let report = dr::ops::prune::prune(&repo, &system, &options, &progress)
                .await
                .unwrap();
            assert_eq!(report.decisions.len(), n);
        })
        .await;
    }
}

fn chrono_now() -> dr::core::chrono::DateTime<dr::core::chrono::Utc> {
    dr::core::chrono::Utc::now()
}

async fn measure<F, Fut>(n: usize, cache: &str, op: &str, counting: &CountingStore, work: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Resets the process's peak RSS (VmHWM) so each operation's own peak is read.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = counting.counts();
    let started = Instant::now();
    work().await;
    let secs = started.elapsed().as_secs_f64();
    let c = counting.counts().since(&before);
    println!(
        "| {n} | {cache} | {op} | {} | {} | {} | {secs:.3} | {} |",
        c.list_pages,
        c.gets,
        c.deletes,
        peak_rss_mib()
    );
}

/// This process's peak resident set since the last reset, in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// One real backup, then `n - 1` copies of its objects under new ids, one second apart.
async fn populate(repo: &Repository, n: usize) {
    let source = StreamSource { seed: 3, size: 200 };
    let real = repo
        .backup("db", &source, &BackupOptions::default())
        .await
        .unwrap();
    let store = repo.store().clone();
    let dir = format!("backups/db/{}", real.id);
    let read = |key: String| {
        let store = store.clone();
        async move {
            store
                .get(&Path::from(key))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        }
    };
    let sums = read(format!("{dir}/SHA256SUMS")).await;
    let part_name = real.artifacts[0].parts[0].object.clone();
    let part = read(format!("{dir}/{part_name}")).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 1..n {
        if tasks.len() >= 32 {
            tasks.join_next().await.unwrap().unwrap();
        }
        let mut manifest = real.clone();
        manifest.started_at -= dr::core::chrono::Duration::seconds(i as i64);
        manifest.finished_at = manifest.started_at;
        manifest.id = format!(
            "{}-{:04x}",
            manifest.started_at.format("%Y%m%dT%H%M%SZ"),
            i % 0xffff
        );
        let dir = format!("backups/db/{}", manifest.id);
        let objects = [
            (format!("{dir}/{part_name}"), part.clone()),
            (format!("{dir}/SHA256SUMS"), sums.clone()),
            (format!("{dir}/manifest.json"), manifest.to_json().unwrap()),
        ];
        let store = store.clone();
        tasks.spawn(async move {
            for (key, bytes) in objects {
                store
                    .put(&Path::from(key), PutPayload::from(bytes))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}
