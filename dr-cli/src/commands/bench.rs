//! `dr bench`: on this machine and this repository, how fast is the pipeline (for each
//! compression level and parallelism asked for), how fast does a real backup restore (to a
//! null sink and into a scratch target), and so how long would restoring the largest backup
//! of each source take? The pipeline runs write generated data into a scratch prefix of the
//! repository's store (`.dr-bench-<time>/`), removed afterwards.

use std::sync::Arc;
use std::time::Instant;

use dr_core::object_store::ObjectStore;
use dr_core::object_store::prefix::PrefixStore;
use dr_core::{
    Backup, BackupOptions, BackupWriter, Identities, Manifest, PipelineOptions, Repository,
    SourceInfo, VerifyLevel, async_trait,
};
use futures::TryStreamExt;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::app::App;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// What `dr bench` measures.
pub struct BenchArgs {
    /// MiB of generated data per pipeline run.
    pub size_mib: u64,
    /// zstd levels to try.
    pub levels: Vec<i32>,
    /// Parallelism (parts at once) to try.
    pub threads: Vec<usize>,
    /// The backup whose restore is timed (an id or a source; default the largest).
    pub backup: Option<String>,
}

/// One measurement.
#[derive(Debug, Serialize)]
struct Measured {
    what: String,
    level: Option<i32>,
    threads: Option<usize>,
    plain_bytes: u64,
    stored_bytes: Option<u64>,
    seconds: f64,
    mb_per_s: f64,
}

/// A projected restore time.
#[derive(Debug, Serialize)]
struct Projection {
    source: String,
    largest_backup: String,
    plain_bytes: u64,
    projected_null_sink_s: f64,
    projected_scratch_target_s: Option<f64>,
}

/// `dr bench`.
pub async fn bench(app: &App, args: &BenchArgs) -> CliResult<()> {
    let repo = app.repository(None).await?;
    let mut rows = pipeline_runs(&repo, args).await?;
    let manifests = repo
        .list(None)
        .await
        .doing(|| "listing backups".into())?
        .backups;
    let mut projections = Vec::new();
    if let Some(chosen) = choose(&manifests, args.backup.as_deref())? {
        if app.identity_path().is_none() {
            return Err(CliError::usage(
                "timing a restore needs the secret key: pass --identity FILE (or leave the repository without backups)",
            ));
        }
        let (sink, scratch) = restore_runs(app, &repo, chosen).await?;
        projections = project(
            &manifests,
            sink.mb_per_s,
            scratch.as_ref().map(|m| m.mb_per_s),
        );
        rows.push(sink);
        rows.extend(scratch);
    }
    let peak_rss_mib = peak_rss_mib();
    if app.global.json {
        return output::json(&serde_json::json!({
            "runs": rows, "projections": projections, "peak_rss_mib": peak_rss_mib
        }));
    }
    print_rows(&rows);
    print_projections(&projections);
    println!("peak RSS of this process: {peak_rss_mib:.0} MiB");
    Ok(())
}

/// Backup and restore of generated data for every level x threads, in a scratch prefix.
async fn pipeline_runs(repo: &Repository, args: &BenchArgs) -> CliResult<Vec<Measured>> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let prefix = format!(".dr-bench-{stamp}");
    let store: Arc<dyn ObjectStore> =
        Arc::new(PrefixStore::new(repo.store().clone(), prefix.as_str()));
    let identities = Identities::generate();
    let scratch = Repository::init(store.clone(), &prefix, &identities.to_recipients())
        .await
        .doing(|| "creating the scratch repository for the benchmark".into())?
        .with_identities(identities);
    let mut rows = Vec::new();
    let outcome = async {
        for &level in &args.levels {
            for &threads in &args.threads {
                let options = PipelineOptions::default()
                    .with_zstd_level(level)
                    .with_threads(threads);
                rows.extend(one_pipeline_run(&scratch, options, args.size_mib).await?);
            }
        }
        Ok::<_, CliError>(())
    }
    .await;
    remove_all(store.as_ref()).await;
    // A local store keeps the emptied directories: remove the one made here.
    if let Some(root) = repo.location().strip_prefix("file://") {
        let _ = std::fs::remove_dir_all(std::path::Path::new(root).join(&prefix));
    }
    outcome.map(|()| rows)
}

