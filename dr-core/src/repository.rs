//! The repository: an object store holding `dr-repo.json` and committed backups.
//!
//! Layout (see FORMAT.md): `dr-repo.json`, then `backups/<source>/<id>/` holding the parts,
//! `SHA256SUMS` and, written last with `PutMode::Create`, `manifest.json`. A backup without a
//! manifest does not exist for `list` and is an orphan for [`Repository::orphans`].

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use serde::{Deserialize, Serialize};

use crate::drill::BackupFailure;
use crate::error::{Error, Result};
use crate::keys::{Identities, Recipients};
use crate::lease::{HeldLease, leases};
use crate::listing::{Listing, ManifestCache, UnreadableBackup, default_cache_dir};
use crate::manifest::{Encoding, MANIFEST_FORMAT_VERSION, Manifest, check_name};
use crate::pipeline::{BackupReader, BackupWriter, PipelineOptions, WriteContext};
use crate::progress::{Operation, Progress, ProgressHandle};
use crate::selector::BackupSelector;
use crate::store::{create_object, delete_object, get_object, list_objects};
use crate::traits::Backup;

mod locking;
pub use locking::{LockProblem, LockReport};

/// The repository format version this build writes and reads.
pub const REPOSITORY_FORMAT_VERSION: u32 = 1;
const CONFIG_KEY: &str = "dr-repo.json";
const MANIFEST_NAME: &str = "manifest.json";
const SUMS_NAME: &str = "SHA256SUMS";

/// The contents of `dr-repo.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryConfig {
    /// Repository format version.
    pub format_version: u32,
    /// When `init` ran.
    pub created_at: DateTime<Utc>,
    /// Public keys new backups are encrypted to.
    pub recipients: Vec<String>,
}

/// Options of one backup run.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BackupOptions {
    /// Labels recorded in the manifest (retention can keep by label).
    pub labels: Vec<String>,
    /// Further ids of backups this one needs for a restore, added to what the backup declares
    /// itself ([`Backup::depends_on`], where incremental sources say which parent they read;
    /// prefer that). For a caller that knows a dependency the backup cannot.
    pub depends_on: Vec<String>,
    /// On a bucket with Object Lock: lock every object of the backup until this date (see
    /// [`crate::locks::lock_until_at_backup`]); `None` locks for
    /// [`crate::locks::DEFAULT_LOCK_MARGIN`]. Ignored where the store has no locks.
    pub retain_until: Option<DateTime<Utc>>,
}

/// The backups a new backup needs: what it declares, then what the caller added (no repeats).
fn declared_dependencies(backup: &dyn Backup, opts: &BackupOptions) -> Vec<String> {
    let mut ids = backup.depends_on();
    for id in &opts.depends_on {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    ids
}

/// An object under `backups/` that no manifest references.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification reported by the store.
    pub last_modified: DateTime<Utc>,
}

