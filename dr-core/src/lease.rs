//! Leases: a running backup holds `locks/<source>/<id>.json` with an expiry it renews while it
//! runs, so that orphan removal never deletes the parts of a backup still being written, however
//! long it takes. A lease is not a lock that goes stale: a backup killed before it could remove
//! its lease stops renewing it, and once it has expired its parts are orphans like any other.
//! On the host that wrote it, a lease whose process is gone is stale at once (as restic
//! judges its locks), so a crashed backup's parts need not wait for the expiry there.

use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::error::Result;
use crate::store::{create_object, delete_object, get_object, list_objects, with_retries};

const LOCKS_DIR: &str = "locks";
/// How long a lease lasts unless renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(10 * 60);

/// The contents of a lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// Source name.
    pub source: String,
    /// The backup being written.
    pub backup_id: String,
    /// Host that holds it.
    pub host: String,
    /// Process that holds it, on `host`.
    #[serde(default)]
    pub pid: u32,
    /// Until when it holds unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// A held lease: renewed in the background until dropped or released.
pub(crate) struct HeldLease {
    store: Arc<dyn ObjectStore>,
    key: Path,
    lease: Lease,
    renewal: tokio::task::JoinHandle<()>,
}

impl HeldLease {
    /// Takes the lease of backup `id` of `source` (created only if absent: `None` when
    /// another backup holds that id) and renews it every third of its TTL.
    pub(crate) async fn take(
        store: Arc<dyn ObjectStore>,
        source: &str,
        id: &str,
    ) -> Result<Option<HeldLease>> {
        let key = Path::from(LOCKS_DIR)
            .join(source)
            .join(format!("{id}.json"));
        let lease = Lease {
            source: source.to_owned(),
            backup_id: id.to_owned(),
            host: hostname(),
            pid: std::process::id(),
            expires_at: Utc::now(),
        };
        let mut first = lease.clone();
        first.expires_at = Utc::now() + chrono::TimeDelta::from_std(LEASE_TTL).unwrap_or_default();
        let json =
            serde_json::to_vec_pretty(&first).map_err(|e| crate::Error::Usage(e.to_string()))?;
        match create_object(store.as_ref(), &key, json).await {
            Err(crate::Error::Store {
                source: object_store::Error::AlreadyExists { .. },
                ..
            }) => return Ok(None),
            other => other?,
        }
        let (renew_store, renew_key, renewed) = (store.clone(), key.clone(), lease.clone());
        let renewal = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_TTL / 3).await;
                let until = Utc::now() + chrono::TimeDelta::from_std(LEASE_TTL).unwrap_or_default();
                if let Err(e) = write(renew_store.as_ref(), &renew_key, &renewed, until).await {
                    tracing::warn!(key = %renew_key, error = %e, "could not renew a backup lease");
                }
            }
        });
        Ok(Some(HeldLease {
            store,
            key,
            lease,
            renewal,
        }))
    }

    /// Stops renewing and deletes the lease (best effort: an expired lease does no harm).
    /// With append-only credentials (delete refused) the lease is rewritten as expired
    /// instead, a create-and-read operation; prune, with delete rights, removes it.
    pub(crate) async fn release(self) {
        self.renewal.abort();
        let refused = match delete_object(self.store.as_ref(), &self.key).await {
            Ok(()) => return,
            Err(e) if crate::store::is_permission_denied(&e) => true,
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "could not remove a backup lease; it expires by itself");
                false
            }
        };
        if refused {
            match write(self.store.as_ref(), &self.key, &self.lease, Utc::now()).await {
                Ok(()) => {
                    tracing::debug!(key = %self.key, "delete refused (append-only credentials): lease marked expired; prune removes it")
                }
                Err(e) => {
                    tracing::warn!(key = %self.key, error = %e, "could not end a backup lease; it expires by itself")
                }
            }
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

async fn write(
    store: &dyn ObjectStore,
    key: &Path,
    lease: &Lease,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    let mut fresh = lease.clone();
    fresh.expires_at = expires_at;
    let json = serde_json::to_vec_pretty(&fresh).map_err(|e| crate::Error::Usage(e.to_string()))?;
    with_retries(&format!("writing {key}"), |_| {
        store.put(key, PutPayload::from(json.clone()))
    })
    .await
    .map(drop)
    .map_err(|e| crate::Error::store(format!("writing {key}"), e))
}

/// The backups (`(source, id)`) whose lease is live at `now`, and the keys of stale leases.
pub(crate) async fn leases(
    store: &dyn ObjectStore,
    now: DateTime<Utc>,
) -> Result<(Vec<(String, String)>, Vec<Path>)> {
    let (mut live, mut stale) = (Vec::new(), Vec::new());
    for meta in list_objects(store, &Path::from(LOCKS_DIR)).await? {
        let Ok(bytes) = get_object(store, &meta.location).await else {
            continue; // released meanwhile
        };
        match serde_json::from_slice::<Lease>(&bytes) {
            Ok(lease) if is_live(&lease, now) => live.push((lease.source, lease.backup_id)),
            Ok(_) => stale.push(meta.location),
            Err(e) => {
                tracing::warn!(key = %meta.location, error = %e, "skipping an unreadable lease")
            }
        }
    }
    Ok((live, stale))
}

/// Unexpired, and not held by a process of this host that no longer exists.
fn is_live(lease: &Lease, now: DateTime<Utc>) -> bool {
    let gone = lease.host == hostname()
        && lease.pid != 0
        && !std::path::Path::new(&format!("/proc/{}", lease.pid)).exists();
    lease.expires_at > now && !gone
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
