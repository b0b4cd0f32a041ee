//! Recovery points: backups of several sources taken together under one id and restored
//! together (the seeds' "full system recovery": database, cache, files, configuration).
//!
//! A point is one JSON object, `points/<id>.json`, written with `PutMode::Create` after
//! every member backup has committed. It names its members; it holds no secrets and no
//! data, so `list` and `prune` read it with public keys only.

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Refusal, Result};
use crate::listing::id_second;
use crate::manifest::{Manifest, check_name};
use crate::repository::{Repository, new_backup_id};
use crate::store::{create_object, delete_object, get_object, list_objects};

const POINTS_DIR: &str = "points";

/// One backup of a recovery point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct FailedMember {
    /// Source name.
    pub source: String,
    /// What went wrong (credentials already redacted).
    pub error: String,
}

/// A recovery point: the backups of a group of sources taken together. Unknown fields are
/// refused: a damaged field name (say `failed`) must not quietly turn into an empty field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

    /// What does not match between the point and the committed backups it names: a member
    /// whose manifest says another kind or finish time, or whose backup id is in the
    /// repository under another source (`backups` are the readable manifests). A member
    /// that is not in the repository at all is no damage: retention may have deleted it
    /// (see [`RecoveryPoint::missing_members`]).
    pub fn problems(&self, backups: &[Manifest]) -> Vec<String> {
        let mut problems = Vec::new();
        for member in &self.members {
            let same_id = backups.iter().filter(|m| m.id == member.backup_id);
            let found = same_id.clone().find(|m| m.source == member.source);
            match found {
                Some(m) if m.kind != member.kind || m.finished_at != member.finished_at => {
                    problems.push(format!(
                        "recovery point {}: member {} {} does not match its backup's manifest (kind {} finished {}, the point says {} finished {})",
                        self.id, member.source, member.backup_id, m.kind, m.finished_at, member.kind, member.finished_at
                    ));
                }
                Some(_) => {}
                None => {
                    if let Some(other) = same_id.clone().next() {
                        problems.push(format!(
                            "recovery point {}: member {} {} is backup {} of source {}",
                            self.id, member.source, member.backup_id, other.id, other.source
                        ));
                    }
                }
            }
        }
        problems
    }

    /// The members whose backup is neither among `backups` (readable) nor `unreadable_ids`:
    /// deleted by retention, or named wrongly. A restore of the point cannot have them.
    pub fn missing_members(&self, backups: &[Manifest], unreadable_ids: &[&str]) -> Vec<String> {
        self.members
            .iter()
            .filter(|member| {
                !unreadable_ids.contains(&member.backup_id.as_str())
                    && !backups
                        .iter()
                        .any(|m| m.id == member.backup_id && m.source == member.source)
            })
            .map(|member| format!("{} {}", member.source, member.backup_id))
            .collect()
    }

    fn check_names(&self, key_id: &str) -> Result<()> {
        if self.id != key_id {
            return Err(Error::Usage(format!(
                "its id field says {:?}, its name {key_id}",
                self.id
            )));
        }
        check_name("group name", &self.group)?;
        check_id("recovery point id", &self.id)?;
        for member in &self.members {
            check_name("source name", &member.source)?;
            check_id("backup id", &member.backup_id)?;
        }
        for failed in &self.failed {
            check_name("source name", &failed.source)?;
        }
        Ok(())
    }
}

/// A recovery point record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadablePoint {
    /// The point's id, from its object's name.
    pub id: String,
    /// The object key (`points/<id>.json`).
    pub key: String,
    /// What is wrong with it.
    pub error: String,
}

impl UnreadablePoint {
    /// One line saying what is wrong and what to do.
    pub fn describe(&self) -> String {
        format!(
            "recovery point record {} is unreadable ({}): its member backups are unknown, so dr keeps every backup and will not restore it; restore its sources one by one (dr list), and delete the record once it is no longer needed",
            self.key, self.error
        )
    }
}

