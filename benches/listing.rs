//! Listing at scale: requests and seconds of `list`, `open_backup(latest)` and a retention
//! plan over a repository of many backups on the S3-compatible test server (moto on
//! 127.0.0.1), without the manifest cache, with a cold cache and with a warm one.
//!
//! `cargo bench --bench listing` (400 and 2,000 backups);
//! `DR_BENCH_BACKUPS=400,10000 cargo bench --bench listing` for the sizes.
//! The manifests are copies of one real backup's manifest under new ids (the parts of the
//! copies do not exist: listing never reads parts).

use std::sync::Arc;
use std::time::Instant;

use dr::core::retention::{RetentionItem, plan};
use dr::object_store::{ObjectStore, PutMode, PutOptions, path::Path};
use dr::{BackupOptions, BackupSelector, Identities, Manifest, Repository, RetentionPolicy};
use dr_testing::S3Server;
use dr_testing::counting::{CountingStore, Counts};

struct Tiny;

#[dr::async_trait]
impl dr::Backup for Tiny {
    fn kind(&self) -> &'static str {
        "bench.tiny"
    }
    async fn backup(&self, out: &mut dr::BackupWriter) -> dr::Result<dr::SourceInfo> {
        out.put_artifact("data", &mut &b"tiny"[..]).await?;
        Ok(dr::SourceInfo::new())
    }
}

#[tokio::main]
async fn main() -> dr::Result<()> {
    let sizes: Vec<usize> = std::env::var("DR_BENCH_BACKUPS")
        .unwrap_or_else(|_| "400,2000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("| backups | what | cache | requests (GET / LIST pages) | seconds |");
    println!("|---:|---|---|---|---:|");
    for n in sizes {
        run(n).await?;
    }
    Ok(())
}

async fn run(n: usize) -> dr::Result<()> {
    let server = S3Server::start();
    let url = server.url(&format!("listing-{n}"));
    let options = server.options();
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let inner = dr::storage::open_store(&url, &options, false)?.store();
    let counting = Arc::new(CountingStore::new(inner));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let identities = Identities::generate();
    let repo = Repository::init(store.clone(), &url, &identities.to_recipients()).await?;
    let model = repo.backup("app", &Tiny, &BackupOptions::default()).await?;
    fill(&store, &model, n).await?;
    let cache = tempfile::tempdir().map_err(|e| dr::Error::io("creating a cache dir", e))?;
    let cases: [(&str, Option<&std::path::Path>); 3] = [
        ("off", None),
        ("cold", Some(cache.path())),
        ("warm", Some(cache.path())),
    ];
    for (label, dir) in cases {
        let repo = repo.clone().with_cache_dir(dir);
        measure(n, "list", label, &counting, || async {
            repo.list(None).await.map(|_| ())
        })
        .await?;
    }
    let cold = tempfile::tempdir().map_err(|e| dr::Error::io("creating a cache dir", e))?;
    for (label, dir) in [
        ("off", None),
        ("cold", Some(cold.path())),
        ("warm", Some(cold.path())),
    ] {
        let repo = repo.clone().with_cache_dir(dir);
        measure(n, "open_backup(latest)", label, &counting, || async {
            repo.open_backup("app", &BackupSelector::Latest)
                .await
                .map(|_| ())
        })
        .await?;
    }
    for (label, dir) in [("off", None), ("warm", Some(cache.path()))] {
        let repo = repo.clone().with_cache_dir(dir);
        measure(n, "list + retention plan", label, &counting, || async {
            let listing = repo.list(None).await?;
            let items: Vec<RetentionItem> =
                listing.backups.iter().map(RetentionItem::from).collect();
            let planned = plan(&items, &RetentionPolicy::default(), dr::chrono::Utc::now());
            assert_eq!(planned.decisions.len(), n);
            Ok(())
        })
        .await?;
    }
    Ok(())
}

async fn measure<F, Fut>(
    n: usize,
    what: &str,
    cache: &str,
    counting: &CountingStore,
    op: F,
) -> dr::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = dr::Result<()>>,
{
    counting.reset();
    let started = Instant::now();
    op().await?;
    let secs = started.elapsed().as_secs_f64();
    let c: Counts = counting.counts();
    println!(
        "| {n} | {what} | {cache} | {} ({} / {}) | {secs:.3} |",
        c.total(),
        c.gets,
        c.list_pages()
    );
    Ok(())
}

/// `n - 1` more manifests like `model`, an hour apart going back in time.
async fn fill(store: &Arc<dyn ObjectStore>, model: &Manifest, n: usize) -> dr::Result<()> {
    use futures::StreamExt;
    let copies = (1..n).map(|i| {
        let mut m = model.clone();
        m.started_at = model.started_at - dr::chrono::TimeDelta::hours(i as i64);
        m.finished_at = m.started_at;
        m.id = format!("{}-{i:06x}", m.started_at.format("%Y%m%dT%H%M%SZ"));
        m
    });
    let results: Vec<dr::Result<()>> = futures::stream::iter(copies)
        .map(|m| {
            let store = store.clone();
            async move {
                let key = Path::from(format!("backups/{}/{}/manifest.json", m.source, m.id));
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                store
                    .put_opts(&key, m.to_json()?.into(), opts)
                    .await
                    .map_err(|e| dr::Error::store("writing a manifest", e))?;
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}
