//! `verify`: the latest backup of each source (or one backup, or one source's latest) checked
//! at a level, with the backups it depends on and its continuous archive; beside them every
//! backup whose manifest is unreadable or missing, and the recovery point records.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::listing::UnreadableBackup;
use crate::manifest::Manifest;
use crate::ops::System;
use crate::progress::{Operation, ProgressHandle, Scope};
use crate::repository::Repository;
use crate::traits::{Verify, VerifyLevel, VerifyReport};
use crate::verify::{ChecksumsOnly, ProblemKind, VerifyProblem};

/// What to verify and how deep.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// A backup id or a source name; `None`: the latest backup of every source, and the
    /// recovery point records.
    pub target: Option<String>,
    /// How deep.
    pub level: VerifyLevel,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            target: None,
            level: VerifyLevel::Checksums,
        }
    }
}

impl VerifyOptions {
    /// Verifies backup id or source `target` (`None`: all).
    pub fn with_target(mut self, target: Option<String>) -> Self {
        self.target = target;
        self
    }

    /// At `level`.
    pub fn with_level(mut self, level: VerifyLevel) -> Self {
        self.level = level;
        self
    }
}

/// What one entry of a verify run is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Subject {
    /// A committed backup that was checked.
    Backup,
    /// A committed backup whose manifest cannot be read.
    UnreadableManifest,
    /// A backup directory with `SHA256SUMS` but no manifest.
    Headless,
    /// A recovery point record.
    RecoveryPoint,
}

/// One entry of a verify run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VerifyEntry {
    /// What the entry is about.
    pub subject: Subject,
    /// The source, when known.
    pub source: Option<String>,
    /// The manifest kind, when known.
    pub kind: Option<String>,
    /// What was found.
    pub report: VerifyReport,
}

/// What a verify run found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VerifyRunReport {
    /// The level asked for.
    pub level_requested: VerifyLevel,
    /// Every backup, record and directory checked, in order.
    pub entries: Vec<VerifyEntry>,
    /// The repository's recipients differ from the pinned ones.
    pub recipients_problem: Option<VerifyProblem>,
    /// Wall time.
    pub elapsed_ms: u64,
}

impl VerifyRunReport {
    /// The entries with a problem.
    pub fn failed(&self) -> impl Iterator<Item = &VerifyEntry> {
        self.entries.iter().filter(|e| !e.report.is_ok())
    }

    /// Whether nothing has a problem.
    pub fn is_ok(&self) -> bool {
        self.recipients_problem.is_none() && self.failed().next().is_none()
    }

    /// Whether every problem is a failed user check (the backups themselves are intact).
    pub fn only_user_checks_failed(&self) -> bool {
        !self.is_ok()
            && self.recipients_problem.is_none()
            && self.failed().all(|e| e.report.only_user_checks_failed())
    }
}

