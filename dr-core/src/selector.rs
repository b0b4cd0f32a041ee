//! Choosing one backup: by id, the newest, or the newest at or before a time.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// Which backup of a source to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupSelector {
    /// Exactly this id.
    Id(String),
    /// The newest committed backup that is not a restore's safety backup
    /// ([`crate::SAFETY_LABEL`]).
    Latest,
    /// The newest backup that started at or before this time, safety backups passed over.
    AtOrBefore(DateTime<Utc>),
}

impl BackupSelector {
    /// Picks from manifests sorted newest first (as [`crate::Repository::list`] returns them).
    /// Only [`BackupSelector::Id`] picks a safety backup.
    pub fn pick<'a>(&self, newest_first: &'a [Manifest]) -> Option<&'a Manifest> {
        let mut regular = newest_first.iter().filter(|m| !m.is_safety_backup());
        match self {
            BackupSelector::Id(id) => newest_first.iter().find(|m| &m.id == id),
            BackupSelector::Latest => regular.next(),
            BackupSelector::AtOrBefore(t) => regular.find(|m| m.started_at <= *t),
        }
    }

    /// The safety backups newer than what this selector picks (or all, when it picks none):
    /// what a user asking for "latest" may have meant, named in messages.
    pub fn passed_over<'a>(&self, newest_first: &'a [Manifest]) -> Vec<&'a Manifest> {
        if matches!(self, BackupSelector::Id(_)) {
            return Vec::new();
        }
        let picked = self.pick(newest_first).map(|m| m.started_at);
        newest_first
            .iter()
            .filter(|m| m.is_safety_backup())
            .filter(|m| picked.is_none_or(|p| m.started_at >= p))
            .filter(|m| match self {
                BackupSelector::AtOrBefore(t) => m.started_at <= *t,
                _ => true,
            })
            .collect()
    }
}

impl std::str::FromStr for BackupSelector {
    type Err = Error;

    /// `latest`, an RFC 3339 time (`2026-11-23T12:30:00Z`), or a backup id.
    fn from_str(s: &str) -> Result<Self> {
        if s == "latest" {
            return Ok(BackupSelector::Latest);
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(BackupSelector::AtOrBefore(t.with_timezone(&Utc)));
        }
        crate::manifest::check_name("backup id", s)?;
        Ok(BackupSelector::Id(s.to_owned()))
    }
}

impl std::fmt::Display for BackupSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupSelector::Id(id) => write!(f, "backup {id}"),
            BackupSelector::Latest => write!(f, "latest backup"),
            BackupSelector::AtOrBefore(t) => {
                write!(f, "newest backup at or before {}", t.to_rfc3339())
            }
        }
    }
}
