//! Buckets as configured sources of the kind registry (`kind = "bucket"`): an object-store
//! prefix backed up incrementally over its newest backup, restored into its own bucket or
//! another one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dr_core::object_store::ObjectStore;
use dr_core::{
    Backup, Error, Repository, Restore, RestoreRank, RestoreReport, RestoreRequest, Result, Source,
    SourceFactory, SourceSettings, Verify, async_trait,
};
use serde::{Deserialize, Serialize};

use super::backup::FILES_KIND;
use super::bucket::BucketSource;
use super::bucket_restore::{BucketRestored, BucketTarget};
use super::restore::DirectoryTarget;
use super::source::{latest_backup, refuse_checks, refuse_unsupported, to_source_settings};
use super::verify::TreeVerifier;

/// The source type of buckets in configurations.
pub const BUCKET_SOURCE_TYPE: &str = "bucket";

/// The settings of a bucket source (a `[sources.NAME]` table with `kind = "bucket"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BucketSettings {
    /// Where the objects are: `s3://bucket/media`, `gs://...`, `az://...`, a local directory.
    pub url: String,
    /// object_store options (endpoint, region...); credentials come from the environment.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// A PEM file of CA certificates trusted besides the system's roots, for a store behind
    /// a private CA (also for the restore target URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl BucketSettings {
    /// The objects under `url`.
    pub fn new(url: impl Into<String>) -> Self {
        BucketSettings {
            url: url.into(),
            options: BTreeMap::new(),
            ca_file: None,
        }
    }

    /// Trusting the CA certificates of the PEM file `ca_file` besides the system's roots.
    pub fn with_ca_file(mut self, ca_file: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(ca_file.into());
        self
    }

    /// With object_store options (`aws_endpoint`, `aws_region`...).
    pub fn with_options<K: Into<String>, V: Into<String>>(
        mut self,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.options = options
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }

    /// These settings as the registry takes them.
    ///
    /// # Errors
    /// [`Error::Usage`] if they cannot be serialized.
    pub fn to_source_settings(&self) -> Result<SourceSettings> {
        to_source_settings(self)
    }

    /// The store at `url` opened with these options (`url`: the source's own, or a restore
    /// target).
    ///
    /// # Errors
    /// As [`crate::open_store`]: a scheme whose feature (`aws`, `gcp`, `azure`) is not
    /// compiled in is named.
    pub fn open(&self, url: &str) -> Result<Arc<dyn ObjectStore>> {
        let ca_file = self.ca_file.as_ref().and_then(|p| p.to_str());
        if let (Some(path), None) = (&self.ca_file, ca_file) {
            return Err(Error::Usage(format!(
                "ca_file {} is not valid UTF-8",
                path.display()
            )));
        }
        let options: Vec<(&str, &str)> = self
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(ca_file.map(|p| (crate::CA_FILE_OPTION, p)))
            .collect();
        Ok(crate::open_store(url, &options, false)?.store())
    }
}

/// Builds bucket sources (`kind = "bucket"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BucketFactory;

impl SourceFactory for BucketFactory {
    fn source_type(&self) -> &str {
        BUCKET_SOURCE_TYPE
    }

    /// Cloud URLs are checked here (scheme compiled in, options known); a local
    /// directory may appear later, so it is opened at each backup.
    fn build(&self, settings: &SourceSettings) -> Result<Arc<dyn Source>> {
        refuse_checks(settings, BUCKET_SOURCE_TYPE)?;
        let settings: BucketSettings = settings.parse(BUCKET_SOURCE_TYPE)?;
        let cloud = settings
            .url
            .split_once("://")
            .is_some_and(|(scheme, _)| !matches!(scheme, "file" | "memory"));
        if cloud {
            settings.open(&settings.url)?;
        }
        Ok(Arc::new(ConfiguredBucket::new(settings)))
    }
}

/// A configured bucket source.
#[derive(Debug, Clone)]
pub struct ConfiguredBucket {
    settings: BucketSettings,
}

