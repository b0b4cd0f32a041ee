//! Directories as configured sources of the kind registry (`kind = "directory"`): the
//! settings of dr.toml, the incremental parent chosen from the repository, the whole
//! restore flow, and the support of the `files` manifest kind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr_core::{
    Backup, BackupSelector, Error, Repository, Restore, RestoreOptions, RestoreRank, RestoreReport,
    RestoreRequest, Result, Source, SourceFactory, SourceSettings, Verify, async_trait,
};
use serde::{Deserialize, Serialize};

use super::backup::{DirectorySource, FILES_KIND};
use super::restore::{DirectoryTarget, TreeReport};
use super::verify::TreeVerifier;
use super::walk::TreeFilter;

/// The source type of directories in configurations.
pub const DIRECTORY_SOURCE_TYPE: &str = "directory";

/// The settings of a directory source (a `[sources.NAME]` table with `kind = "directory"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DirectorySettings {
    /// The root of the tree.
    pub path: PathBuf,
    /// Only files matching one of these globs (relative paths; `*`, `?`, `**`).
    #[serde(default)]
    pub include: Vec<String>,
    /// Leave out paths matching one of these globs (e.g. `"cache"`, `"*.tmp"`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Also descend into other filesystems mounted below `path`.
    #[serde(default)]
    pub cross_filesystems: bool,
}

impl DirectorySettings {
    /// The whole tree under `path`, on one filesystem.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DirectorySettings {
            path: path.into(),
            include: Vec::new(),
            exclude: Vec::new(),
            cross_filesystems: false,
        }
    }

    /// Only files matching one of these globs.
    pub fn with_include(mut self, include: Vec<String>) -> Self {
        self.include = include;
        self
    }

    /// Leaves out paths matching one of these globs.
    pub fn with_exclude(mut self, exclude: Vec<String>) -> Self {
        self.exclude = exclude;
        self
    }

    /// Also descends into other filesystems.
    pub fn with_cross_filesystems(mut self, cross: bool) -> Self {
        self.cross_filesystems = cross;
        self
    }

    /// The walk's filter.
    pub fn filter(&self) -> TreeFilter {
        TreeFilter {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            cross_filesystems: self.cross_filesystems,
        }
    }

    /// These settings as the registry takes them.
    ///
    /// # Errors
    /// [`Error::Usage`] if they cannot be serialized (a path that is not UTF-8).
    pub fn to_source_settings(&self) -> Result<SourceSettings> {
        to_source_settings(self)
    }
}

pub(crate) fn to_source_settings<T: Serialize>(settings: &T) -> Result<SourceSettings> {
    serde_json::to_value(settings)
        .map(SourceSettings::new)
        .map_err(|e| Error::Usage(format!("settings that cannot be written as JSON: {e}")))
}

/// Builds directory sources (`kind = "directory"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectoryFactory;

impl SourceFactory for DirectoryFactory {
    fn source_type(&self) -> &str {
        DIRECTORY_SOURCE_TYPE
    }

    fn build(&self, settings: &SourceSettings) -> Result<Arc<dyn Source>> {
        refuse_checks(settings, DIRECTORY_SOURCE_TYPE)?;
        let settings: DirectorySettings = settings.parse(DIRECTORY_SOURCE_TYPE)?;
        Ok(Arc::new(ConfiguredDirectory::new(settings)))
    }
}

/// User checks are SQL run on restored databases: a tree has nothing to run them on.
pub(crate) fn refuse_checks(settings: &SourceSettings, source_type: &str) -> Result<()> {
    if settings.checks.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "a {source_type} source has no user checks (they are SQL queries run on a restored \
         database): remove its `checks`"
    )))
}

/// A configured directory source.
#[derive(Debug, Clone)]
pub struct ConfiguredDirectory {
    settings: DirectorySettings,
}

impl ConfiguredDirectory {
    /// The source `settings` describe.
    pub fn new(settings: DirectorySettings) -> Self {
        ConfiguredDirectory { settings }
    }

    /// Its settings.
    pub fn settings(&self) -> &DirectorySettings {
        &self.settings
    }
}

