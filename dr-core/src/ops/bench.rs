//! `bench`: on this machine and this repository, how fast is the pipeline (for each zstd
//! level and parallelism asked for), how fast does a real backup restore with a chosen
//! parallelism (to a null sink, and into a scratch target through the registry), and so how
//! long would restoring the largest backup of each source take?
//!
//! The pipeline runs write generated data into a scratch prefix of the repository's store
//! (`.dr-bench-<time>/`), removed afterwards. Every run streams: memory stays bounded by the
//! part size times the parallelism, whatever the size.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::keys::Identities;
use crate::manifest::Manifest;
use crate::ops::System;
use crate::progress::{Operation, ProgressHandle, Scope};
use crate::repository::{BackupOptions, Repository};

mod generated;
mod restore;

use generated::Generated;

/// Which backup's restore a bench times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreChoice {
    /// No restore is timed.
    Skip,
    /// The largest backup in the repository (none timed when it holds none).
    #[default]
    Largest,
    /// A backup id, or a source name for its newest backup.
    Backup(String),
}

/// The options of [`bench`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BenchOptions {
    /// Plain bytes of generated data per pipeline run (0: no pipeline runs).
    pub size_bytes: u64,
    /// zstd levels the pipeline runs try.
    pub levels: Vec<i32>,
    /// Parallelism (parts at once) the pipeline runs try; empty: the repository's.
    pub threads: Vec<usize>,
    /// The backup whose restore is timed.
    pub restore: RestoreChoice,
    /// The parallelism of the timed restore (`None`: the repository's).
    pub restore_threads: Option<usize>,
    /// Where the scratch target goes (`None`: the system's temporary directory).
    pub scratch_dir: Option<PathBuf>,
    /// Also time the null-sink restore with this delay added to every request of the store
    /// (as from a store that far away), and project each source's restore at it.
    pub added_latency: Option<Duration>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            size_bytes: 256 << 20,
            levels: vec![1, 3],
            threads: Vec::new(),
            restore: RestoreChoice::Largest,
            restore_threads: None,
            scratch_dir: None,
            added_latency: None,
        }
    }
}

impl BenchOptions {
    /// Generates `bytes` per pipeline run.
    pub fn with_size_bytes(mut self, bytes: u64) -> Self {
        self.size_bytes = bytes;
        self
    }

    /// Tries these zstd levels.
    pub fn with_levels(mut self, levels: Vec<i32>) -> Self {
        self.levels = levels;
        self
    }

    /// Tries these parallelisms in the pipeline runs.
    pub fn with_threads(mut self, threads: Vec<usize>) -> Self {
        self.threads = threads;
        self
    }

    /// Times the restore of `choice`.
    pub fn with_restore(mut self, choice: RestoreChoice) -> Self {
        self.restore = choice;
        self
    }

    /// Restores with `threads` parts at once.
    pub fn with_restore_threads(mut self, threads: Option<usize>) -> Self {
        self.restore_threads = threads;
        self
    }

    /// Puts the scratch target under `dir`.
    pub fn with_scratch_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.scratch_dir = dir;
        self
    }

    /// Also times the restore with `latency` added to every request.
    pub fn with_added_latency(mut self, latency: Option<Duration>) -> Self {
        self.added_latency = latency;
        self
    }
}

/// What one measurement timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BenchPhase {
    /// Generated data through the pipeline into the store.
    PipelineBackup,
    /// The generated backup read back to a null sink.
    PipelineRestore,
    /// A real backup read, decrypted, decompressed and checked, then discarded.
    RestoreNullSink,
    /// The same, with [`BenchRun::added_latency_ms`] added to every request of the store.
    RestoreNullSinkFarther,
    /// A real backup restored into a scratch target by its kind's restorer.
    RestoreScratch,
    /// A real backup test-restored by its verifier, with the checks (for kinds that restore
    /// only to a server).
    TestRestore,
}

/// One measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BenchRun {
    /// What was timed.
    pub phase: BenchPhase,
    /// The source of the backup restored (`None` for generated data).
    pub source: Option<String>,
    /// The backup restored (`None` for generated data).
    pub backup_id: Option<String>,
    /// The zstd level of the data.
    pub zstd_level: i32,
    /// Parts processed at once.
    pub threads: usize,
    /// Plain bytes moved.
    pub plain_bytes: u64,
    /// Stored (compressed, encrypted) bytes of the backup.
    pub stored_bytes: u64,
    /// Wall time, fractional milliseconds.
    pub elapsed_ms: f64,
    /// Plain megabytes (10^6 bytes) per second: `plain_bytes / 1e6 / (elapsed_ms / 1e3)`.
    pub mb_per_s: f64,
    /// Delay added to every request of the store (0: the store as it is).
    #[serde(default)]
    pub added_latency_ms: u64,
}

