//! Restore drills: a test restore of a backup into a scratch target with the kind's and the
//! user's checks, timed (the measured RTO), with the age of the newest recoverable point
//! (the measured RPO), compared with the objectives, and recorded in the repository under
//! `verifications/<source>/<backup id>/<time>.json` so that reports can show the history.
//!
//! Failed backups are recorded too (`failures/<source>/<id>.json`, by
//! [`Repository::backup`]), so that a report can give the backup success rate.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::check_name;
use crate::pipeline::BackupReader;
use crate::repository::Repository;
use crate::retention::span;
use crate::store::{create_object, delete_object, get_object, list_objects};
use crate::traits::{Verify, VerifyLevel};

const DRILLS_DIR: &str = "verifications";
const FAILURES_DIR: &str = "failures";

/// Recovery objectives of a source: how long a recovery may take, how much may be lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    /// Recovery time objective (`15m`, `1h`).
    #[serde(default, with = "span", skip_serializing_if = "Option::is_none")]
    pub rto: Option<Duration>,
    /// Recovery point objective (`5m`, `24h`).
    #[serde(default, with = "span", skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Duration>,
    /// How often a drill must run (`30d` for the seeds' monthly test); `dr status` reports
    /// a source whose newest drill is older (a failed newest drill is reported either way).
    #[serde(default, with = "span", skip_serializing_if = "Option::is_none")]
    pub drill_every: Option<Duration>,
}

/// One drill's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// Source name.
    pub source: String,
    /// The backup's kind.
    pub kind: String,
    /// The backup restored.
    pub backup_id: String,
    /// The recovery point the backup belongs to, when the drill restored a point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_id: Option<String>,
    /// When the drill started.
    pub started_at: DateTime<Utc>,
    /// Whether the restore and every check succeeded.
    pub ok: bool,
    /// Measured time to recover: fetch, decode, restore and checks, in milliseconds.
    pub rto_ms: u64,
    /// The newest moment one could recover to when the drill started (the backup's end,
    /// or for PostgreSQL with a WAL archive, the newest archived WAL).
    pub recoverable_until: DateTime<Utc>,
    /// Measured data loss had the disaster struck when the drill started: its start minus
    /// `recoverable_until`, in seconds (negative when the clocks disagree).
    pub rpo_s: f64,
    /// The objectives in force.
    pub objectives: Objectives,
    /// Checks that passed.
    pub passed: Vec<String>,
    /// What failed (empty when `ok`).
    pub problems: Vec<String>,
}

impl DrillRecord {
    /// Whether the measured RTO is within the objective (`None`: no objective). Only a
    /// measurement meets an objective: a zero RTO (nothing timed) never does.
    pub fn rto_met(&self) -> Option<bool> {
        self.objectives
            .rto
            .map(|rto| self.rto_ms > 0 && u128::from(self.rto_ms) <= rto.as_millis())
    }

    /// Whether the measured RPO is within the objective (`None`: no objective). A zero,
    /// negative (a recoverable moment after the drill's start: clocks disagree) or
    /// non-finite RPO is not a measurement and never meets it.
    pub fn rpo_met(&self) -> Option<bool> {
        self.objectives.rpo.map(|rpo| {
            self.rpo_s.is_finite() && self.rpo_s > 0.0 && self.rpo_s <= rpo.as_secs_f64()
        })
    }

    /// Succeeded and met every objective it has.
    pub fn passed(&self) -> bool {
        self.ok && self.rto_met() != Some(false) && self.rpo_met() != Some(false)
    }
}

/// A backup that failed, as recorded by [`Repository::backup`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFailure {
    /// Source name.
    pub source: String,
    /// The id the backup would have had.
    pub id: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// What went wrong.
    pub error: String,
}

/// What a drill is given besides the backup.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DrillOptions {
    /// The objectives to compare with.
    pub objectives: Objectives,
    /// The newest recoverable moment when it is later than the backup's end (a WAL
    /// archive); the backup's `finished_at` otherwise.
    pub recoverable_until: Option<DateTime<Utc>>,
    /// The recovery point being drilled.
    pub point_id: Option<String>,
}

impl DrillOptions {
    /// Options comparing with `objectives`.
    pub fn new(objectives: Objectives) -> Self {
        DrillOptions {
            objectives,
            ..DrillOptions::default()
        }
    }

