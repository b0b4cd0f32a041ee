//! A bucket's listing in key order without holding it: the listing is spooled to an
//! unlinked temporary file as it comes (S3, GCS and Azure list in key order) and read back
//! one object at a time. A store that lists out of order (a local directory) is sorted in
//! memory instead. Two objects listed under one name fail the backup, as keys that
//! object_store cannot represent do.

use std::io::{BufRead, Seek};
use std::sync::Arc;

use dr_core::object_store::path::Path as ObjectPath;
use dr_core::object_store::{ObjectMeta, ObjectStore};
use dr_core::{Error, Result};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::blocking::blocking;

/// One listed object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Listed {
    /// The whole key, as object_store lists it.
    pub key: String,
    pub size: u64,
    /// Last-modified time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    pub etag: Option<String>,
}

impl From<ObjectMeta> for Listed {
    fn from(meta: ObjectMeta) -> Self {
        Listed {
            mtime_ns: i128::from(meta.last_modified.timestamp()) * 1_000_000_000
                + i128::from(meta.last_modified.timestamp_subsec_nanos()),
            key: String::from(meta.location),
            size: meta.size,
            etag: meta.e_tag,
        }
    }
}

/// The listing, in key order.
pub(crate) enum SortedListing {
    /// Listed in order: one JSON object a line in a temporary file, read from its start.
    Spooled(std::io::BufReader<std::fs::File>),
    /// Listed out of order, sorted here.
    Sorted(std::vec::IntoIter<Listed>),
}

impl Iterator for SortedListing {
    type Item = Result<Listed>;

    fn next(&mut self) -> Option<Result<Listed>> {
        match self {
            SortedListing::Sorted(listed) => listed.next().map(Ok),
            SortedListing::Spooled(spool) => {
                let mut line = String::new();
                match spool.read_line(&mut line) {
                    Ok(0) => None,
                    Ok(_) => Some(serde_json::from_str(&line).map_err(|e| {
                        Error::internal("reading the spooled listing of the bucket", e)
                    })),
                    Err(e) => Some(Err(spool_error(e))),
                }
            }
        }
    }
}

/// Lists every object under `prefix`, in key order (blocking reads: iterate it on the
/// blocking pool).
///
/// # Errors
/// Store errors; keys object_store cannot represent; two objects listed under one name;
/// a temporary file that cannot be written (a full disk).
pub(crate) async fn list_sorted(
    store: &Arc<dyn ObjectStore>,
    prefix: Option<&ObjectPath>,
) -> Result<SortedListing> {
    let file = blocking("creating the listing spool", || {
        tempfile::tempfile().map_err(spool_error)
    })
    .await?;
    let mut spool = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    let mut listing = store.list(prefix);
    let mut previous: Option<ObjectPath> = None;
    let mut in_order = true;
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(super::bucket::listing_error)?;
        match previous.as_ref().map(|p| p.cmp(&meta.location)) {
            Some(std::cmp::Ordering::Equal) => return Err(listed_twice(&meta.location)),
            Some(std::cmp::Ordering::Greater) => in_order = false,
            _ => {}
        }
        previous = Some(meta.location.clone());
        let mut line = serde_json::to_vec(&Listed::from(meta))
            .map_err(|e| Error::internal("spooling the listing of the bucket", e))?;
        line.push(b'\n');
        spool.write_all(&line).await.map_err(spool_error)?;
    }
    spool.flush().await.map_err(spool_error)?;
    let mut file = spool.into_inner().into_std().await;
    blocking("reading the listing spool", move || {
        file.rewind().map_err(spool_error)?;
        let spooled = std::io::BufReader::with_capacity(1 << 20, file);
        if in_order {
            return Ok(SortedListing::Spooled(spooled));
        }
        sorted(SortedListing::Spooled(spooled))
    })
    .await
}

/// A listing read whole and sorted by key.
fn sorted(listing: SortedListing) -> Result<SortedListing> {
    let mut all = listing.collect::<Result<Vec<Listed>>>()?;
    all.sort_by(|a, b| a.key.cmp(&b.key));
    if let Some(pair) = all.windows(2).find(|w| w[0].key == w[1].key) {
        return Err(listed_twice(&super::bucket::exact_path(&pair[0].key)));
    }
    Ok(SortedListing::Sorted(all.into_iter()))
}

fn listed_twice(location: &ObjectPath) -> Error {
    Error::backend(
        "bucket",
        "backup",
        format!(
            "The bucket lists two objects as `{location}`: their real keys differ by a leading or \
             trailing `/`, which object_store, the library dr reads buckets with, drops. \
             Nothing was committed: rename one of them (or back up a prefix without them) and \
             run the backup again"
        ),
    )
}

fn spool_error(e: std::io::Error) -> Error {
    Error::io(
        "spooling the listing of the bucket in the temporary directory (TMPDIR)",
        e,
    )
}