impl BenchRun {
    fn timed(phase: BenchPhase, plain_bytes: u64, stored_bytes: u64, took: Duration) -> Self {
        let elapsed_ms = took.as_secs_f64() * 1e3;
        BenchRun {
            phase,
            source: None,
            backup_id: None,
            zstd_level: 0,
            threads: 1,
            plain_bytes,
            stored_bytes,
            elapsed_ms,
            mb_per_s: mb_per_s(plain_bytes, elapsed_ms),
            added_latency_ms: 0,
        }
    }

    fn with_pipeline(mut self, level: i32, threads: usize) -> Self {
        self.zstd_level = level;
        self.threads = threads;
        self
    }

    fn of_backup(mut self, manifest: &Manifest, threads: usize) -> Self {
        self.source = Some(manifest.source.clone());
        self.backup_id = Some(manifest.id.clone());
        self.with_pipeline(manifest.encoding.level, threads)
    }
}

/// The projected restore time of a source's largest backup at the measured rates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Projection {
    /// The source.
    pub source: String,
    /// Its largest backup.
    pub largest_backup: String,
    /// That backup's plain size.
    pub plain_bytes: u64,
    /// At the null-sink rate.
    pub projected_null_sink_ms: u64,
    /// At the scratch-target (or test-restore) rate, when one was measured.
    pub projected_scratch_target_ms: Option<u64>,
    /// At the null-sink rate measured with [`BenchOptions::added_latency`], when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projected_farther_ms: Option<u64>,
}

/// What a bench measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BenchReport {
    /// Every measurement, in order: the pipeline runs, then the restores.
    pub runs: Vec<BenchRun>,
    /// The largest backup of each source at the measured restore rates.
    pub projections: Vec<Projection>,
    /// What was left out, and why.
    pub notes: Vec<String>,
    /// Peak resident memory of this process (Linux), when known.
    pub peak_rss_bytes: Option<u64>,
    /// Wall time of the whole bench.
    pub elapsed_ms: u64,
}

/// Runs the bench `options` asks for.
///
/// # Errors
/// [`crate::Error::NoIdentity`] when a restore is to be timed without a secret key;
/// [`crate::Error::BackupNotFound`] for a backup or source that names nothing; any error of
/// the pipeline runs or the null-sink read. A scratch restore that fails is a note.
pub async fn bench(
    repo: &Repository,
    system: &System,
    options: &BenchOptions,
    progress: &ProgressHandle,
) -> Result<BenchReport> {
    let started = Instant::now();
    let progress = progress.narrowed(|_| Scope::of(Operation::Bench));
    let mut report = BenchReport {
        runs: pipeline_runs(repo, options, &progress).await?,
        projections: Vec::new(),
        notes: Vec::new(),
        peak_rss_bytes: None,
        elapsed_ms: 0,
    };
    let manifests = repo.list(None).await?.backups;
    match restore::choose(&manifests, &options.restore)? {
        Some(chosen) => {
            let runs = restore::runs(repo, system, chosen, options, &progress).await?;
            report.notes.extend(runs.notes);
            report.projections = project(&manifests, &runs.runs);
            report.runs.extend(runs.runs);
        }
        None if options.restore != RestoreChoice::Skip => report
            .notes
            .push("the repository holds no backups: no restore timed, nothing projected".into()),
        None => {}
    }
    report.peak_rss_bytes = peak_rss_bytes();
    report.elapsed_ms = crate::ops::elapsed_ms(started);
    Ok(report)
}

