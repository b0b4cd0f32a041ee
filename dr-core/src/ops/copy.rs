//! The copy operation: committed backups (and WAL archives and recovery points) replicated
//! to other repositories, idempotently and checked (see [`crate::copy`]).

use std::time::Instant;

use serde::Serialize;

use crate::copy::{CopyOutcome, copy_backup, copy_points, copy_wal};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::ops::System;
use crate::progress::{Operation, ProgressHandle, Scope};
use crate::repository::Repository;

/// One repository to copy to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyDestination {
    /// How reports name it (credentials redacted).
    pub name: String,
    /// The repository, opened (see [`crate::copy::open_or_init_like`]).
    pub repo: Repository,
}

impl CopyDestination {
    /// The destination `repo`, shown as `name` (redacted here again).
    pub fn new(name: &str, repo: Repository) -> Self {
        CopyDestination {
            name: crate::redact_url(name),
            repo,
        }
    }
}

/// The options of [`copy`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Where to copy.
    pub to: Vec<CopyDestination>,
    /// The backups to copy; `None`: every committed backup.
    pub ids: Option<Vec<String>>,
}

impl CopyOptions {
    /// Copies to `to`.
    pub fn to(to: Vec<CopyDestination>) -> Self {
        CopyOptions { to, ids: None }
    }

    /// Only the backups `ids`.
    pub fn with_ids(mut self, ids: Vec<String>) -> Self {
        self.ids = Some(ids);
        self
    }
}

/// What copying to one destination did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DestinationReport {
    /// The destination, redacted.
    pub destination: String,
    /// Backups copied now.
    pub copied: u64,
    /// Backups the destination already had.
    pub already_there: u64,
    /// Bytes written.
    pub copied_bytes: u64,
    /// WAL archive objects copied.
    pub wal_objects: u64,
    /// Recovery points copied.
    pub points: u64,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// What a copy did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CopyReport {
    /// Each destination.
    pub destinations: Vec<DestinationReport>,
    /// Committed backups not copied because their manifests are unreadable.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

impl CopyReport {
    /// Whether every committed backup asked for was copied.
    pub fn is_complete(&self) -> bool {
        self.unreadable.is_empty()
    }
}

/// Copies the backups of `repo` (oldest first, so a parent lands before its children),
/// then the WAL archive and the recovery points, to every destination.
///
/// # Errors
/// [`Error::Usage`] without a destination or for an id that is not a committed backup;
/// the first copy that fails (a damaged part, a destination holding a different backup
/// under the same id, store errors).
pub async fn copy(
    repo: &Repository,
    system: &System,
    options: &CopyOptions,
    progress: &ProgressHandle,
) -> Result<CopyReport> {
    let _ = system;
    if options.to.is_empty() {
        return Err(Error::Usage(
            "no destination: pass --to URL or list them in `copies` in dr.toml".into(),
        ));
    }
    let listing = repo.list(None).await?;
    let mut manifests = select(&listing.backups, options.ids.as_deref())?;
    manifests.reverse();
    let unreadable = match &options.ids {
        None => listing.unreadable.iter().map(|u| u.describe()).collect(),
        Some(_) => Vec::new(),
    };
    let progress = progress.narrowed(|_| Scope::of(Operation::Copy));
    let mut destinations = Vec::new();
    for to in &options.to {
        destinations.push(copy_to(repo, to, &manifests, &progress).await?);
    }
    Ok(CopyReport {
        destinations,
        unreadable,
    })
}

fn select(backups: &[Manifest], ids: Option<&[String]>) -> Result<Vec<Manifest>> {
    let Some(ids) = ids else {
        return Ok(backups.to_vec());
    };
    if let Some(id) = ids.iter().find(|id| !backups.iter().any(|m| &m.id == *id)) {
        return Err(Error::Usage(format!(
            "no committed backup with id {id} to copy"
        )));
    }
    Ok(backups
        .iter()
        .filter(|m| ids.contains(&m.id))
        .cloned()
        .collect())
}

async fn copy_to(
    repo: &Repository,
    to: &CopyDestination,
    manifests: &[Manifest],
    progress: &ProgressHandle,
) -> Result<DestinationReport> {
    let started = Instant::now();
    let mut report = DestinationReport {
        destination: to.name.clone(),
        copied: 0,
        already_there: 0,
        copied_bytes: 0,
        wal_objects: 0,
        points: 0,
        elapsed_ms: 0,
    };
    for manifest in manifests {
        let progress =
            progress.narrowed(|s| s.with_source(&manifest.source).with_backup(&manifest.id));
        progress.start("copy", Some(manifest.stored_size()));
        match copy_backup(repo, &to.repo, manifest).await {
            Ok(CopyOutcome::AlreadyThere) => report.already_there += 1,
            Ok(CopyOutcome::Copied { bytes, .. }) => {
                report.copied += 1;
                report.copied_bytes += bytes;
                progress.advance(bytes);
            }
            Err(e) => {
                progress.fail(e.to_string());
                return Err(e);
            }
        }
        progress.finish();
    }
    report.wal_objects = copy_wal(repo, &to.repo).await?;
    report.points = copy_points(repo, &to.repo).await?;
    report.elapsed_ms = crate::ops::elapsed_ms(started);
    Ok(report)
}