async fn one_pipeline_run(
    scratch: &Repository,
    options: PipelineOptions,
    size_mib: u64,
) -> CliResult<Vec<Measured>> {
    let (level, threads) = (options.zstd_level, options.threads);
    let repo = scratch.clone().with_pipeline(options);
    let started = Instant::now();
    let manifest = repo
        .backup(
            "bench",
            &Generated {
                bytes: size_mib << 20,
            },
            &BackupOptions::default(),
        )
        .await
        .doing(|| "backing up generated data".into())?;
    let backup_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    repo.reader(manifest.clone())
        .copy_artifact("data", &mut tokio::io::sink())
        .await
        .doing(|| "restoring generated data".into())?;
    let restore_s = started.elapsed().as_secs_f64();
    let plain = manifest.plain_size();
    let row = |what: &str, seconds: f64, stored: Option<u64>| Measured {
        what: what.into(),
        level: Some(level),
        threads: Some(threads),
        plain_bytes: plain,
        stored_bytes: stored,
        seconds,
        mb_per_s: mb_per_s(plain, seconds),
    };
    Ok(vec![
        row(
            "pipeline backup (generated data -> store)",
            backup_s,
            Some(manifest.stored_size()),
        ),
        row("pipeline restore (store -> null sink)", restore_s, None),
    ])
}

/// The backup to time: by id, the newest of a source, or the largest of all.
fn choose<'a>(manifests: &'a [Manifest], wanted: Option<&str>) -> CliResult<Option<&'a Manifest>> {
    let Some(wanted) = wanted else {
        return Ok(manifests.iter().max_by_key(|m| m.plain_size()));
    };
    // Newest first: the first backup of a source is its newest.
    manifests
        .iter()
        .find(|m| m.id == wanted || m.source == wanted)
        .map(Some)
        .ok_or_else(|| {
            CliError::usage(format!(
                "no backup id or source named {wanted}: run `dr list`"
            ))
        })
}

/// Restores `manifest` to a null sink, then test-restores it into a scratch target.
async fn restore_runs(
    app: &App,
    repo: &Repository,
    manifest: &Manifest,
) -> CliResult<(Measured, Option<Measured>)> {
    let reader = repo.reader(manifest.clone());
    let plain = manifest.plain_size();
    let started = Instant::now();
    for artifact in &manifest.artifacts {
        reader
            .copy_artifact(&artifact.name, &mut tokio::io::sink())
            .await
            .doing(|| format!("reading backup {}", manifest.id))?;
    }
    let timed = |target: &str, seconds: f64| Measured {
        what: format!("restore {} {} ({target})", manifest.source, manifest.id),
        level: Some(manifest.encoding.level),
        threads: Some(repo.pipeline().threads),
        plain_bytes: plain,
        stored_bytes: Some(manifest.stored_size()),
        seconds,
        mb_per_s: mb_per_s(plain, seconds),
    };
    let sink = timed("null sink", started.elapsed().as_secs_f64());
    let verifier =
        dr_core::ops::verify::verifier_for(repo, &app.system()?, reader.manifest())?;
    let started = Instant::now();
    let report = verifier
        .verify(&reader, VerifyLevel::Restore)
        .await
        .doing(|| format!("test-restoring backup {}", manifest.id))?;
    let seconds = started.elapsed().as_secs_f64();
    let scratch = report
        .is_ok()
        .then(|| timed("scratch target, checked", seconds));
    if !report.is_ok() {
        eprintln!(
            "warning: the test restore of {} found problems ({}); its time is left out",
            manifest.id,
            report.problems_text()
        );
    }
    Ok((sink, scratch))
}

/// The largest backup of each source at the measured rates.
fn project(manifests: &[Manifest], sink_mb_s: f64, scratch_mb_s: Option<f64>) -> Vec<Projection> {
    let mut largest: std::collections::BTreeMap<&str, &Manifest> = Default::default();
    for m in manifests {
        let slot = largest.entry(m.source.as_str()).or_insert(m);
        if m.plain_size() > slot.plain_size() {
            *slot = m;
        }
    }
    let at = |bytes: u64, rate: f64| bytes as f64 / 1e6 / rate.max(1e-9);
    largest
        .into_values()
        .map(|m| Projection {
            source: m.source.clone(),
            largest_backup: m.id.clone(),
            plain_bytes: m.plain_size(),
            projected_null_sink_s: at(m.plain_size(), sink_mb_s),
            projected_scratch_target_s: scratch_mb_s.map(|r| at(m.plain_size(), r)),
        })
        .collect()
}

