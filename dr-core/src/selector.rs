//! Choosing one backup: by id, the newest, or the newest at or before a time.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// Which backup of a source to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupSelector {
    /// Exactly this id.
    Id(String),
    /// The newest committed backup.
    Latest,
    /// The newest backup that started at or before this time.
    AtOrBefore(DateTime<Utc>),
}

impl BackupSelector {
    /// Picks from manifests sorted newest first (as [`crate::Repository::list`] returns them).
    pub fn pick<'a>(&self, newest_first: &'a [Manifest]) -> Option<&'a Manifest> {
        match self {
            BackupSelector::Id(id) => newest_first.iter().find(|m| &m.id == id),
            BackupSelector::Latest => newest_first.first(),
            BackupSelector::AtOrBefore(t) => newest_first.iter().find(|m| m.started_at <= *t),
        }
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