/// Verifies what `options` selects.
///
/// # Errors
/// [`Error::NoMatchingIdentity`] when identities are loaded but none is a recipient of the
/// repository; [`Error::BackupNotFound`] when the target names nothing; a verifier or store
/// error that stopped a check. Damage is never an error: it is in the report.
pub async fn verify(
    repo: &Repository,
    system: &System,
    options: &VerifyOptions,
    progress: &ProgressHandle,
) -> Result<VerifyRunReport> {
    let started = Instant::now();
    repo.check_identities()?;
    let progress = progress.narrowed(|mut s: Scope| {
        s.operation = Some(Operation::Verify);
        s
    });
    let target = options.target.as_deref();
    let headless = headless(repo, target).await?;
    let (chosen, unreadable) = choose(repo, target).await?;
    if chosen.is_empty() && unreadable.is_empty() && headless.is_empty() {
        return Err(Error::BackupNotFound {
            selector: match target {
                Some(t) => format!("backup id or source {t}"),
                None => "any source (the repository holds no backups yet)".into(),
            },
        });
    }
    let archives = archive_findings(repo, system, &chosen, options.level).await;
    let mut entries = Vec::new();
    for manifest in chosen {
        let scope =
            progress.narrowed(|s| s.with_source(&manifest.source).with_backup(&manifest.id));
        scope.start("verify", None);
        let entry = verify_backup_entry(repo, system, manifest, options.level, &archives).await;
        match &entry {
            Ok(_) => scope.finish(),
            Err(e) => scope.fail(e.to_string()),
        }
        entries.push(entry?);
    }
    entries.extend(unreadable.iter().map(unreadable_entry));
    entries.extend(headless.iter().map(|dir| headless_entry(dir)));
    if target.is_none() {
        entries.extend(point_entries(repo).await?);
    }
    let recipients_problem = repo
        .check_pinned_recipients()
        .err()
        .map(|e| VerifyProblem::from_error(&e, ProblemKind::Recipients));
    Ok(VerifyRunReport {
        level_requested: options.level,
        entries,
        recipients_problem,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// The verifier of `manifest`: its configured source's, else its kind's, else checksums.
///
/// # Errors
/// A configured source whose settings are wrong.
pub fn verifier_for(
    repo: &Repository,
    system: &System,
    manifest: &Manifest,
) -> Result<Box<dyn Verify>> {
    if let Some(configured) = system
        .get(&manifest.source)
        .filter(|c| c.source.kind() == manifest.kind)
    {
        return configured.source.verifier(repo);
    }
    Ok(system
        .kind(&manifest.kind)
        .and_then(|k| k.verifier(repo))
        .unwrap_or_else(|| Box::new(ChecksumsOnly)))
}

async fn verify_backup_entry(
    repo: &Repository,
    system: &System,
    manifest: Manifest,
    level: VerifyLevel,
    archives: &Archives,
) -> Result<VerifyEntry> {
    let verifier = verifier_for(repo, system, &manifest)?;
    let reader = repo.reader(manifest.clone());
    let mut report = verifier.verify(&reader, level).await?;
    let chain = repo.verify_dependencies(&manifest, level).await?;
    if !manifest.depends_on.is_empty() && chain.is_empty() {
        report.passed.push(format!(
            "the backups it depends on ({}) pass the same checks",
            manifest.depends_on.join(", ")
        ));
    }
    report.problems.extend(chain);
    archives.add_to(&manifest, &mut report);
    Ok(VerifyEntry {
        subject: Subject::Backup,
        source: Some(manifest.source.clone()),
        kind: Some(manifest.kind.clone()),
        report,
    })
}

/// The archive findings of each source's chosen backups, by backup id; a source whose
/// archive cannot be checked has its reason.
#[derive(Default)]
struct Archives {
    by_backup: BTreeMap<String, crate::registry::ArchiveFindings>,
    failed_sources: BTreeMap<String, String>,
}

impl Archives {
    fn add_to(&self, manifest: &Manifest, report: &mut VerifyReport) {
        if let Some(reason) = self.failed_sources.get(&manifest.source) {
            report.add_problem(ProblemKind::Archive, reason.clone());
        }
        let Some(found) = self.by_backup.get(&manifest.id) else {
            return;
        };
        report.passed.extend(found.passed.iter().cloned());
        report.notes.extend(found.notes.iter().cloned());
        report.problems.extend(
            found
                .problems
                .iter()
                .map(|p| VerifyProblem::new(ProblemKind::Archive, p.clone())),
        );
    }
}

async fn archive_findings(
    repo: &Repository,
    system: &System,
    chosen: &[Manifest],
    level: VerifyLevel,
) -> Archives {
    let mut by_source: BTreeMap<(&str, &str), Vec<Manifest>> = BTreeMap::new();
    for m in chosen {
        by_source
            .entry((m.source.as_str(), m.kind.as_str()))
            .or_default()
            .push(m.clone());
    }
    let mut archives = Archives::default();
    for ((source, kind), backups) in by_source {
        let Some(archive) = system.registry().archive(kind) else {
            continue;
        };
        match archive.check(repo, source, &backups, level).await {
            Ok(findings) => archives
                .by_backup
                .extend(findings.into_iter().map(|f| (f.backup_id.clone(), f))),
            Err(e) => {
                archives.failed_sources.insert(
                    source.to_owned(),
                    format!("the archive of {source} cannot be checked: {e}"),
                );
            }
        }
    }
    archives
}

/// Backup directories of `target` (or all) with `SHA256SUMS` but no manifest.
async fn headless(repo: &Repository, target: Option<&str>) -> Result<Vec<String>> {
    Ok(repo
        .headless_backups()
        .await?
        .into_iter()
        .filter(|d| target.is_none_or(|t| d.split('/').any(|part| part == t)))
        .collect())
}

/// The backups to verify: one id, the latest of one source, or the latest of every source;
/// beside them the committed backups of the same selection whose manifest is unreadable.
async fn choose(
    repo: &Repository,
    target: Option<&str>,
) -> Result<(Vec<Manifest>, Vec<UnreadableBackup>)> {
    let listing = repo.list(None).await?;
    let unreadable: Vec<UnreadableBackup> = listing
        .unreadable
        .iter()
        .filter(|u| target.is_none_or(|t| t == u.id || t == u.source))
        .cloned()
        .collect();
    let all = &listing.backups;
    if let Some(m) = target.and_then(|t| all.iter().find(|m| m.id == t)) {
        return Ok((vec![m.clone()], unreadable));
    }
    let mut latest: BTreeMap<&str, &Manifest> = BTreeMap::new();
    for m in all {
        if target.is_none_or(|t| t == m.source) {
            latest.entry(m.source.as_str()).or_insert(m);
        }
    }
    Ok((latest.into_values().cloned().collect(), unreadable))
}

fn unreadable_entry(u: &UnreadableBackup) -> VerifyEntry {
    let problem = VerifyProblem::new(ProblemKind::Unreadable, u.describe()).with_object(&u.key);
    VerifyEntry {
        subject: Subject::UnreadableManifest,
        source: Some(u.source.clone()),
        kind: None,
        report: VerifyReport::failed(u.id.clone(), problem),
    }
}

fn headless_entry(dir: &str) -> VerifyEntry {
    let id = dir.rsplit('/').next().unwrap_or_default().to_owned();
    let message = format!(
        "{dir}/manifest.json is missing but {dir}/SHA256SUMS is there: the backup's manifest was deleted, or it died while committing (its parts may still decode by hand, see FORMAT.md; `dr prune` keeps them while a committed backup depends on them, and removes them as orphans otherwise)"
    );
    let problem = VerifyProblem::new(ProblemKind::Unreadable, message)
        .with_object(format!("{dir}/manifest.json"));
    VerifyEntry {
        subject: Subject::Headless,
        source: dir.split('/').rev().nth(1).map(str::to_owned),
        kind: None,
        report: VerifyReport::failed(id, problem),
    }
}

/// Each unreadable point record, and each point whose members do not match the committed
/// backups it names, is a failed entry (a member deleted by retention is not a failure).
async fn point_entries(repo: &Repository) -> Result<Vec<VerifyEntry>> {
    let points = repo.points().await?;
    let listing = repo.list(None).await?;
    let entry = |id: &str, problems: Vec<VerifyProblem>| {
        let mut report = VerifyReport::new(id, VerifyLevel::Quick);
        report.problems = problems;
        VerifyEntry {
            subject: Subject::RecoveryPoint,
            source: None,
            kind: None,
            report,
        }
    };
    let mut entries: Vec<VerifyEntry> = points
        .unreadable
        .iter()
        .map(|u| {
            let p = VerifyProblem::new(ProblemKind::Unreadable, u.describe()).with_object(&u.key);
            entry(&u.id, vec![p])
        })
        .collect();
    for point in &points.points {
        let problems = point.problems(&listing.backups);
        if !problems.is_empty() {
            let problems = problems
                .into_iter()
                .map(|p| VerifyProblem::new(ProblemKind::Dependency, p))
                .collect();
            entries.push(entry(&point.id, problems));
        }
    }
    Ok(entries)
}
