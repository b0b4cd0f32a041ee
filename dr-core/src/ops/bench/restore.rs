//! The timed restores of a real backup: to a null sink (every artifact read, decrypted,
//! decompressed and checked, then discarded), then into a scratch target by the restorer
//! the registry serves for its kind (or, for a kind that restores only to a server, its
//! verifier's test restore).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BenchOptions, BenchPhase, BenchRun, RestoreChoice};
use crate::error::{Error, Result};
use crate::latency::{Latency, LatencyStore};
use crate::manifest::Manifest;
use crate::ops::System;
use crate::pipeline::BackupReader;
use crate::progress::ProgressHandle;
use crate::repository::Repository;
use crate::traits::{Restore, RestoreOptions, VerifyLevel};

/// The restore measurements and what was left out.
pub(super) struct RestoreRuns {
    pub(super) runs: Vec<BenchRun>,
    pub(super) notes: Vec<String>,
}

/// The backup to time: by id, the newest of a source, or the largest of all.
pub(super) fn choose<'a>(
    manifests: &'a [Manifest],
    choice: &RestoreChoice,
) -> Result<Option<&'a Manifest>> {
    match choice {
        RestoreChoice::Skip => Ok(None),
        RestoreChoice::Largest => Ok(manifests.iter().max_by_key(|m| m.plain_size())),
        // Newest first: the first backup of a source is its newest.
        RestoreChoice::Backup(wanted) => manifests
            .iter()
            .find(|m| &m.id == wanted || &m.source == wanted)
            .map(Some)
            .ok_or_else(|| Error::BackupNotFound {
                selector: format!("backup id or source {wanted}"),
            }),
    }
}

/// Restores `manifest` to a null sink, then into a scratch target.
pub(super) async fn runs(
    repo: &Repository,
    system: &System,
    manifest: &Manifest,
    options: &BenchOptions,
    progress: &ProgressHandle,
) -> Result<RestoreRuns> {
    if repo.identities().is_empty() {
        return Err(Error::NoIdentity);
    }
    let threads = options.restore_threads.unwrap_or(repo.pipeline().threads);
    let pipeline = repo.pipeline().clone().with_threads(threads);
    let scope = progress.narrowed(|s| s.with_source(&manifest.source).with_backup(&manifest.id));
    let reader = repo
        .clone()
        .with_pipeline(pipeline)
        .reader(manifest.clone())
        .with_progress(scope.clone());
    let mut out = RestoreRuns {
        runs: vec![null_sink(&reader, threads).await?],
        notes: Vec::new(),
    };
    if let Some(delay) = options.added_latency {
        let far_store = LatencyStore::new(repo.store().clone(), Latency::delay(delay));
        let far = repo.through(Arc::new(far_store));
        let far_pipeline = far.pipeline().clone().with_threads(threads);
        let far_reader = far.with_pipeline(far_pipeline).reader(manifest.clone());
        let mut run = null_sink(&far_reader, threads).await?;
        run.phase = BenchPhase::RestoreNullSinkFarther;
        run.added_latency_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        out.runs.push(run);
    }
    match scratch(repo, system, &reader, threads, options).await {
        Ok(run) => out.runs.push(run),
        Err(note) => {
            tracing::warn!(backup = %manifest.id, "{note}");
            out.notes.push(note);
        }
    }
    Ok(out)
}

/// Every artifact read and checked, the bytes discarded.
async fn null_sink(reader: &BackupReader, threads: usize) -> Result<BenchRun> {
    let manifest = reader.manifest();
    let started = Instant::now();
    let mut plain = 0;
    for artifact in &manifest.artifacts {
        plain += reader
            .copy_artifact(&artifact.name, &mut tokio::io::sink())
            .await?;
    }
    let run = BenchRun::timed(
        BenchPhase::RestoreNullSink,
        plain,
        manifest.stored_size(),
        started.elapsed(),
    );
    Ok(run.of_backup(manifest, threads))
}

/// The restore into a scratch directory, timed; `Err` says why none was timed.
async fn scratch(
    repo: &Repository,
    system: &System,
    reader: &BackupReader,
    threads: usize,
    options: &BenchOptions,
) -> std::result::Result<BenchRun, String> {
    let manifest = reader.manifest();
    let base = options
        .scratch_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "dr-bench-{}-{:04x}",
        manifest.id,
        rand::random::<u16>()
    ));
    let restorer = scratch_restorer(repo, system, manifest, &dir);
    let timed = match restorer {
        Some(restorer) => into_scratch(restorer.as_ref(), reader, &dir).await,
        None => test_restore(repo, system, reader).await,
    };
    let (phase, took) = timed
        .map_err(|why| format!("the scratch restore of {} is left out: {why}", manifest.id))?;
    let mut run = BenchRun::timed(phase, manifest.plain_size(), manifest.stored_size(), took);
    run = run.of_backup(manifest, threads);
    Ok(run)
}

/// The configured source's scratch restorer (when its kind matches), else the kind's.
fn scratch_restorer(
    repo: &Repository,
    system: &System,
    manifest: &Manifest,
    dir: &Path,
) -> Option<Box<dyn Restore>> {
    system
        .get(&manifest.source)
        .filter(|c| c.source.kind() == manifest.kind)
        .and_then(|c| c.source.scratch_restorer(repo, dir))
        .or_else(|| system.kind(&manifest.kind)?.scratch_restorer(repo, dir))
}

/// Restores into `dir` (made here, removed after).
async fn into_scratch(
    restorer: &dyn Restore,
    reader: &BackupReader,
    dir: &Path,
) -> std::result::Result<(BenchPhase, Duration), String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let started = Instant::now();
    let restored = restorer.restore(reader, &RestoreOptions::default()).await;
    let elapsed = started.elapsed();
    if let Err(e) = tokio::fs::remove_dir_all(dir).await {
        tracing::warn!(dir = %dir.display(), "could not remove the bench's scratch target: {e}");
    }
    restored.map_err(|e| e.to_string())?;
    Ok((BenchPhase::RestoreScratch, elapsed))
}

/// The verifier's test restore with its checks, for kinds without a scratch restorer.
async fn test_restore(
    repo: &Repository,
    system: &System,
    reader: &BackupReader,
) -> std::result::Result<(BenchPhase, Duration), String> {
    let verifier = crate::ops::verify::verifier_for(repo, system, reader.manifest())
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let report = verifier
        .verify(reader, VerifyLevel::Restore)
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    if report.level_performed < VerifyLevel::Restore {
        return Err(format!(
            "kind {} has no scratch restorer and no test restore",
            reader.manifest().kind
        ));
    }
    if !report.is_ok() {
        return Err(format!(
            "its test restore found problems ({})",
            report.problems_text()
        ));
    }
    Ok((BenchPhase::TestRestore, elapsed))
}