    /// The newest recoverable moment (for a WAL archive reaching past the backup).
    pub fn with_recoverable_until(mut self, until: Option<DateTime<Utc>>) -> Self {
        self.recoverable_until = until;
        self
    }

    /// The recovery point being drilled.
    pub fn with_point(mut self, point_id: Option<String>) -> Self {
        self.point_id = point_id;
        self
    }
}

/// Runs one drill: `verifier` test-restores `backup` into a scratch target (the
/// [`VerifyLevel::Restore`] contract: nothing of the live data is touched, nothing is left
/// behind), timed; then records the result in the repository.
///
/// A failed restore or check is a drill that did not pass, not an error.
///
/// # Errors
/// [`Error::Store`] when the record cannot be written.
pub async fn run_drill(
    repo: &Repository,
    backup: &BackupReader,
    verifier: &dyn Verify,
    options: &DrillOptions,
) -> Result<DrillRecord> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let outcome = verifier.verify(backup, VerifyLevel::Restore).await;
    // Rounded up: a measured sub-millisecond drill is 1 ms, only no measurement is 0.
    let rto_ms = u64::try_from(clock.elapsed().as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
    let (passed, problems) = match outcome {
        Ok(report) => drill_findings(report),
        Err(e) => (Vec::new(), vec![format!("the test restore failed: {e}")]),
    };
    let record = drill_record(backup, options, started_at, rto_ms, passed, problems);
    repo.record_drill(&record).await?;
    Ok(record)
}

/// Records a drill that could not even be prepared (say, its RPO probe could not be
/// written): failed with `problem`, nothing restored, no RTO measured.
///
/// # Errors
/// [`Error::Store`] when the record cannot be written.
pub async fn record_unprepared_drill(
    repo: &Repository,
    backup: &BackupReader,
    problem: String,
    options: &DrillOptions,
) -> Result<DrillRecord> {
    let record = drill_record(backup, options, Utc::now(), 0, Vec::new(), vec![problem]);
    repo.record_drill(&record).await?;
    Ok(record)
}

fn drill_record(
    backup: &BackupReader,
    options: &DrillOptions,
    started_at: DateTime<Utc>,
    rto_ms: u64,
    passed: Vec<String>,
    problems: Vec<String>,
) -> DrillRecord {
    let manifest = backup.manifest();
    let recoverable_until = options
        .recoverable_until
        .unwrap_or(manifest.finished_at)
        .max(manifest.finished_at);
    DrillRecord {
        source: manifest.source.clone(),
        kind: manifest.kind.clone(),
        backup_id: manifest.id.clone(),
        point_id: options.point_id.clone(),
        started_at,
        ok: problems.is_empty(),
        rto_ms,
        recoverable_until,
        // Not clamped: a negative figure says the clocks disagree, and meets no objective.
        rpo_s: (started_at - recoverable_until)
            .num_microseconds()
            .map_or(f64::INFINITY, |us| us as f64 / 1e6),
        objectives: options.objectives,
        passed,
        problems,
    }
}

/// What a drill records of a verification: a verification that did not reach the restore
/// level (no test restore for the kind) is a drill that did not pass, as nothing was
/// restored and no RTO measured.
fn drill_findings(report: crate::traits::VerifyReport) -> (Vec<String>, Vec<String>) {
    let mut problems: Vec<String> = report.problems.into_iter().map(|p| p.message).collect();
    if problems.is_empty() && report.level_performed < VerifyLevel::Restore {
        problems.push(format!(
            "nothing was restored ({}): the drill measures no recovery",
            report.notes.join("; ")
        ));
    }
    let mut passed = report.passed;
    passed.extend(report.notes.into_iter().map(|n| format!("note: {n}")));
    (passed, problems)
}

