//! The `list` operation: the committed backups (newest first, beside them the ones whose
//! manifest cannot be read), the recovery points with their problems, and the window each
//! continuous archive lets one recover to; and `show`, one backup's manifest.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::listing::{Listing, UnreadableBackup};
use crate::manifest::Manifest;
use crate::ops::System;
use crate::points::RecoveryPoint;
use crate::progress::{Operation, ProgressHandle, Scope};
use crate::registry::ArchiveWindow;
use crate::repository::Repository;
use crate::traits::VerifyLevel;

/// Another repository whose holdings are compared with this one (a configured copy).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyRepository {
    /// How reports name it (credentials redacted).
    pub name: String,
    /// The repository, or `None` when it could not be opened.
    pub repo: Option<Repository>,
}

impl CopyRepository {
    /// The copy `repo`, shown as `name` (redacted).
    pub fn opened(name: &str, repo: Repository) -> Self {
        CopyRepository {
            name: crate::redact_url(name),
            repo: Some(repo),
        }
    }

    /// A copy at `name` that could not be opened.
    pub fn unreadable(name: &str) -> Self {
        CopyRepository {
            name: crate::redact_url(name),
            repo: None,
        }
    }

    /// The ids of the backups it holds (of `source`, or all); `None` when it cannot be read.
    pub(crate) async fn ids(&self, source: Option<&str>) -> Option<Vec<String>> {
        let listing = self.repo.as_ref()?.list(source).await.ok()?;
        Some(listing.backups.into_iter().map(|m| m.id).collect())
    }
}

/// What to list.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListOptions {
    /// Only this source's backups.
    pub source: Option<String>,
    /// Also the recovery points and their problems.
    pub points: bool,
    /// Also the windows of the continuous archives (default).
    pub windows: bool,
    /// Copies to say, per backup, whether they hold it.
    pub copies: Vec<CopyRepository>,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            source: None,
            points: false,
            windows: true,
            copies: Vec::new(),
        }
    }
}

impl ListOptions {
    /// Only the backups of `source` (`None`: all).
    pub fn with_source(mut self, source: Option<String>) -> Self {
        self.source = source;
        self
    }

    /// With the recovery points.
    pub fn with_points(mut self, points: bool) -> Self {
        self.points = points;
        self
    }

    /// With (or without) the archive windows.
    pub fn with_windows(mut self, windows: bool) -> Self {
        self.windows = windows;
        self
    }

    /// Compared with `copies`.
    pub fn with_copies(mut self, copies: Vec<CopyRepository>) -> Self {
        self.copies = copies;
        self
    }
}

/// One committed backup as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListedBackup {
    /// Source name.
    pub source: String,
    /// Backup id.
    pub id: String,
    /// Manifest kind (`UNREADABLE` when the manifest cannot be read).
    pub kind: String,
    /// When it started (for an unreadable manifest: from its id).
    pub started_at: DateTime<Utc>,
    /// When it finished (`None` for an unreadable manifest).
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Plain size.
    pub plain_bytes: u64,
    /// Stored (compressed, encrypted) size.
    pub stored_bytes: u64,
    /// Its labels.
    pub labels: Vec<String>,
    /// The backups it needs (an incremental backup's parent).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Whether it depends on another backup.
    #[serde(default)]
    pub incremental: bool,
    /// Per configured copy, whether it holds this backup (`null`: the copy cannot be read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<Option<bool>>,
    /// Why the manifest of this committed backup cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl ListedBackup {
    fn of(m: &Manifest) -> Self {
        ListedBackup {
            source: m.source.clone(),
            id: m.id.clone(),
            kind: m.kind.clone(),
            started_at: m.started_at,
            finished_at: Some(m.finished_at),
            plain_bytes: m.plain_size(),
            stored_bytes: m.stored_size(),
            labels: m.labels.clone(),
            depends_on: m.depends_on.clone(),
            incremental: !m.depends_on.is_empty(),
            copies: Vec::new(),
            problem: None,
        }
    }

    /// A backup whose manifest cannot be read: its time from its id.
    fn unreadable(u: &UnreadableBackup) -> Self {
        let started_at =
            u.id.get(..16)
                .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ").ok())
                .map(|t| t.and_utc())
                .unwrap_or_default();
        ListedBackup {
            source: u.source.clone(),
            id: u.id.clone(),
            kind: "UNREADABLE".into(),
            started_at,
            finished_at: None,
            plain_bytes: 0,
            stored_bytes: 0,
            labels: Vec::new(),
            depends_on: Vec::new(),
            incremental: false,
            copies: Vec::new(),
            problem: Some(u.error.clone()),
        }
    }
}

/// What `list` found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListReport {
    /// The source asked for, if any.
    pub source: Option<String>,
    /// Committed backups, newest first (unreadable ones among them, by the time of their id).
    pub backups: Vec<ListedBackup>,
    /// The committed backups whose manifest cannot be read.
    pub unreadable: Vec<UnreadableBackup>,
    /// Per source with a continuous archive: the window one can recover to.
    pub windows: Vec<ArchiveWindow>,
    /// The recovery points, newest first (when asked for).
    pub points: Vec<RecoveryPoint>,
    /// What is wrong with the recovery point records (when points were asked for).
    pub point_problems: Vec<String>,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// Lists what `options` asks for.
