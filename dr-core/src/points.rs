//! Recovery points: backups of several sources taken together under one id and restored
//! together (the seeds' "full system recovery": database, cache, files, configuration).
//!
//! A point is one JSON object, `points/<id>.json`, written with `PutMode::Create` after
//! every member backup has committed. It names its members; it holds no secrets and no
//! data, so `list` and `prune` read it with public keys only.

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::{Manifest, check_name};
use crate::repository::{Repository, new_backup_id};
use crate::store::{create_object, delete_object, get_object, list_objects};

const POINTS_DIR: &str = "points";

/// One backup of a recovery point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointMember {
    /// Source name.
    pub source: String,
    /// The member backup's id.
    pub backup_id: String,
    /// The backup's kind (`sqlite`, `postgres.logical`, ...).
    pub kind: String,
    /// When the member backup finished.
    pub finished_at: DateTime<Utc>,
}

impl From<&Manifest> for PointMember {
    fn from(m: &Manifest) -> Self {
        PointMember {
            source: m.source.clone(),
            backup_id: m.id.clone(),
            kind: m.kind.clone(),
            finished_at: m.finished_at,
        }
    }
}

/// A source whose backup failed while a point was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedMember {
    /// Source name.
    pub source: String,
    /// What went wrong (credentials already redacted).
    pub error: String,
}

/// A recovery point: the backups of a group of sources taken together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    /// Id, sorting by time like backup ids: `20261123T021500Z-7f3a`.
    pub id: String,
    /// The group of sources (`all`, or a group named in the configuration).
    pub group: String,
    /// When the first member backup started.
    pub started_at: DateTime<Utc>,
    /// When the point was recorded (after its last member committed).
    pub created_at: DateTime<Utc>,
    /// Member backups, in the order they are restored.
    pub members: Vec<PointMember>,
    /// Sources whose backup failed: a point with failures is incomplete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedMember>,
    /// Labels given to the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

impl RecoveryPoint {
    /// Whether every source of the group was backed up.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && !self.members.is_empty()
    }

    /// The member backup of `source`, if the point has one.
    pub fn member(&self, source: &str) -> Option<&PointMember> {
        self.members.iter().find(|m| m.source == source)
    }

    /// The backup ids of the point's members.
    pub fn backup_ids(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.backup_id.as_str())
    }
}

/// Which point: an id, or the newest complete one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointSelector {
    /// The newest point whose every source was backed up.
    Latest,
    /// One point by id.
    Id(String),
}

impl std::str::FromStr for PointSelector {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "latest" {
            return Ok(PointSelector::Latest);
        }
        check_name("recovery point id", s)?;
        Ok(PointSelector::Id(s.to_owned()))
    }
}

impl Repository {
    /// Records a recovery point over backups that have committed, plus the sources that
    /// failed (an incomplete point is recorded too, so that reports count it).
    ///
    /// # Errors
    /// [`Error::Usage`] for a point with neither members nor failures; [`Error::Store`].
    pub async fn record_point(
        &self,
        group: &str,
        members: &[Manifest],
        failed: Vec<FailedMember>,
        labels: Vec<String>,
    ) -> Result<RecoveryPoint> {
        check_name("group name", group)?;
        if members.is_empty() && failed.is_empty() {
            return Err(Error::Usage(
                "a recovery point needs at least one source".into(),
            ));
        }
        let now = Utc::now();
        let point = RecoveryPoint {
            id: new_backup_id(now),
            group: group.to_owned(),
            started_at: members.iter().map(|m| m.started_at).min().unwrap_or(now),
            created_at: now,
            members: members.iter().map(PointMember::from).collect(),
            failed,
            labels,
        };
        let mut sealed = point.clone();
        for failed in &mut sealed.failed {
            failed.error = self.seal_text(&failed.error);
        }
        let json = serde_json::to_vec_pretty(&sealed).map_err(|e| Error::Usage(e.to_string()))?;
        create_object(self.store().as_ref(), &point_key(&point.id), json).await?;
        tracing::info!(id = %point.id, group, members = point.members.len(), "recovery point recorded");
        Ok(point)
    }

    /// Every recovery point, newest first. An unreadable point is skipped with a warning.
    ///
    /// # Errors
    /// [`Error::Store`] when listing fails.
    pub async fn points(&self) -> Result<Vec<RecoveryPoint>> {
        let store = self.store().as_ref();
        let mut points = Vec::new();
        for meta in list_objects(store, &Path::from(POINTS_DIR)).await? {
            let bytes = get_object(store, &meta.location).await?;
            match serde_json::from_slice::<RecoveryPoint>(&bytes) {
                Ok(mut point) => {
                    for failed in &mut point.failed {
                        failed.error = self.unseal_text(&failed.error);
                    }
                    points.push(point);
                }
                Err(e) => {
                    tracing::warn!(key = %meta.location, error = %e, "skipping unreadable recovery point")
                }
            }
        }
        points.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(points)
    }

    /// One recovery point.
    ///
    /// # Errors
    /// [`Error::BackupNotFound`] when there is no such point (or, for `Latest`, no complete
    /// one); [`Error::Store`].
    pub async fn find_point(&self, selector: &PointSelector) -> Result<RecoveryPoint> {
        let points = self.points().await?;
        let exists = match (points.len(), points.first(), points.last()) {
            (0, _, _) => "the repository holds no recovery points".to_owned(),
            (1, Some(only), _) => format!("the one recovery point is {}", only.id),
            (n, Some(newest), Some(oldest)) => format!(
                "its {n} recovery points run from {} to {}",
                oldest.id, newest.id
            ),
            _ => String::new(),
        };
        let found = match selector {
            PointSelector::Latest => points.into_iter().find(RecoveryPoint::is_complete),
            PointSelector::Id(id) => points.into_iter().find(|p| &p.id == id),
        };
        found.ok_or_else(|| Error::BackupNotFound {
            selector: match selector {
                PointSelector::Latest => format!(
                    "the latest complete recovery point ({exists}; `dr backup --all` takes one)"
                ),
                PointSelector::Id(id) => format!("recovery point {id} ({exists})"),
            },
        })
    }

    /// Deletes a point's record (its backups are untouched).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn delete_point(&self, id: &str) -> Result<()> {
        check_name("recovery point id", id)?;
        delete_object(self.store().as_ref(), &point_key(id)).await
    }
}

fn point_key(id: &str) -> Path {
    Path::from(POINTS_DIR).join(format!("{id}.json"))
}