impl Repository {
    /// Writes a drill's record.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn record_drill(&self, record: &DrillRecord) -> Result<()> {
        check_name("source name", &record.source)?;
        check_name("backup id", &record.backup_id)?;
        let key = Path::from(DRILLS_DIR)
            .join(record.source.as_str())
            .join(record.backup_id.as_str())
            .join(format!(
                "{}-{:04x}.json",
                record.started_at.format("%Y%m%dT%H%M%S%.3fZ"),
                rand::random::<u16>()
            ));
        let mut sealed = record.clone();
        sealed.passed = record.passed.iter().map(|t| self.seal_text(t)).collect();
        sealed.problems = record.problems.iter().map(|t| self.seal_text(t)).collect();
        create_object(self.store().as_ref(), &key, to_json(&sealed)?).await
    }

    /// Every recorded drill (of one source, or all), oldest first.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn drills(&self, source: Option<&str>) -> Result<Vec<DrillRecord>> {
        let mut drills: Vec<DrillRecord> = self.read_records(DRILLS_DIR, source).await?;
        for drill in &mut drills {
            for text in drill.passed.iter_mut().chain(drill.problems.iter_mut()) {
                *text = self.unseal_text(text);
            }
        }
        drills.sort_by_key(|d| d.started_at);
        Ok(drills)
    }

    /// Records a failed backup (best effort: the store may be what failed).
    pub(crate) async fn record_failure(&self, failure: &BackupFailure) {
        let key = Path::from(FAILURES_DIR)
            .join(failure.source.as_str())
            .join(format!("{}.json", failure.id));
        let sealed = BackupFailure {
            error: self.seal_text(&failure.error),
            ..failure.clone()
        };
        let written = match to_json(&sealed) {
            Ok(json) => create_object(self.store().as_ref(), &key, json).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::warn!(source = %failure.source, error = %e, "could not record the failed backup");
        }
    }

    /// Every recorded backup failure (of one source, or all), oldest first.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn backup_failures(&self, source: Option<&str>) -> Result<Vec<BackupFailure>> {
        let mut failures: Vec<BackupFailure> = self.read_records(FAILURES_DIR, source).await?;
        for failure in &mut failures {
            failure.error = self.unseal_text(&failure.error);
        }
        failures.sort_by_key(|f| f.started_at);
        Ok(failures)
    }

    /// Deletes the records of these failed backups (prune's bound on failure records).
    ///
    /// # Errors
    /// [`Error::Store`]; what was deleted before stays deleted.
    pub async fn forget_backup_failures(&self, failures: &[BackupFailure]) -> Result<()> {
        for failure in failures {
            let key = Path::from(FAILURES_DIR)
                .join(failure.source.as_str())
                .join(format!("{}.json", failure.id));
            delete_object(self.store().as_ref(), &key).await?;
        }
        Ok(())
    }

    async fn read_records<T: serde::de::DeserializeOwned>(
        &self,
        dir: &str,
        source: Option<&str>,
    ) -> Result<Vec<T>> {
        let prefix = match source {
            Some(s) => Path::from(dir).join(s),
            None => Path::from(dir),
        };
        let store = self.store().as_ref();
        let mut records = Vec::new();
        for meta in list_objects(store, &prefix).await? {
            let bytes = get_object(store, &meta.location).await?;
            match serde_json::from_slice(&bytes) {
                Ok(record) => records.push(record),
                Err(e) => {
                    tracing::warn!(key = %meta.location, error = %e, "skipping unreadable record")
                }
            }
        }
        Ok(records)
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| Error::Usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(rto_ms: u64, rpo_s: f64) -> DrillRecord {
        DrillRecord {
            source: "db".into(),
            kind: "postgres".into(),
            backup_id: "b".into(),
            point_id: None,
            started_at: Utc::now(),
            ok: true,
            rto_ms,
            recoverable_until: Utc::now(),
            rpo_s,
            objectives: Objectives {
                rto: Some(Duration::from_secs(60)),
                rpo: Some(Duration::from_secs(60)),
                drill_every: None,
            },
            passed: Vec::new(),
            problems: Vec::new(),
        }
    }

    #[test]
    fn only_a_measurement_meets_an_objective() {
        assert_eq!(record(1500, 12.5).rto_met(), Some(true));
        assert_eq!(record(1500, 12.5).rpo_met(), Some(true));
        assert!(record(1500, 12.5).passed());
        assert_eq!(record(0, 12.5).rto_met(), Some(false), "nothing timed");
        assert_eq!(record(1500, 0.0).rpo_met(), Some(false), "zero");
        assert_eq!(record(1500, -3.0).rpo_met(), Some(false), "negative");
        assert_eq!(
            record(1500, f64::NAN).rpo_met(),
            Some(false),
            "not a number"
        );
        assert_eq!(record(1500, f64::INFINITY).rpo_met(), Some(false));
        assert_eq!(record(61_000, 12.5).rto_met(), Some(false), "too slow");
        assert!(!record(1500, -3.0).passed());
        let mut none = record(0, -1.0);
        none.objectives = Objectives::default();
        assert_eq!(
            (none.rto_met(), none.rpo_met()),
            (None, None),
            "no objective"
        );
    }
}