/// An opened repository.
#[derive(Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    location: String,
    config: RepositoryConfig,
    identities: Identities,
    pipeline: PipelineOptions,
    progress: ProgressHandle,
    pinned: Option<Vec<String>>,
    cache: Option<ManifestCache>,
    cache_dir: Option<PathBuf>,
    locks: locking::Locks,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.location)
            .field("recipients", &self.config.recipients)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// Creates a repository in `store`: writes `dr-repo.json` with the recipients.
    /// `location` is the URL shown in messages (credentials already redacted).
    ///
    /// # Errors
    /// [`Error::RepositoryExists`] when one is there; [`Error::Store`].
    pub async fn init(
        store: Arc<dyn ObjectStore>,
        location: &str,
        recipients: &Recipients,
    ) -> Result<Self> {
        if recipients.is_empty() {
            return Err(Error::Usage(
                "a repository needs at least one recipient".into(),
            ));
        }
        let config = RepositoryConfig {
            format_version: REPOSITORY_FORMAT_VERSION,
            created_at: Utc::now(),
            recipients: recipients.to_strings(),
        };
        let json = serde_json::to_vec_pretty(&config).map_err(|e| Error::Usage(e.to_string()))?;
        match create_object(store.as_ref(), &Path::from(CONFIG_KEY), json).await {
            Err(Error::Store {
                source:
                    object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
                ..
            }) => Err(Error::RepositoryExists {
                location: location.to_owned(),
            }),
            other => other,
        }?;
        Ok(Self::with_config(store, location, config))
    }

    /// Opens an existing repository and checks its format version.
    ///
    /// # Errors
    /// [`Error::NotInitialised`], [`Error::UnsupportedFormat`], [`Error::Store`].
    pub async fn open(store: Arc<dyn ObjectStore>, location: &str) -> Result<Self> {
        let bytes = match get_object(store.as_ref(), &Path::from(CONFIG_KEY)).await {
            Err(Error::MissingObject { .. }) => {
                return Err(Error::NotInitialised {
                    location: location.to_owned(),
                });
            }
            other => other?,
        };
        let config: RepositoryConfig = parse_config(&bytes)?;
        Ok(Self::with_config(store, location, config))
    }

    fn with_config(store: Arc<dyn ObjectStore>, location: &str, config: RepositoryConfig) -> Self {
        let cache_dir = if location.starts_with("memory:") {
            None
        } else {
            default_cache_dir()
        };
        Repository {
            store,
            location: location.to_owned(),
            config,
            identities: Identities::default(),
            pipeline: PipelineOptions::default(),
            progress: ProgressHandle::default(),
            pinned: None,
            cache: None,
            cache_dir: None,
            locks: locking::Locks::default(),
        }
        .with_cache_dir(cache_dir)
    }

    /// Caches manifests under `dir` (`None`: no cache, every listing GETs every manifest).
    /// By default the cache is on for every repository but `memory://` ones, under
    /// `$DR_CACHE_DIR`, else `$XDG_CACHE_HOME/dr`, else `~/.cache/dr`; setting `DR_NO_CACHE`
    /// (to anything but `0`) turns the default off. Entries are per repository (location and
    /// `dr-repo.json`'s `created_at`), checked against each LIST, and never written to the
    /// repository; see [`Repository::list`].
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache = dir
            .as_deref()
            .map(|d| ManifestCache::new(d, &self.location, &self.config.created_at));
        self.cache_dir = dir;
        self
    }

    /// Where manifests are cached, if anywhere.
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cache_dir.as_deref()
    }

    /// Pins the recipients this repository must have: anything that encrypts (backups, WAL
    /// pushes, copies) refuses when `dr-repo.json` lists others. Someone who can write to the
    /// store can then no longer make new backups readable by their own key.
    pub fn with_pinned_recipients(mut self, recipients: &Recipients) -> Self {
        let mut keys = recipients.to_strings();
        keys.sort();
        self.pinned = Some(keys);
        self
    }

    /// Checks `dr-repo.json`'s recipients against the pinned ones (nothing pinned: passes).
    ///
    /// # Errors
    /// [`Error::RecipientsChanged`] naming both sets.
    pub fn check_pinned_recipients(&self) -> Result<()> {
        let Some(pinned) = &self.pinned else {
            return Ok(());
        };
        let mut found = self.config.recipients.clone();
        found.sort();
        found.dedup();
        if &found == pinned {
            return Ok(());
        }
        Err(Error::RecipientsChanged {
            location: self.location.clone(),
            pinned: pinned.join(", "),
            found: found.join(", "),
        })
    }

    /// Loads the identities used to read backups.
    pub fn with_identities(mut self, identities: Identities) -> Self {
        self.identities = identities;
        self
    }

    /// Sets part size, zstd level and parallelism.
    pub fn with_pipeline(mut self, pipeline: PipelineOptions) -> Self {
        self.pipeline = pipeline;
        self
    }

    /// Reports progress of backups and restores to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = ProgressHandle::new(progress);
        self
    }

    /// Reports progress to `progress`, keeping its scope (operations narrow it to the
    /// operation, source and backup).
    pub fn with_progress_handle(mut self, progress: ProgressHandle) -> Self {
        self.progress = progress;
        self
    }

    /// Where this repository reports progress.
    pub fn progress(&self) -> &ProgressHandle {
        &self.progress
    }

    /// The repository's configuration (`dr-repo.json`).
    pub fn config(&self) -> &RepositoryConfig {
        &self.config
    }

    /// Where the repository is (credentials redacted).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The identities loaded for reading (may be empty).
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// The pipeline settings (zstd level, part size, threads).
    pub fn pipeline(&self) -> &PipelineOptions {
        &self.pipeline
    }

    /// The recipients of new backups, checked against the pinned ones.
    ///
    /// # Errors
    /// [`Error::BadKey`] when `dr-repo.json` holds an invalid key;
    /// [`Error::RecipientsChanged`] when they differ from the pinned recipients.
    pub fn recipients(&self) -> Result<Recipients> {
        self.check_pinned_recipients()?;
        Recipients::parse(&self.config.recipients.join("\n"), CONFIG_KEY)
    }

    /// Runs `backup` for `source` and commits it: data parts, then `SHA256SUMS`, then the
    /// manifest. On any failure nothing is committed; written parts are removed as far as the
    /// store allows, and whatever remains is found by [`Repository::orphans`].
    ///
    /// # Errors
    /// The backend's error, or any pipeline or store error.
    pub async fn backup(
        &self,
        source: &str,
        backup: &dyn Backup,
        opts: &BackupOptions,
    ) -> Result<Manifest> {
        check_name("source name", source)?;
        opts.labels
            .iter()
            .try_for_each(|l| check_name("label", l))?;
        // Before the lease: a refusal leaves nothing behind.
        let recipients = self.recipients()?;
        let started_at = Utc::now();
        let (id, lease) = self.claim_id(source, started_at).await?;
        let dir = backup_dir(source, &id);
        let progress = self.progress.narrowed(|s| {
            let mut s = s.with_source(source).with_backup(&id);
            s.operation.get_or_insert(Operation::Backup);
            s
        });
        let ctx = Arc::new(WriteContext::new(
            self.store.clone(),
            dir.clone(),
            recipients,
            self.pipeline.clone(),
            progress.clone(),
        ));
        progress.start("backup", None);
        let committed = self
            .write_and_commit(source, backup, opts, &id, started_at, ctx)
            .await;
        lease.release().await;
        match &committed {
            Ok(_) => progress.finish(),
            Err(e) => progress.fail(e.to_string()),
        }
        committed
    }

    /// A new backup id no other backup of `source` uses, with its lease held: ids carry 16
    /// random bits per second, so two backups started in one second may draw the same; the
    /// lease is created only if absent, and a directory with objects is never reused (the
    /// cleanup of a failed backup would otherwise delete another's parts).
    async fn claim_id(&self, source: &str, at: DateTime<Utc>) -> Result<(String, HeldLease)> {
        for _ in 0..8 {
            let id = new_backup_id(at);
            let Some(lease) = HeldLease::take(self.store.clone(), source, &id).await? else {
                continue;
            };
            if list_objects(self.store.as_ref(), &backup_dir(source, &id))
                .await?
                .is_empty()
            {
                return Ok((id, lease));
            }
            lease.release().await;
        }
        Err(Error::backend(
            "repository",
            "choosing a backup id",
            format!(
                "could not find a free backup id for {source} after 8 tries: is the repository's store answering consistently?"
            ),
        )
        .retryable())
    }

    async fn write_and_commit(
        &self,
        source: &str,
        backup: &dyn Backup,
        opts: &BackupOptions,
        id: &str,
        started_at: DateTime<Utc>,
        ctx: Arc<WriteContext>,
    ) -> Result<Manifest> {
        let dir = backup_dir(source, id);
        let mut writer = BackupWriter::new(ctx, id.to_owned(), source.to_owned());
        let outcome = backup.backup(&mut writer).await;
        writer.settle().await;
        let outcome =
            outcome.and_then(|info| writer.into_artifacts().map(|artifacts| (info, artifacts)));
        let (source_info, artifacts) = match outcome {
            Ok(done) => done,
            Err(e) => return Err(self.fail(&dir, source, id, started_at, e).await),
        };
        let manifest = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: id.to_owned(),
            source: source.to_owned(),
            kind: backup.kind().to_owned(),
            started_at,
            finished_at: Utc::now(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            encoding: Encoding {
                compression: "zstd".into(),
                level: self.pipeline.zstd_level,
                encryption: "age-x25519".into(),
                part_size: self.pipeline.part_size as u64,
            },
            recipients: self.config.recipients.clone(),
            artifacts,
            depends_on: declared_dependencies(backup, opts),
            labels: opts.labels.clone(),
            source_info,
        };
        match self.commit(&dir, &manifest).await {
            Ok(()) => {
                self.lock_new_backup(&manifest, opts.retain_until).await;
                Ok(manifest)
            }
            Err(e) => Err(self.fail(&dir, source, &manifest.id, started_at, e).await),
        }
    }

    async fn commit(&self, dir: &Path, manifest: &Manifest) -> Result<()> {
        let sums = manifest.sha256sums().into_bytes();
        create_object(self.store.as_ref(), &dir.clone().join(SUMS_NAME), sums).await?;
        create_object(
            self.store.as_ref(),
            &dir.clone().join(MANIFEST_NAME),
            manifest.to_json()?,
        )
        .await?;
        tracing::info!(source = %manifest.source, id = %manifest.id, bytes = manifest.plain_size(), "backup committed");
        Ok(())
    }

    /// Best-effort removal of an uncommitted backup's objects and a record of the failure
    /// (for the backup success rate of reports); returns `error` unchanged.
    async fn fail(
        &self,
        dir: &Path,
        source: &str,
        id: &str,
        started_at: DateTime<Utc>,
        error: Error,
    ) -> Error {
        tracing::warn!(%dir, %error, "backup failed; removing its parts");
        if let Err(cleanup) = self.delete_prefix(dir).await {
            tracing::warn!(%dir, %cleanup, "could not remove all parts; `dr prune` removes these orphans later");
        }
        let failure = BackupFailure {
            source: source.to_owned(),
            id: id.to_owned(),
            started_at,
            error: error.to_string(),
        };
        self.record_failure(&failure).await;
        error
    }

    /// Committed backups, newest first (by recorded start time, then id); all sources when
    /// `source` is `None`. A committed backup whose manifest cannot be read (invalid JSON, a
    /// newer format, a GET that fails after the retries) is listed in
    /// [`Listing::unreadable`]: it is never silently left out.
    ///
    /// One LIST finds what is committed; a manifest is fetched only when the manifest cache
    /// ([`Repository::with_cache_dir`]) holds no entry that matches the LIST's size, ETag and
    /// modification time, parses and names its key's source and id. Listing the whole
    /// repository also drops the entries of backups that are gone.
    ///
    /// # Errors
    /// [`Error::Store`] when listing fails.
    pub async fn list(&self, source: Option<&str>) -> Result<Listing> {
        let prefix = match source {
            Some(s) => Path::from("backups").join(s),
            None => Path::from("backups"),
        };
        let metas: Vec<ObjectMeta> = list_objects(self.store.as_ref(), &prefix)
            .await?
            .into_iter()
            .filter(|meta| meta.location.filename() == Some(MANIFEST_NAME))
            .collect();
        let listed: std::collections::HashSet<String> = match (&self.cache, source) {
            (Some(_), None) => metas.iter().map(|m| m.location.to_string()).collect(),
            _ => Default::default(),
        };
        let looked_up = match &self.cache {
            Some(cache) => cache.load(metas).await,
            None => metas.into_iter().map(|m| (m, None)).collect(),
        };
        let mut listing = Listing::default();
        let mut missing = Vec::new();
        for (meta, cached) in looked_up {
            match cached {
                Some(manifest) => listing.backups.push(manifest),
                None => missing.push(meta),
            }
        }
        let fetched = self.fetch_manifests(missing, &mut listing).await;
        if let Some(cache) = &self.cache {
            cache.store(fetched).await;
            if source.is_none() {
                cache.forget_except(listed).await;
            }
        }
        listing.backups.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        listing.unreadable.sort_by(|a, b| b.key.cmp(&a.key));
        Ok(listing)
    }

    /// GETs the manifests of `metas` (16 at once) into `listing`; returns the raw bytes of
    /// the ones that were read, for the cache.
    async fn fetch_manifests(
        &self,
        metas: Vec<ObjectMeta>,
        listing: &mut Listing,
    ) -> Vec<(ObjectMeta, bytes::Bytes)> {
        let results: Vec<(Result<(Manifest, bytes::Bytes)>, ObjectMeta)> =
            futures::stream::iter(metas)
                .map(|meta| async move { (self.fetch_manifest(&meta.location).await, meta) })
                .buffer_unordered(16)
                .collect()
                .await;
        let mut fetched = Vec::new();
        for (result, meta) in results {
            match result {
                Ok((manifest, bytes)) => {
                    listing.backups.push(manifest);
                    fetched.push((meta, bytes));
                }
                Err(e) => {
                    let key = &meta.location;
                    tracing::warn!(%key, error = %e, "unreadable manifest of a committed backup");
                    listing
                        .unreadable
                        .push(UnreadableBackup::new(key.as_ref(), &e));
                }
            }
        }
        fetched
    }

    async fn read_manifest(&self, key: &Path) -> Result<Manifest> {
        self.fetch_manifest(key).await.map(|(manifest, _)| manifest)
    }

    async fn fetch_manifest(&self, key: &Path) -> Result<(Manifest, bytes::Bytes)> {
        let bytes = get_object(self.store.as_ref(), key).await?;
        let manifest = Manifest::from_json(&bytes, key.as_ref())?;
        if backup_dir(&manifest.source, &manifest.id).join(MANIFEST_NAME) != *key {
            return Err(Error::BadManifest {
                key: key.to_string(),
                detail: "its source and id do not match its location".into(),
            });
        }
        Ok((manifest, bytes))
    }

    /// Finds the manifest of one backup of `source`.
    ///
    /// # Errors
    /// [`Error::BackupNotFound`], [`Error::Store`].
    pub async fn find(&self, source: &str, selector: &BackupSelector) -> Result<Manifest> {
        check_name("source name", source)?;
        if let BackupSelector::Id(id) = selector {
            check_name("backup id", id)?;
            let key = backup_dir(source, id).join(MANIFEST_NAME);
            return match self.read_manifest(&key).await {
                Err(Error::MissingObject { .. }) => {
                    let listing = self.list(Some(source)).await?;
                    Err(Error::BackupNotFound {
                        selector: format!(
                            "source {source}, {selector} ({})",
                            crate::listing::what_exists(&listing.backups)
                        ),
                    })
                }
                other => other,
            };
        }
        self.list(Some(source))
            .await?
            .pick(source, selector)
            .cloned()
    }

    /// Opens one backup for reading, with the repository's identities.
    ///
    /// # Errors
    /// As [`Repository::find`].
    pub async fn open_backup(
        &self,
        source: &str,
        selector: &BackupSelector,
    ) -> Result<BackupReader> {
        let manifest = self.find(source, selector).await?;
        Ok(self.reader(manifest))
    }

    /// A reader for a manifest already fetched (e.g. from [`Repository::list`]).
    /// Its progress is scoped to the backup's source and id.
    pub fn reader(&self, manifest: Manifest) -> BackupReader {
        let dir = backup_dir(&manifest.source, &manifest.id);
        let (manifest_source, manifest_id) = (manifest.source.clone(), manifest.id.clone());
        BackupReader::new(
            self.store.clone(),
            dir,
            manifest,
            self.identities.clone(),
            (self.pipeline.threads, self.pipeline.read_ahead_bytes),
        )
        .with_progress(
            self.progress
                .narrowed(|s| s.with_source(manifest_source).with_backup(manifest_id)),
        )
    }

    /// The same repository read through another view of its store (such as
    /// [`crate::latency::LatencyStore`] around it, to time a restore from farther away).
    pub(crate) fn through(&self, store: Arc<dyn ObjectStore>) -> Self {
        let mut far = self.clone();
        far.store = store;
        far.cache = None;
        far
    }

    /// Deletes a backup: the manifest first (so it is no longer listed), then its data.
    ///
    /// # Errors
    /// [`Error::Store`]; a failure after the manifest is gone leaves orphans only.
    pub async fn delete(&self, manifest: &Manifest) -> Result<()> {
        let dir = backup_dir(&manifest.source, &manifest.id);
        delete_object(self.store.as_ref(), &dir.clone().join(MANIFEST_NAME)).await?;
        self.delete_prefix(&dir).await?;
        tracing::info!(source = %manifest.source, id = %manifest.id, "backup deleted");
        Ok(())
    }

    async fn delete_prefix(&self, dir: &Path) -> Result<()> {
        let objects = list_objects(self.store.as_ref(), dir).await?;
        futures::stream::iter(objects)
            .map(|meta| async move { delete_object(self.store.as_ref(), &meta.location).await })
            .buffer_unordered(16)
            .try_collect::<()>()
            .await
    }

    /// Objects under `backups/` of no committed backup: leftovers of interrupted or failed
    /// backups and deletes. A backup is committed when its directory holds a `manifest.json`
    /// object, readable or not: an unreadable manifest never turns a backup into orphans.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn orphans(&self) -> Result<Vec<Orphan>> {
        // In this order: a backup takes its lease before it writes a part and commits its
        // manifest before it releases the lease, so every part listed first is either
        // under a live lease, in a directory whose manifest the second listing sees, or
        // truly orphaned.
        let all = list_objects(self.store.as_ref(), &Path::from("backups")).await?;
        let writing: Vec<Path> = leases(self.store.as_ref(), Utc::now())
            .await?
            .0
            .into_iter()
            .map(|(source, id)| backup_dir(&source, &id))
            .collect();
        let mut committed: std::collections::HashSet<String> =
            list_objects(self.store.as_ref(), &Path::from("backups"))
                .await?
                .into_iter()
                .filter(|meta| meta.location.filename() == Some(MANIFEST_NAME))
                .filter_map(|meta| parent_dir(&meta.location))
                .collect();
        // A backup a committed backup depends on is never an orphan, even without its
        // manifest: its parts are what the increment needs (and may decode by hand).
        for m in self.list(None).await?.backups {
            committed.extend(
                m.depends_on
                    .iter()
                    .map(|dep| backup_dir(&m.source, dep).to_string()),
            );
        }
        let mut orphans: Vec<Orphan> = all
            .into_iter()
            .filter(|meta| parent_dir(&meta.location).is_none_or(|dir| !committed.contains(&dir)))
            .filter(|meta| !writing.iter().any(|dir| meta.location.prefix_matches(dir)))
            .map(|meta| Orphan {
                key: meta.location.to_string(),
                size: meta.size,
                last_modified: meta.last_modified,
            })
            .collect();
        orphans.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(orphans)
    }

    /// Backup directories that hold a `SHA256SUMS` (written just before the manifest) but no
    /// `manifest.json`, and no live lease: a backup whose manifest was deleted, or one that
    /// died in the instant between the two. Their parts may still decode by hand; `dr verify`
    /// reports them, `dr prune` removes them with the orphans.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn headless_backups(&self) -> Result<Vec<String>> {
        let all = list_objects(self.store.as_ref(), &Path::from("backups")).await?;
        let writing: std::collections::HashSet<String> = leases(self.store.as_ref(), Utc::now())
            .await?
            .0
            .into_iter()
            .map(|(source, id)| backup_dir(&source, &id).to_string())
            .collect();
        let dirs_with = |name: &str| -> std::collections::BTreeSet<String> {
            all.iter()
                .filter(|meta| meta.location.filename() == Some(name))
                .filter_map(|meta| parent_dir(&meta.location))
                .collect()
        };
        let committed = dirs_with(MANIFEST_NAME);
        Ok(dirs_with(SUMS_NAME)
            .into_iter()
            .filter(|dir| !committed.contains(dir) && !writing.contains(dir))
            .collect())
    }

    /// Deletes the orphans last modified before `older_than` (a grace period protects
    /// backups still being written); returns what was removed.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn remove_orphans(&self, older_than: DateTime<Utc>) -> Result<Vec<Orphan>> {
        let stale: Vec<Orphan> = self
            .orphans()
            .await?
            .into_iter()
            .filter(|o| o.last_modified < older_than)
            .collect();
        for orphan in &stale {
            delete_object(self.store.as_ref(), &Path::from(orphan.key.as_str())).await?;
        }
        // Leases of backups that died: their parts are orphans now, the lease is litter.
        for key in leases(self.store.as_ref(), Utc::now()).await?.1 {
            delete_object(self.store.as_ref(), &key).await?;
        }
        Ok(stale)
    }
}

