//! Generic checks of a backup's objects, the same for every kind.

use std::time::Instant;

use futures::StreamExt;
use object_store::ObjectStoreExt;

use crate::error::{Error, Result};
use crate::manifest::PartRecord;
use crate::pipeline::{BackupReader, sha256_hex};
use crate::store::get_object;
use crate::traits::{VerifyLevel, VerifyReport};

impl BackupReader {
    /// Checks every object of the backup and reports each problem with the object's name.
    ///
    /// - `Quick`: every part and `SHA256SUMS` exist with the recorded size.
    /// - `Checksums` and `Restore`: every part is read and its stored SHA-256 compared (no key
    ///   needed); with an identity loaded, every part is also decrypted, decompressed and its
    ///   plain SHA-256 compared. The kind-specific restore test is the backend's [`crate::Verify`].
    ///
    /// # Errors
    /// Never for a damaged backup (those are problems in the report); only for a store that
    /// fails while listing nothing can be checked.
    pub async fn verify_objects(&self, level: VerifyLevel) -> Result<VerifyReport> {
        let started = Instant::now();
        let parts: Vec<PartRecord> = self.manifest().parts().cloned().collect();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
        let progress = self.start_checksums(parts.iter().map(|p| p.stored_size).sum());
        let progress = &progress;
        let outcomes: Vec<(u64, Result<()>)> = futures::stream::iter(parts)
            .map(|part| async move {
                let checked = self.check_part(&part, level).await;
                progress.advance(part.stored_size);
                (part.stored_size, checked)
            })
            .buffered(threads)
            .collect()
            .await;
        let mut report = VerifyReport {
            backup_id: self.id().to_owned(),
            decoded: level >= VerifyLevel::Checksums && self.can_decrypt(),
            ..VerifyReport::default()
        };
        for (size, outcome) in outcomes {
            report.checked_objects += 1;
            match outcome {
                Ok(()) => {
                    report.checked_bytes += if level >= VerifyLevel::Checksums {
                        size
                    } else {
                        0
                    }
                }
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        if let Err(e) = self.check_sums_object().await {
            report.problems.push(e.to_string());
        }
        report.checked_objects += 1;
        self.end_checksums(progress, report.problems.len());
        if report.problems.is_empty() {
            report.passed.push(format!(
                "{} objects {}",
                report.checked_objects,
                level_words(level, report.decoded)
            ));
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    async fn check_part(&self, part: &PartRecord, level: VerifyLevel) -> Result<()> {
        let (store, dir) = self.location();
        let path = dir.clone().join(part.object.as_str());
        if level == VerifyLevel::Quick {
            let meta = store.head(&path).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => Error::MissingObject {
                    key: path.to_string(),
                },
                other => Error::store(format!("checking {path}"), other),
            })?;
            return check_size(path.as_ref(), meta.size, part.stored_size);
        }
        let stored = get_object(store.as_ref(), &path).await?;
        check_size(path.as_ref(), stored.len() as u64, part.stored_size)?;
        let reader = self.clone();
        let part = part.clone();
        tokio::task::spawn_blocking(move || {
            let actual = sha256_hex(&stored);
            if actual != part.stored_sha256 {
                return Err(Error::CorruptPart {
                    key: path.to_string(),
                    what: "stored",
                    expected: part.stored_sha256.clone(),
                    actual,
                });
            }
            if reader.can_decrypt() {
                reader.decode_stored(path.as_ref(), &part, &stored)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Usage(format!("check task failed: {e}")))?
    }

    async fn check_sums_object(&self) -> Result<()> {
        let (store, dir) = self.location();
        let path = dir.clone().join("SHA256SUMS");
        let sums = get_object(store.as_ref(), &path).await?;
        if sums.as_ref() != self.manifest().sha256sums().as_bytes() {
            return Err(Error::DamagedPart {
                key: path.to_string(),
                detail: "it differs from the checksums in the manifest".into(),
            });
        }
        Ok(())
    }

    /// Reads every artifact through the full decode path (decrypt, decompress, plain hash),
    /// discarding the bytes; the strongest check short of a restore.
    ///
    /// # Errors
    /// The first decoding or checksum error.
    pub async fn decode_all(&self) -> Result<u64> {
        let mut total = 0;
        for artifact in &self.manifest().artifacts {
            total += self
                .copy_artifact(&artifact.name, &mut tokio::io::sink())
                .await?;
        }
        Ok(total)
    }
}

fn check_size(key: &str, actual: u64, expected: u64) -> Result<()> {
    if actual == expected {
        return Ok(());
    }
    Err(Error::DamagedPart {
        key: key.to_owned(),
        detail: format!(
            "it is {actual} bytes, the manifest expects {expected} (truncated or replaced)"
        ),
    })
}

fn level_words(level: VerifyLevel, decoded: bool) -> &'static str {
    match (level, decoded) {
        (VerifyLevel::Quick, _) => "present with the recorded sizes",
        (_, false) => "match their stored SHA-256 (no identity: not decrypted)",
        (_, true) => "match their stored and plain SHA-256",
    }
}

impl crate::Repository {
    /// Checks the objects of every backup `manifest` depends on, transitively (incremental
    /// parents), at `level` up to checksums: a backup is only as good as its base. Returns the
    /// problems, each naming the base backup and its object; a base that is gone or has an
    /// unreadable manifest is a problem too.
    ///
    /// # Errors
    /// Only store failures that prevent checking anything.
    pub async fn verify_dependencies(
        &self,
        manifest: &crate::Manifest,
        level: VerifyLevel,
    ) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut pending: Vec<String> = manifest.depends_on.clone();
        while let Some(id) = pending.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let selector = crate::BackupSelector::Id(id.clone());
            let base = match self.find(&manifest.source, &selector).await {
                Ok(base) => base,
                Err(e) => {
                    problems.push(format!("base backup {id} this backup needs: {e}"));
                    continue;
                }
            };
            pending.extend(base.depends_on.iter().cloned());
            let report = self
                .reader(base)
                .verify_objects(level.min(VerifyLevel::Checksums))
                .await?;
            problems.extend(
                report
                    .problems
                    .iter()
                    .map(|p| format!("base backup {id} this backup needs: {p}")),
            );
        }
        Ok(problems)
    }
}
