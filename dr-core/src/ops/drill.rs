//! `drill`: the newest backup of each chosen source (or the members of a recovery point)
//! restored into a scratch target by what its [`crate::Source::drill`] prepares (or its
//! kind's verifier), with the checks; timed (the measured RTO), its RPO measured, both
//! compared with the objectives, and each drill recorded in the repository.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::drill::{self as records, DrillRecord};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::ops::System;
use crate::points::PointSelector;
use crate::progress::{Operation, ProgressHandle, Scope};
use crate::repository::Repository;
use crate::selector::BackupSelector;

/// Which backups a drill restores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DrillTarget {
    /// The chosen backup of every configured source, in restore order.
    #[default]
    All,
    /// The chosen backup of one source.
    Source(String),
    /// The chosen backup of each member of a configured group.
    Group(String),
    /// The members of a recovery point.
    Point(PointSelector),
}

/// The options of [`drill`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DrillOptions {
    /// What to drill.
    pub target: DrillTarget,
    /// Which backup of each source (ignored for a point): the newest by default.
    pub selector: BackupSelector,
}

impl Default for DrillOptions {
    fn default() -> Self {
        DrillOptions {
            target: DrillTarget::All,
            selector: BackupSelector::Latest,
        }
    }
}

impl DrillOptions {
    /// Drills `target`.
    pub fn with_target(mut self, target: DrillTarget) -> Self {
        self.target = target;
        self
    }

    /// Drills the backup `selector` picks of each source.
    pub fn with_selector(mut self, selector: BackupSelector) -> Self {
        self.selector = selector;
        self
    }
}

/// How one drill came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DrillVerdict {
    /// Restored, checked, and within every objective.
    Passed,
    /// Restored and checked, but an objective was missed.
    ObjectiveMissed,
    /// The restore or a check failed.
    Failed,
}

/// One source's drill: its record as written to the repository, and the verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DrillEntry {
    /// The record (source, backup, measured RTO and RPO, checks).
    #[serde(flatten)]
    pub record: DrillRecord,
    /// The verdict.
    pub verdict: DrillVerdict,
    /// Whether the RTO met its objective (`None`: no objective).
    pub rto_met: Option<bool>,
    /// Whether the RPO met its objective (`None`: no objective).
    pub rpo_met: Option<bool>,
}

impl From<DrillRecord> for DrillEntry {
    fn from(record: DrillRecord) -> Self {
        let verdict = match (record.ok, record.passed()) {
            (true, true) => DrillVerdict::Passed,
            (true, false) => DrillVerdict::ObjectiveMissed,
            (false, _) => DrillVerdict::Failed,
        };
        DrillEntry {
            verdict,
            rto_met: record.rto_met(),
            rpo_met: record.rpo_met(),
            record,
        }
    }
}

/// What a drill run found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DrillReport {
    /// The recovery point drilled, if one was.
    pub point_id: Option<String>,
    /// One drill per backup, in order.
    pub drills: Vec<DrillEntry>,
    /// Wall time of the whole run.
    pub elapsed_ms: u64,
}

impl DrillReport {
    /// The drills that did not pass.
    pub fn failed(&self) -> impl Iterator<Item = &DrillEntry> {
        self.drills
            .iter()
            .filter(|d| d.verdict != DrillVerdict::Passed)
    }

    /// Whether every drill passed.
    pub fn is_success(&self) -> bool {
        self.failed().next().is_none()
    }

    /// What did not pass, in one sentence; `None` when every drill passed.
    pub fn failure(&self) -> Option<String> {
        let failed: Vec<&str> = self.failed().map(|d| d.record.source.as_str()).collect();
        (!failed.is_empty()).then(|| {
            format!(
                "{} of {} drills did not pass ({}): see the problems above, fix them and drill again",
                failed.len(),
                self.drills.len(),
                failed.join(", ")
            )
        })
    }
}