fn parse_config(bytes: &[u8]) -> Result<RepositoryConfig> {
    #[derive(Deserialize)]
    struct VersionOnly {
        format_version: u32,
    }
    let bad = |e: serde_json::Error| Error::BadManifest {
        key: CONFIG_KEY.into(),
        detail: e.to_string(),
    };
    let version: VersionOnly = serde_json::from_slice(bytes).map_err(bad)?;
    if version.format_version != REPOSITORY_FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            what: "repository",
            found: version.format_version,
            supported: REPOSITORY_FORMAT_VERSION,
        });
    }
    serde_json::from_slice(bytes).map_err(bad)
}

/// `backups/<source>/<id>`.
pub(crate) fn backup_dir(source: &str, id: &str) -> Path {
    Path::from("backups").join(source).join(id)
}

/// A new backup id: `YYYYMMDDTHHMMSSZ-xxxx`, sorting by time, with 16 random bits.
pub(crate) fn new_backup_id(at: DateTime<Utc>) -> String {
    format!(
        "{}-{:04x}",
        at.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
}

/// `backups/<source>/<id>` of an object key below a backup directory (any depth).
fn parent_dir(key: &Path) -> Option<String> {
    let mut parts = key.parts();
    let (backups, source, id) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next()?;
    (backups.as_ref() == "backups").then(|| format!("backups/{}/{}", source.as_ref(), id.as_ref()))
}
