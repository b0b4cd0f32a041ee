//! A bucket's listing in key order without holding it: the listing is spooled to an
//! unlinked temporary file as it comes (S3, GCS and Azure list in key order) and read back
//! one object at a time. A store that lists out of order (a local directory) is sorted in
//! runs of [`RUN`] objects, each spooled, and the runs merged as they are read. Two objects
//! listed under one name fail the backup, as keys that object_store cannot represent do.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, Seek, Write};
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

/// Objects sorted in memory at once when a store lists out of order.
const RUN: usize = 100_000;

/// A spooled listing: one JSON object a line in an unlinked temporary file.
pub(crate) struct Spool(std::io::BufReader<std::fs::File>);

impl Iterator for Spool {
    type Item = Result<Listed>;

    fn next(&mut self) -> Option<Result<Listed>> {
        let mut line = String::new();
        match self.0.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(
                serde_json::from_str(&line)
                    .map_err(|e| Error::internal("reading the spooled listing of the bucket", e)),
            ),
            Err(e) => Some(Err(spool_error(e))),
        }
    }
}

/// The listing, in key order.
pub(crate) enum SortedListing {
    /// Listed in order, read back from its spool.
    Spooled(Spool),
    /// Listed out of order: sorted runs, merged as they are read.
    Merged(Merge),
}

impl Iterator for SortedListing {
    type Item = Result<Listed>;

    fn next(&mut self) -> Option<Result<Listed>> {
        match self {
            SortedListing::Spooled(spool) => spool.next(),
            SortedListing::Merged(merge) => merge.next(),
        }
    }
}

/// Sorted runs merged into one listing in key order (two objects under one key fail).
pub(crate) struct Merge {
    runs: Vec<Spool>,
    /// The next object of each run, smallest key on top.
    heads: BinaryHeap<Reverse<(String, usize)>>,
    pending: Vec<Option<Listed>>,
    previous: Option<String>,
}

impl Merge {
    fn new(mut runs: Vec<Spool>) -> Result<Merge> {
        let mut merge = Merge {
            heads: BinaryHeap::new(),
            pending: (0..runs.len()).map(|_| None).collect(),
            previous: None,
            runs: Vec::new(),
        };
        for (at, run) in runs.iter_mut().enumerate() {
            if let Some(listed) = run.next().transpose()? {
                merge.heads.push(Reverse((listed.key.clone(), at)));
                merge.pending[at] = Some(listed);
            }
        }
        merge.runs = runs;
        Ok(merge)
    }

    fn next(&mut self) -> Option<Result<Listed>> {
        let Reverse((key, at)) = self.heads.pop()?;
        let listed = self.pending[at].take()?;
        match self.runs[at].next().transpose() {
            Ok(Some(next)) => {
                self.heads.push(Reverse((next.key.clone(), at)));
                self.pending[at] = Some(next);
            }
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        if self.previous.as_deref() == Some(key.as_str()) {
            return Some(Err(listed_twice(&super::bucket::exact_path(&key))));
        }
        self.previous = Some(key);
        Some(Ok(listed))
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
    let file = spool.into_inner().into_std().await;
    blocking("reading the listing spool", move || {
        let spooled = rewound(file)?;
        if in_order {
            return Ok(SortedListing::Spooled(spooled));
        }
        Merge::new(sorted_runs(spooled, RUN)?).map(SortedListing::Merged)
    })
    .await
}

fn rewound(mut file: std::fs::File) -> Result<Spool> {
    file.rewind().map_err(spool_error)?;
    Ok(Spool(std::io::BufReader::with_capacity(1 << 16, file)))
}

/// The listing cut into runs of `size` objects, each sorted by key and spooled.
fn sorted_runs(mut listing: Spool, size: usize) -> Result<Vec<Spool>> {
    let mut runs = Vec::new();
    loop {
        let mut run = listing
            .by_ref()
            .take(size)
            .collect::<Result<Vec<Listed>>>()?;
        if run.is_empty() {
            return Ok(runs);
        }
        run.sort_by(|a, b| a.key.cmp(&b.key));
        let mut out = std::io::BufWriter::new(tempfile::tempfile().map_err(spool_error)?);
        for listed in &run {
            serde_json::to_writer(&mut out, listed)
                .map_err(|e| Error::internal("spooling the listing of the bucket", e))?;
            out.write_all(b"\n").map_err(spool_error)?;
        }
        let file = out.into_inner().map_err(|e| spool_error(e.into_error()))?;
        runs.push(rewound(file)?);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spool_of(keys: &[String]) -> Spool {
        let mut file = tempfile::tempfile().unwrap();
        for key in keys {
            let listed = Listed {
                key: key.clone(),
                size: key.len() as u64,
                mtime_ns: -1,
                etag: None,
            };
            serde_json::to_writer(&mut file, &listed).unwrap();
            file.write_all(b"\n").unwrap();
        }
        rewound(file).unwrap()
    }

    #[test]
    fn runs_sorted_apart_merge_into_key_order() {
        // A fixed shuffle of 1000 keys: i * 389 mod 1000 visits each once.
        let keys: Vec<String> = (0..1000)
            .map(|i| format!("k/{:04}", i * 389 % 1000))
            .collect();
        let merged = Merge::new(sorted_runs(spool_of(&keys), 64).unwrap()).unwrap();
        let out: Vec<String> = std::iter::from_fn({
            let mut merged = merged;
            move || merged.next()
        })
        .map(|l| l.unwrap().key)
        .collect();
        let mut expected = keys.clone();
        expected.sort();
        assert_eq!(out, expected);
    }

    #[test]
    fn a_key_listed_twice_in_different_runs_fails() {
        let mut keys: Vec<String> = (0..100).map(|i| format!("k{i:03}")).collect();
        keys.push("k050".into());
        let mut merged = Merge::new(sorted_runs(spool_of(&keys), 30).unwrap()).unwrap();
        let failed = std::iter::from_fn(|| merged.next()).find_map(Result::err);
        assert!(failed.is_some_and(|e| e.to_string().contains("lists two objects as `k050`")),);
    }
}