#[async_trait]
impl Source for ConfiguredDirectory {
    fn kind(&self) -> &str {
        FILES_KIND
    }

    fn restore_rank(&self) -> RestoreRank {
        RestoreRank::Files
    }

    /// Incremental over the newest backup of `source_name` unless `full` (or there is
    /// none); the backup declares its parent and the backups holding unchanged files.
    async fn backup(
        &self,
        repo: &Repository,
        source_name: &str,
        full: bool,
    ) -> Result<Box<dyn Backup>> {
        let source = DirectorySource::new(&self.settings.path).with_filter(self.settings.filter());
        if full {
            return Ok(Box::new(source));
        }
        Ok(Box::new(match latest_backup(repo, source_name).await? {
            Some(parent) => source.with_parent_backup(repo.reader(parent)),
            None => source,
        }))
    }

    async fn restore(&self, request: &RestoreRequest<'_>) -> Result<RestoreReport> {
        let options = request.options;
        refuse_unsupported(options, DIRECTORY_SOURCE_TYPE, true)?;
        let reader = request.open().await?;
        require_files(reader.manifest())?;
        let owners = options.owners.unwrap_or_else(running_as_root);
        let (mut report, tree) = DirectoryTarget::new(&self.settings.path, request.repo.clone())
            .with_selection(options.only.clone())
            .with_owners(owners)
            .restore_tree(&reader, options)
            .await?;
        report.notes = tree_notes(&tree);
        report.summary = tree_summary(&tree);
        report.details = serde_json::to_value(&tree)
            .map_err(|e| Error::internal("describing the restored tree", e))?;
        Ok(report)
    }

    fn verifier(&self, repo: &Repository) -> Result<Box<dyn Verify>> {
        Ok(Box::new(TreeVerifier::new(repo.clone())))
    }

    fn scratch_restorer(&self, repo: &Repository, scratch: &Path) -> Option<Box<dyn Restore>> {
        Some(Box::new(DirectoryTarget::new(scratch, repo.clone())))
    }
}

/// The newest backup of `source_name`, `None` when it has no backup yet.
///
/// # Errors
/// The repository's errors; a newest backup of another kind.
pub(crate) async fn latest_backup(
    repo: &Repository,
    source_name: &str,
) -> Result<Option<dr_core::Manifest>> {
    let parent = match repo.find(source_name, &BackupSelector::Latest).await {
        Ok(parent) => parent,
        Err(Error::BackupNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    require_files(&parent)?;
    Ok(Some(parent))
}

/// Refuses a backup that is not a file tree (a source name reused for another kind).
fn require_files(manifest: &dr_core::Manifest) -> Result<()> {
    if manifest.kind == FILES_KIND {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "backup {} of {} is a {} backup, not a file tree: restore it through a source of that \
         kind (or back up with `full` under another name)",
        manifest.id, manifest.source, manifest.kind
    )))
}

/// Whether this process runs with the effective user id 0.
fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Refuses every restore option a tree or bucket restore does not honour, before anything
/// is read or written. `tree`: owners are honoured (directories, not buckets).
pub(crate) fn refuse_unsupported(
    options: &RestoreOptions,
    source_type: &str,
    tree: bool,
) -> Result<()> {
    let what = if tree {
        "a directory restore writes a checked tree beside the target and swaps it in (the \
         previous tree is kept), or puts `only` paths into it"
    } else {
        "a bucket restore writes checked objects into the source's bucket or the `target` URL"
    };
    let owners =
        format!("owners (--owners, --no-owners) is for directory sources, not {source_type}");
    dr_core::registry::refuse_unsupported_by(
        Some(what),
        &[
            (options.swap, "swap (--swap) is for PostgreSQL"),
            (options.in_place, "in_place (--in-place) is for PostgreSQL"),
            (
                options.server.is_some(),
                "server (--server) is for PostgreSQL and Redis",
            ),
            (
                options.globals || options.with_role_passwords,
                "globals (--globals) and with_role_passwords (--with-role-passwords) are for PostgreSQL",
            ),
            (
                options.recovery_target.is_some(),
                "recovery_target (--at with a WAL archive) is for physical PostgreSQL",
            ),
            dr_core::registry::pitr_only(options),
            (!tree && options.owners.is_some(), &owners),
        ],
    )
}