/// A backup and a null-sink restore of generated data for every level x threads, in a
/// scratch repository under a prefix of the store, removed afterwards.
async fn pipeline_runs(
    repo: &Repository,
    options: &BenchOptions,
    progress: &ProgressHandle,
) -> Result<Vec<BenchRun>> {
    if options.size_bytes == 0 || options.levels.is_empty() {
        return Ok(Vec::new());
    }
    let threads = if options.threads.is_empty() {
        vec![repo.pipeline().threads]
    } else {
        options.threads.clone()
    };
    let prefix = format!(
        ".dr-bench-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let store: Arc<dyn ObjectStore> =
        Arc::new(PrefixStore::new(repo.store().clone(), prefix.as_str()));
    let identities = Identities::generate();
    let outcome = async {
        let scratch = Repository::init(store.clone(), &prefix, &identities.to_recipients())
            .await?
            .with_identities(identities);
        let mut runs = Vec::new();
        for &level in &options.levels {
            for &n in &threads {
                let pipeline = repo
                    .pipeline()
                    .clone()
                    .with_zstd_level(level)
                    .with_threads(n);
                let bench_repo = scratch.clone().with_pipeline(pipeline);
                let scope = progress.narrowed(|s| s.with_source(format!("pipeline z{level} x{n}")));
                scope.start("bench", Some(options.size_bytes));
                runs.extend(one_pipeline_run(&bench_repo, options.size_bytes).await?);
                scope.finish();
            }
        }
        Ok(runs)
    }
    .await;
    remove_scratch(repo, store.as_ref(), &prefix).await;
    outcome
}

async fn one_pipeline_run(repo: &Repository, bytes: u64) -> Result<Vec<BenchRun>> {
    let (level, threads) = (repo.pipeline().zstd_level, repo.pipeline().threads);
    let started = Instant::now();
    let manifest = repo
        .backup("bench", &Generated { bytes }, &BackupOptions::default())
        .await?;
    let (plain, stored) = (manifest.plain_size(), manifest.stored_size());
    let backup = BenchRun::timed(BenchPhase::PipelineBackup, plain, stored, started.elapsed());
    let started = Instant::now();
    repo.reader(manifest)
        .copy_artifact(generated::ARTIFACT, &mut tokio::io::sink())
        .await?;
    let restore = BenchRun::timed(
        BenchPhase::PipelineRestore,
        plain,
        stored,
        started.elapsed(),
    );
    Ok(vec![
        backup.with_pipeline(level, threads),
        restore.with_pipeline(level, threads),
    ])
}

/// Best-effort removal of the scratch prefix (and, for a local store, its directory).
async fn remove_scratch(repo: &Repository, store: &dyn ObjectStore, prefix: &str) {
    let objects: Vec<_> = match store.list(None).try_collect().await {
        Ok(objects) => objects,
        Err(e) => return tracing::warn!("could not list the benchmark's scratch objects: {e}"),
    };
    for meta in objects {
        if let Err(e) = object_store::ObjectStoreExt::delete(store, &meta.location).await {
            tracing::warn!(key = %meta.location, "could not remove a benchmark object: {e}");
        }
    }
    // A local store keeps the emptied directories.
    if let Some(root) = repo.location().strip_prefix("file://") {
        let dir = std::path::Path::new(root).join(prefix);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            tracing::debug!(dir = %dir.display(), "benchmark directory not removed: {e}");
        }
    }
}

/// The largest backup of each source at the rates measured by `runs`.
fn project(manifests: &[Manifest], runs: &[BenchRun]) -> Vec<Projection> {
    let rate = |phases: &[BenchPhase]| {
        runs.iter()
            .find(|r| phases.contains(&r.phase))
            .map(|r| r.mb_per_s)
    };
    let Some(sink) = rate(&[BenchPhase::RestoreNullSink]) else {
        return Vec::new();
    };
    let scratch = rate(&[BenchPhase::RestoreScratch, BenchPhase::TestRestore]);
    let farther = rate(&[BenchPhase::RestoreNullSinkFarther]);
    let mut largest: BTreeMap<&str, &Manifest> = BTreeMap::new();
    for m in manifests {
        let slot = largest.entry(m.source.as_str()).or_insert(m);
        if m.plain_size() > slot.plain_size() {
            *slot = m;
        }
    }
    let at = |bytes: u64, mb_per_s: f64| (bytes as f64 / 1e3 / mb_per_s.max(1e-9)).ceil() as u64;
    largest
        .into_values()
        .map(|m| Projection {
            source: m.source.clone(),
            largest_backup: m.id.clone(),
            plain_bytes: m.plain_size(),
            projected_null_sink_ms: at(m.plain_size(), sink),
            projected_scratch_target_ms: scratch.map(|r| at(m.plain_size(), r)),
            projected_farther_ms: farther.map(|r| at(m.plain_size(), r)),
        })
        .collect()
}

/// Plain MB per second of `bytes` moved in `elapsed_ms`.
fn mb_per_s(bytes: u64, elapsed_ms: f64) -> f64 {
    bytes as f64 / 1e3 / elapsed_ms.max(1e-6)
}

/// Peak resident memory of this process (`VmHWM` of `/proc/self/status`), bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