/// Every recovery point record: the readable points, newest first, and the unreadable ones.
#[derive(Debug, Clone, Default)]
pub struct PointListing {
    /// Points that parsed and whose names are valid, newest first.
    pub points: Vec<RecoveryPoint>,
    /// Records that did not.
    pub unreadable: Vec<UnreadablePoint>,
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

    /// Every recovery point, newest first, beside the records that could not be read
    /// (never skipped: the caller reports them).
    ///
    /// # Errors
    /// [`Error::Store`] when listing or reading fails.
    pub async fn points(&self) -> Result<PointListing> {
        let store = self.store().as_ref();
        let mut listing = PointListing::default();
        for meta in list_objects(store, &Path::from(POINTS_DIR)).await? {
            let key = meta.location.to_string();
            let id = meta
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
                .unwrap_or_default()
                .to_owned();
            let bytes = get_object(store, &meta.location).await?;
            let parsed = serde_json::from_slice::<RecoveryPoint>(&bytes)
                .map_err(|e| Error::Usage(e.to_string()))
                .and_then(|p| p.check_names(&id).map(|()| p));
            match parsed {
                Ok(mut point) => {
                    for failed in &mut point.failed {
                        failed.error = self.unseal_text(&failed.error);
                    }
                    listing.points.push(point);
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "unreadable recovery point");
                    let error = e.to_string();
                    listing.unreadable.push(UnreadablePoint { id, key, error });
                }
            }
        }
        listing.points.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(listing)
    }

    /// One recovery point. An unreadable record is never passed over: not when it is the
    /// point asked for, and not for `Latest` when it is newer than the newest complete point.
    ///
    /// # Errors
    /// [`Error::BackupNotFound`] when there is no such point (or, for `Latest`, no complete
    /// one); [`Error::Refused`] ([`Refusal::Unavailable`]) for an unreadable record; [`Error::Store`].
    pub async fn find_point(&self, selector: &PointSelector) -> Result<RecoveryPoint> {
        let PointListing { points, unreadable } = self.points().await?;
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
        let blocking = unreadable.iter().find(|u| match selector {
            PointSelector::Latest => found
                .as_ref()
                .is_none_or(|p| id_second(&u.id) >= id_second(&p.id)),
            PointSelector::Id(id) => &u.id == id,
        });
        if let Some(u) = blocking {
            return Err(Error::refused(Refusal::Unavailable, u.describe()));
        }
        found.ok_or_else(|| Error::BackupNotFound {
            selector: match selector {
                PointSelector::Latest => format!(
                    "the latest complete recovery point ({exists}; `dr backup --all` takes one)"
                ),
                PointSelector::Id(id) => format!("recovery point {id} ({exists})"),
            },
        })
    }

    /// Locks a point's record until `until` on a bucket with Object Lock (0 elsewhere).
    ///
    /// # Errors
    /// As [`Repository::lock_objects`].
    pub async fn lock_point(&self, id: &str, until: DateTime<Utc>) -> Result<usize> {
        check_name("recovery point id", id)?;
        self.lock_objects(&[point_key(id)], until).await
    }

    /// The retention of a point's record (`None` without Object Lock or without a lock).
    ///
    /// # Errors
    /// The lock control plane's error.
    pub async fn point_retention(&self, id: &str) -> Result<Option<crate::locks::Retention>> {
        check_name("recovery point id", id)?;
        match self.object_locks() {
            Some(control) if self.bucket_lock().await?.is_some() => {
                control.retention(&point_key(id)).await
            }
            _ => Ok(None),
        }
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

/// An id as dr makes them, `YYYYMMDDTHHMMSSZ-xxxx`: any changed character breaks the form.
fn check_id(what: &'static str, id: &str) -> Result<()> {
    let well_formed = id.len() == 21
        && chrono::NaiveDateTime::parse_from_str(&id[..16], "%Y%m%dT%H%M%SZ").is_ok()
        && id.as_bytes()[16] == b'-'
        && id[17..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if well_formed {
        return Ok(());
    }
    Err(Error::InvalidName {
        what,
        name: id.to_owned(),
    })
}

fn point_key(id: &str) -> Path {
    Path::from(POINTS_DIR).join(format!("{id}.json"))
}