impl ConfiguredBucket {
    /// The source `settings` describe.
    pub fn new(settings: BucketSettings) -> Self {
        ConfiguredBucket { settings }
    }

    /// Its settings.
    pub fn settings(&self) -> &BucketSettings {
        &self.settings
    }
}

#[async_trait]
impl Source for ConfiguredBucket {
    fn kind(&self) -> &str {
        FILES_KIND
    }

    fn restore_rank(&self) -> RestoreRank {
        RestoreRank::Files
    }

    /// Incremental over the newest backup of `source_name` unless `full` (or there is
    /// none); the backup declares its parent and the backups holding unchanged objects.
    async fn backup(
        &self,
        repo: &Repository,
        source_name: &str,
        full: bool,
    ) -> Result<Box<dyn Backup>> {
        let source = BucketSource::new(self.settings.open(&self.settings.url)?, None);
        if full {
            return Ok(Box::new(source));
        }
        Ok(Box::new(match latest_backup(repo, source_name).await? {
            Some(parent) => source.with_parent_backup(repo.reader(parent)),
            None => source,
        }))
    }

    /// Into the source's bucket, or the URL in `options.target`, with the source's
    /// object_store options; `only` selects keys (a prefix selects what is under it).
    async fn restore(&self, request: &RestoreRequest<'_>) -> Result<RestoreReport> {
        let started = Instant::now();
        let options = request.options;
        refuse_unsupported(options, BUCKET_SOURCE_TYPE, false)?;
        let url = options
            .target
            .as_ref()
            .map_or_else(|| self.settings.url.clone(), |t| t.display().to_string());
        let store = self.settings.open(&url)?;
        let reader = request.open().await?;
        if reader.manifest().kind != FILES_KIND {
            return Err(Error::Usage(format!(
                "backup {} is a {} backup, not a bucket",
                reader.id(),
                reader.manifest().kind
            )));
        }
        let restored = BucketTarget::new(store, None, request.repo.clone())
            .restore_objects(&reader, &options.only)
            .await?;
        let shown = dr_core::redact_url(&url);
        let mut report = RestoreReport::default();
        report.backup_id = reader.id().to_owned();
        report.target = shown.clone();
        report.restored_bytes = restored.bytes;
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        report.notes = bucket_notes(&restored, &shown);
        report.summary = vec![format!(
            "restored {} objects ({}); every object matched its SHA-256",
            restored.objects,
            dr_core::human_size(restored.bytes)
        )];
        report.details = serde_json::to_value(&restored)
            .map_err(|e| Error::internal("describing the restored objects", e))?;
        Ok(report)
    }

    fn verifier(&self, repo: &Repository) -> Result<Box<dyn Verify>> {
        Ok(Box::new(TreeVerifier::new(repo.clone())))
    }

    /// The objects as files under `scratch` (an increment reads its unchanged objects from
    /// the backups it depends on in `repo`).
    fn scratch_restorer(&self, repo: &Repository, scratch: &Path) -> Option<Box<dyn Restore>> {
        Some(Box::new(DirectoryTarget::new(scratch, repo.clone())))
    }

    fn explain(&self, error: Error) -> Error {
        let error =
            crate::explain_untrusted_certificate(error, &dr_core::redact_url(&self.settings.url));
        match error {
            Error::Store { .. } if self.settings.url.starts_with("s3") => {
                let retryable = error.is_retryable();
                Error::backend(
                    "bucket",
                    "reading the bucket",
                    format!(
                        "{error} (credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                         the endpoint and region from the source's `options` or AWS_ENDPOINT and \
                         AWS_REGION)"
                    ),
                )
                .retryable_if(retryable)
                .caused_by(error)
            }
            other => other,
        }
    }
}

fn bucket_notes(restored: &BucketRestored, shown: &str) -> Vec<String> {
    if restored.metadata_dropped == 0 {
        return Vec::new();
    }
    vec![format!(
        "{} objects had metadata (Content-Type, Cache-Control, user metadata...) that {shown} \
         cannot hold: their bytes were restored without it; restore into an object store to \
         keep it",
        restored.metadata_dropped
    )]
}