///
/// # Errors
/// [`Error::BackupNotFound`] when `options.source` is neither configured nor in the
/// repository; a store error while listing.
pub async fn list(
    repo: &Repository,
    system: &System,
    options: &ListOptions,
    progress: &ProgressHandle,
) -> Result<ListReport> {
    let started = Instant::now();
    let progress = progress.narrowed(|_| Scope::of(Operation::List));
    progress.start("list", None);
    let source = options.source.as_deref();
    let listing = repo.list(source).await?;
    if let Some(name) = source.filter(|s| listing.is_empty() && system.get(s).is_none()) {
        return Err(unknown_source(repo, system, name).await);
    }
    let mut report = ListReport {
        source: options.source.clone(),
        backups: listed_backups(&listing, options, source).await,
        unreadable: listing.unreadable.clone(),
        ..ListReport::default()
    };
    if options.windows {
        report.windows = archive_windows(repo, system, &listing.backups).await;
    }
    if options.points {
        let points = repo.points().await?;
        let all = if source.is_some() {
            repo.list(None).await?
        } else {
            listing
        };
        report.point_problems = crate::ops::prune::point_problems(&points, &all);
        report.points = points.points;
    }
    report.elapsed_ms = crate::ops::elapsed_ms(started);
    progress.finish();
    Ok(report)
}

/// The rows: readable and unreadable backups, newest first, each with the copies holding it.
async fn listed_backups(
    listing: &Listing,
    options: &ListOptions,
    source: Option<&str>,
) -> Vec<ListedBackup> {
    let mut copies = Vec::new();
    for copy in &options.copies {
        copies.push(copy.ids(source).await);
    }
    let mut rows: Vec<ListedBackup> = listing
        .backups
        .iter()
        .map(|m| {
            let mut row = ListedBackup::of(m);
            row.copies = copies
                .iter()
                .map(|ids| ids.as_ref().map(|ids| ids.contains(&m.id)))
                .collect();
            row
        })
        .collect();
    rows.extend(listing.unreadable.iter().map(ListedBackup::unreadable));
    rows.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    rows
}

/// Names what exists when `name` is neither configured nor has backups.
async fn unknown_source(repo: &Repository, system: &System, name: &str) -> Error {
    let mut known: Vec<String> = system.sources().map(|s| s.name.clone()).collect();
    if let Ok(listing) = repo.list(None).await {
        let listed = listing.backups.iter().map(|m| &m.source);
        known.extend(
            listed
                .chain(listing.unreadable.iter().map(|u| &u.source))
                .cloned(),
        );
    }
    known.sort();
    known.dedup();
    Error::BackupNotFound {
        selector: format!(
            "source {name:?}, which is neither configured nor in the repository (known: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ),
    }
}

/// The window of each source's continuous archive, through the registry: per source and
/// kind with an archive, its backups checked at quick level. An archive that cannot be
/// checked has a window holding that problem.
pub(crate) async fn archive_windows(
    repo: &Repository,
    system: &System,
    manifests: &[Manifest],
) -> Vec<ArchiveWindow> {
    let mut by_source: BTreeMap<(&str, &str), Vec<Manifest>> = BTreeMap::new();
    for m in manifests {
        if system.registry().archive(&m.kind).is_some() {
            by_source
                .entry((m.source.as_str(), m.kind.as_str()))
                .or_default()
                .push(m.clone());
        }
    }
    let mut windows = Vec::new();
    for ((source, kind), backups) in by_source {
        let Some(archive) = system.registry().archive(kind) else {
            continue;
        };
        match archive
            .check(repo, source, &backups, VerifyLevel::Quick)
            .await
        {
            Ok(findings) => windows.extend(ArchiveWindow::from_findings(source, &findings)),
            Err(e) => windows.push(ArchiveWindow::unchecked(
                source,
                format!("the archive of {source} cannot be checked: {e}"),
            )),
        }
    }
    windows
}

/// The manifest of backup `id` (of any source).
///
/// # Errors
/// [`Error::UnreadableManifest`] when it is committed but its manifest cannot be read;
/// [`Error::BackupNotFound`] when no backup has that id; a store error while listing.
pub async fn show(repo: &Repository, id: &str) -> Result<Manifest> {
    let listing = repo.list(None).await?;
    if let Some(u) = listing.unreadable.iter().find(|u| u.id == id) {
        return Err(Error::UnreadableManifest {
            key: u.key.clone(),
            detail: u.error.clone(),
            instead:
                "its parts are kept; run `dr verify` and see FORMAT.md to recover them by hand"
                    .into(),
        });
    }
    listing
        .backups
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| Error::BackupNotFound {
            selector: format!("id {id}"),
        })
}