fn print_rows(rows: &[Measured]) {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.what.clone(),
                r.level.map_or_else(|| "-".into(), |l| l.to_string()),
                r.threads.map_or_else(|| "-".into(), |t| t.to_string()),
                output::size(r.plain_bytes),
                r.stored_bytes.map_or_else(|| "-".into(), output::size),
                format!("{:.2}", r.seconds),
                format!("{:.0}", r.mb_per_s),
            ]
        })
        .collect();
    output::table(
        &[
            "RUN", "LEVEL", "THREADS", "PLAIN", "STORED", "SECONDS", "MB/S",
        ],
        &table,
    );
}

fn print_projections(projections: &[Projection]) {
    if projections.is_empty() {
        println!("(no backups in the repository: no restore timed, nothing projected)");
        return;
    }
    let rows: Vec<Vec<String>> = projections
        .iter()
        .map(|p| {
            vec![
                p.source.clone(),
                p.largest_backup.clone(),
                output::size(p.plain_bytes),
                format!("{:.1} s", p.projected_null_sink_s),
                p.projected_scratch_target_s
                    .map_or_else(|| "-".into(), |s| format!("{s:.1} s")),
            ]
        })
        .collect();
    output::table(
        &[
            "SOURCE",
            "LARGEST BACKUP",
            "SIZE",
            "TO READ (NULL SINK)",
            "TO RESTORE (SCRATCH)",
        ],
        &rows,
    );
}

fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds.max(1e-9)
}

/// Peak resident memory of this process (VmHWM), MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Best-effort removal of the scratch prefix.
async fn remove_all(store: &dyn ObjectStore) {
    let objects: Vec<_> = match store.list(None).try_collect().await {
        Ok(objects) => objects,
        Err(e) => return tracing::warn!("could not list the benchmark's scratch objects: {e}"),
    };
    for meta in objects {
        if let Err(e) = dr_core::object_store::ObjectStoreExt::delete(store, &meta.location).await {
            tracing::warn!(key = %meta.location, "could not remove a benchmark object: {e}");
        }
    }
}

/// Generated data: about 70 % text-like (compressible, like dumps and JSON) and 30 %
/// random (like media and encrypted blobs), in 64 KiB blocks, the same every run.
struct Generated {
    bytes: u64,
}

#[async_trait]
impl Backup for Generated {
    fn kind(&self) -> &'static str {
        "bench"
    }

    async fn backup(&self, out: &mut BackupWriter) -> dr_core::Result<SourceInfo> {
        let mut writer = out.artifact("data")?;
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut block = vec![0u8; 64 << 10];
        let mut left = self.bytes;
        let mut n = 0u64;
        while left > 0 {
            fill(&mut block, &mut state, n);
            let take = block.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            writer
                .write_all(&block[..take])
                .await
                .map_err(|e| dr_core::Error::io("writing generated data", e))?;
            left -= take as u64;
            n += 1;
        }
        writer.finish().await?;
        Ok(SourceInfo::new())
    }
}

fn fill(block: &mut [u8], state: &mut u64, n: u64) {
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    };
    if n % 10 < 3 {
        for chunk in block.chunks_mut(8) {
            let bytes = next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        return;
    }
    let mut line = Vec::with_capacity(128);
    let mut at = 0;
    while at < block.len() {
        line.clear();
        let id = next() % 100_000;
        line.extend_from_slice(
            format!(
                "{{\"id\":{id},\"status\":\"done\",\"user\":\"user{}\",\"bytes\":{}}}\n",
                id % 997,
                next() % 1_000_000
            )
            .as_bytes(),
        );
        let take = line.len().min(block.len() - at);
        block[at..at + take].copy_from_slice(&line[..take]);
        at += take;
    }
}
