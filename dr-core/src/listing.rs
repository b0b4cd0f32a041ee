//! What a repository listing found: the committed backups it could read, and beside them
//! every committed backup whose manifest it could not read (bit rot, a newer format, a GET
//! that kept failing). An unreadable manifest is still a committed backup: callers decide
//! what it means for them, and nothing may treat its objects as orphans.

use serde::{Deserialize, Serialize};

mod cache;
pub(crate) use cache::ManifestCache;
pub use cache::{CACHE_DIR_ENV, NO_CACHE_ENV, default_cache_dir};

use crate::error::Error;
use crate::manifest::Manifest;
use crate::manifest::SAFETY_LABEL;
use crate::selector::BackupSelector;

/// A committed backup (its `manifest.json` object exists) whose manifest could not be read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnreadableBackup {
    /// Source name, from the object key.
    pub source: String,
    /// Backup id, from the object key.
    pub id: String,
    /// Key of the manifest object.
    pub key: String,
    /// What went wrong reading it.
    pub error: String,
    /// The manifest is of a format newer than this build reads (upgrade dr, do not prune).
    pub newer_format: bool,
}

impl UnreadableBackup {
    /// Describes the manifest at `key` that failed with `error`.
    pub fn new(key: &str, error: &Error) -> Self {
        let mut segments = key.split('/');
        let _backups = segments.next();
        let source = segments.next().unwrap_or_default().to_owned();
        let id = segments.next().unwrap_or_default().to_owned();
        UnreadableBackup {
            source,
            id,
            key: key.to_owned(),
            error: error.to_string(),
            newer_format: matches!(error, Error::UnsupportedFormat { .. }),
        }
    }

    /// One line for a person: what is unreadable, why, and what to do.
    pub fn describe(&self) -> String {
        let advice = if self.newer_format {
            "upgrade dr to read it; prune leaves this source alone until then"
        } else {
            "its parts are kept (prune never deletes them); run `dr verify` and see FORMAT.md to recover them by hand"
        };
        let error = if self.error.contains(&self.key) {
            self.error.clone()
        } else {
            format!("{}: {}", self.key, self.error)
        };
        format!(
            "backup {} of {} is committed but its manifest is unreadable ({error}); {advice}",
            self.id, self.source
        )
    }
}

/// The result of listing a repository: readable backups newest first, and the unreadable.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Listing {
    /// Committed backups whose manifest was read, newest first.
    pub backups: Vec<Manifest>,
    /// Committed backups whose manifest could not be read, by key.
    pub unreadable: Vec<UnreadableBackup>,
}

impl Listing {
    /// Committed backups, readable or not.
    pub fn len(&self) -> usize {
        self.backups.len() + self.unreadable.len()
    }

    /// Whether the repository (or source) holds no committed backup at all, readable or not.
    pub fn is_empty(&self) -> bool {
        self.backups.is_empty() && self.unreadable.is_empty()
    }

    /// Whether every committed backup's manifest was read.
    pub fn is_complete(&self) -> bool {
        self.unreadable.is_empty()
    }

    /// The unreadable backups of `source`.
    pub fn unreadable_of<'a>(
        &'a self,
        source: &'a str,
    ) -> impl Iterator<Item = &'a UnreadableBackup> + 'a {
        self.unreadable.iter().filter(move |u| u.source == source)
    }

    /// Whether `source` has a backup of a manifest format newer than this build.
    pub fn has_newer_format(&self, source: &str) -> bool {
        self.unreadable_of(source).any(|u| u.newer_format)
    }

    /// Picks one backup of `source`, refusing when an unreadable backup would have been the
    /// answer (it is newer than the one picked and the selector could have chosen it):
    /// restoring "latest" must never quietly mean "the latest we could read".
    ///
    /// # Errors
    /// [`Error::BackupNotFound`]; [`Error::UnreadableManifest`] as described.
    pub fn pick(&self, source: &str, selector: &BackupSelector) -> crate::Result<&Manifest> {
        let mine: Vec<Manifest> = self
            .backups
            .iter()
            .filter(|m| m.source == source)
            .cloned()
            .collect();
        let picked = selector.pick(&mine).map(|m| m.id.clone());
        let shadowing = self.unreadable_of(source).find(|u| {
            let eligible = match selector {
                BackupSelector::Id(id) => &u.id == id,
                BackupSelector::Latest => true,
                BackupSelector::AtOrBefore(t) => u.id <= t.format("%Y%m%dT%H%M%SZ~").to_string(),
            };
            // Ids sort by the second only: one of the same second may be the newer one.
            eligible
                && picked
                    .as_ref()
                    .is_none_or(|p| id_second(&u.id) >= id_second(p))
        });
        if let Some(u) = shadowing {
            return Err(Error::UnreadableManifest {
                key: u.key.clone(),
                detail: u.error.clone(),
                instead: match &picked {
                    Some(id) => {
                        format!("to restore the newest readable one instead, select it by id: {id}")
                    }
                    None => "no readable backup of this source matches instead".into(),
                },
            });
        }
        let passed_over = selector.passed_over(&mine);
        if let (Some(id), Some(safety)) = (&picked, passed_over.first()) {
            tracing::info!(
                source,
                picked = %id,
                safety_backup = %safety.id,
                "passed over newer safety backups (label {SAFETY_LABEL}): they are restored only by id"
            );
        }
        let not_found = || Error::BackupNotFound {
            selector: format!(
                "source {source}, {selector} ({}{})",
                what_exists(&mine),
                safety_note(&passed_over)
            ),
        };
        let id = picked.ok_or_else(not_found)?;
        self.backups
            .iter()
            .find(|m| m.source == source && m.id == id)
            .ok_or_else(not_found)
    }
}

/// Names the safety backups a selector passed over, for a "not found" message.
fn safety_note(passed_over: &[&Manifest]) -> String {
    let ids: Vec<&str> = passed_over.iter().map(|m| m.id.as_str()).collect();
    match ids.as_slice() {
        [] => String::new(),
        ids => format!(
            "; safety backups (label {SAFETY_LABEL}, the target as it was before a restore) are \
             restored only by id: {}",
            ids.join(", ")
        ),
    }
}

/// The time part of a backup or point id (`20261123T021500Z` of `20261123T021500Z-7f3a`):
/// ids of the same second do not sort by time.
pub(crate) fn id_second(id: &str) -> &str {
    id.split_once('-').map_or(id, |(second, _)| second)
}

/// `it has no backups` or `its 3 backups run from <oldest id> to <newest id>`.
pub(crate) fn what_exists(newest_first: &[Manifest]) -> String {
    match (newest_first.last(), newest_first.first()) {
        (Some(oldest), Some(newest)) if newest_first.len() > 1 => format!(
            "its {} backups run from {} ({}) to {} ({})",
            newest_first.len(),
            oldest.id,
            oldest.started_at.format("%Y-%m-%d %H:%M:%SZ"),
            newest.id,
            newest.started_at.format("%Y-%m-%d %H:%M:%SZ")
        ),
        (Some(only), _) => format!("its one backup is {}", only.id),
        _ => "it has no backups".into(),
    }
}