/// Drills what `options` chooses, one backup after the other, recording each drill.
/// A failed restore, check or objective is in the report, not an error.
///
/// # Errors
/// [`Error::NoIdentity`] without a secret key, [`Error::NoMatchingIdentity`] when the
/// loaded keys cannot decrypt a chosen backup; [`Error::Usage`] for an unknown source or
/// group or an empty system; [`Error::BackupNotFound`] for a point that does not exist or
/// a chosen source without a backup (before anything is drilled); a drill record that
/// cannot be written.
pub async fn drill(
    repo: &Repository,
    system: &System,
    options: &DrillOptions,
    progress: &ProgressHandle,
) -> Result<DrillReport> {
    let started = Instant::now();
    if repo.identities().is_empty() {
        return Err(Error::NoIdentity);
    }
    let (chosen, point_id) = choose(repo, system, options).await?;
    // A key that cannot decrypt a chosen backup is the operator's mistake, not a failed
    // drill: say so before anything is restored or recorded.
    for manifest in &chosen {
        repo.check_identities_for(manifest)?;
    }
    let mut drills = Vec::new();
    for manifest in chosen {
        let scope = progress.narrowed(|_| {
            Scope::of(Operation::Drill)
                .with_source(&manifest.source)
                .with_backup(&manifest.id)
        });
        scope.start("drill", None);
        let record = drill_one(repo, system, manifest, point_id.clone(), &scope).await;
        match &record {
            Ok(r) if r.ok => scope.finish(),
            Ok(r) => scope.fail(r.problems.join("; ")),
            Err(e) => scope.fail(e.to_string()),
        }
        drills.push(DrillEntry::from(record?));
    }
    Ok(DrillReport {
        point_id,
        drills,
        elapsed_ms: crate::ops::elapsed_ms(started),
    })
}

/// Prepares the drill through the configured source (or the kind's verifier) and runs it.
async fn drill_one(
    repo: &Repository,
    system: &System,
    manifest: Manifest,
    point_id: Option<String>,
    progress: &ProgressHandle,
) -> Result<DrillRecord> {
    let source = manifest.source.clone();
    let reader = repo.reader(manifest).with_progress(progress.clone());
    let mut options =
        records::DrillOptions::new(system.objectives_for(&source)).with_point(point_id);
    let configured = system
        .get(&source)
        .filter(|c| c.source.kind() == reader.manifest().kind);
    let setup = match configured {
        Some(c) => c.source.drill(repo, &reader).await,
        None => crate::ops::verify::verifier_for(repo, system, reader.manifest())
            .map(|v| crate::registry::DrillSetup::new(v, None)),
    };
    match setup {
        Ok(setup) => {
            options = options.with_recoverable_until(setup.recoverable_until);
            records::run_drill(repo, &reader, setup.verifier.as_ref(), &options).await
        }
        Err(e) => {
            tracing::warn!(source = %source, error = %e, "the drill could not be prepared");
            let problem = format!("the drill could not be prepared: {e}");
            records::record_unprepared_drill(repo, &reader, problem, &options).await
        }
    }
}

/// The backups to drill, and the point they belong to.
async fn choose(
    repo: &Repository,
    system: &System,
    options: &DrillOptions,
) -> Result<(Vec<Manifest>, Option<String>)> {
    let all = repo.list(None).await?.backups;
    let names = match &options.target {
        DrillTarget::Point(selector) => {
            let point = repo.find_point(selector).await?;
            let members = point
                .members
                .iter()
                .filter_map(|m| {
                    all.iter()
                        .find(|b| b.id == m.backup_id && b.source == m.source)
                })
                .cloned()
                .collect();
            return Ok((members, Some(point.id)));
        }
        // A source that is no longer configured is drilled by its kind's support.
        DrillTarget::Source(name) => vec![name.clone()],
        DrillTarget::Group(group) => system.group_sources(group)?,
        DrillTarget::All => system.group_sources("all")?,
    };
    if names.is_empty() {
        return Err(Error::Usage(
            "no sources configured: add [sources.NAME] to dr.toml".into(),
        ));
    }
    let mut chosen = Vec::new();
    for name in &names {
        let of_source: Vec<Manifest> = all.iter().filter(|m| &m.source == name).cloned().collect();
        if of_source.is_empty() && system.get(name).is_none() {
            // Neither configured nor in the repository: a typo, not a missing backup.
            system.source(name)?;
        }
        let picked = options
            .selector
            .pick(&of_source)
            .ok_or_else(|| Error::BackupNotFound {
                selector: format!("source {name} to drill (run `dr backup {name}` first)"),
            })?;
        chosen.push(picked.clone());
    }
    Ok((chosen, None))
}