/// What the user should know about a restored tree, in words.
/// What a tree restore wrote, in words (the `summary` of its report).
fn tree_summary(tree: &TreeReport) -> Vec<String> {
    let mut lines = vec![format!(
        "{} files ({}), {} directories, {} symlinks; every file matched its SHA-256",
        tree.files,
        dr_core::human_size(tree.bytes),
        tree.directories,
        tree.symlinks
    )];
    if tree.hard_links > 0 || tree.special > 0 {
        lines.push(format!(
            "{} hard links restored as links, {} FIFOs and device nodes created",
            tree.hard_links, tree.special
        ));
    }
    if !tree.zero_size.is_empty() {
        lines.push(format!(
            "zero-size files ({}): {}",
            tree.zero_size.len(),
            tree.zero_size.join(", ")
        ));
    }
    if let Some(merged) = &tree.merged {
        lines.push(format!(
            "put {} selected paths into the existing tree (everything else left as it was): {}",
            merged.placed.len(),
            merged.placed.join(", ")
        ));
        if merged.kept_aside.is_empty() {
            lines.push("nothing in the tree was in their way; nothing was moved aside".into());
        } else {
            let kept: Vec<String> = merged
                .kept_aside
                .iter()
                .map(|k| format!("{} -> {}", k.path, k.kept_at))
                .collect();
            lines.push(format!(
                "kept aside {} entries that were in their way: {}",
                kept.len(),
                kept.join("; ")
            ));
        }
    }
    lines
}

/// What the user must know about a restored tree: what could not be restored as it was.
fn tree_notes(tree: &TreeReport) -> Vec<String> {
    let mut notes = Vec::new();
    if !tree.special_not_created.is_empty() {
        notes.push(format!(
            "{} FIFOs or device nodes were not created: {}",
            tree.special_not_created.len(),
            tree.special_not_created.join("; ")
        ));
    }
    if !tree.changed_during_backup.is_empty() {
        notes.push(format!(
            "these files changed while they were backed up and may be torn: {}",
            tree.changed_during_backup.join(", ")
        ));
    }
    notes
}

/// The `files` manifest kind (directory and bucket backups) without a configured source.
#[derive(Debug, Clone, Copy, Default)]
pub struct FilesKind;

impl dr_core::KindSupport for FilesKind {
    fn kind(&self) -> &str {
        FILES_KIND
    }

    fn verifier(&self, repo: &Repository) -> Option<Box<dyn Verify>> {
        Some(Box::new(TreeVerifier::new(repo.clone())))
    }

    /// A tree restore into `scratch` (bucket backups come out as files); an increment
    /// reads its unchanged files from the backups it depends on in `repo`.
    fn scratch_restorer(&self, repo: &Repository, scratch: &Path) -> Option<Box<dyn Restore>> {
        Some(Box::new(DirectoryTarget::new(scratch, repo.clone())))
    }

    fn restore_rank(&self) -> RestoreRank {
        RestoreRank::Files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unsupported_option_is_named_with_what_a_tree_restore_does() {
        assert!(refuse_unsupported(&RestoreOptions::default(), "directory", true).is_ok());
        let mut options = RestoreOptions::default();
        options.swap = true;
        options.dry_run = true;
        options.owners = Some(true);
        let err = refuse_unsupported(&options, "bucket", false)
            .unwrap_err()
            .to_string();
        for named in ["--swap", "--dry-run", "--owners", "a bucket restore writes"] {
            assert!(err.contains(named), "{named} in {err}");
        }
        assert!(err.contains("nothing was read or written"), "{err}");
        // Owners are a directory's own option.
        let tree = refuse_unsupported(&options, "directory", true)
            .unwrap_err()
            .to_string();
        assert!(!tree.contains("--owners"), "{tree}");
    }
}
