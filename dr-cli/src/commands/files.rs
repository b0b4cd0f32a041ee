//! Directory and bucket sources: incremental backups over the newest backup of the source,
//! restores of the whole tree, selected paths, or objects into a bucket.

use dr_core::{Backup, BackupSelector, Repository, RestoreOptions};
use dr_storage::files::{BucketSource, BucketTarget, DirectorySource, DirectoryTarget, read_index};

use crate::app::App;
use crate::cli::RestoreArgs;
use crate::config::SourceConfig;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// The source to back up and the backups it will reference: incremental over the newest
/// backup of `name` unless `full` (or there is none).
pub async fn source(
    repo: &Repository,
    name: &str,
    config: &SourceConfig,
    full: bool,
) -> CliResult<(Box<dyn Backup>, Vec<String>)> {
    if config.directory().is_none() && config.bucket().is_none() {
        return Ok((config.backup()?, Vec::new()));
    }
    let parent = match repo.find(name, &BackupSelector::Latest).await {
        Ok(parent) if !full => parent,
        _ => return Ok((config.backup()?, Vec::new())),
    };
    let index = read_index(&repo.reader(parent.clone())).await.doing(|| {
        format!(
            "reading the file index of {} (pass --full to start afresh)",
            parent.id
        )
    })?;
    let mut depends_on = index.holders();
    depends_on.retain(|id| *id != parent.id);
    depends_on.push(parent.id.clone());
    let source: Box<dyn Backup> = match (config.directory(), config.bucket()) {
        (Some(root), _) => Box::new(
            DirectorySource::new(root)
                .with_filter(config.tree_filter())
                .with_parent(&parent.id, index),
        ),
        (None, Some(url)) => Box::new(
            BucketSource::new(config.bucket_store(url)?, None).with_parent(&parent.id, index),
        ),
        (None, None) => config.backup()?,
    };
    Ok((source, depends_on))
}

/// `dr restore SOURCE [ID] [--to URL] [--only KEY...]` for a bucket source.
pub async fn restore_bucket(
    app: &App,
    args: &RestoreArgs,
    config: &SourceConfig,
    url: &str,
) -> CliResult<()> {
    let repo = app.read_repository(None).await?;
    let selector: BackupSelector = args.backup.parse().map_err(CliError::from)?;
    let reader = repo
        .open_backup(args.source_name(), &selector)
        .await
        .doing(|| format!("finding the backup of {} to restore", args.source_name()))?;
    let target_url = args
        .to
        .as_ref()
        .map_or_else(|| url.to_owned(), |t| t.display().to_string());
    let store = config.bucket_store(&target_url)?;
    let restored = BucketTarget::new(store, None, repo.clone())
        .restore_objects(&reader, &args.only)
        .await
        .doing(|| format!("restoring backup {} of {}", reader.id(), args.source_name()))?;
    let shown = dr_core::redact_url(&target_url);
    let (objects, dropped) = (restored.objects, restored.metadata_dropped);
    if app.global.json {
        return output::json(&serde_json::json!({
            "backup": reader.id(), "target": shown, "objects": objects,
            "bytes": restored.bytes, "metadata_dropped": dropped
        }));
    }
    println!(
        "restored {objects} objects ({}) of {} {} into {shown}; every object matched its SHA-256",
        output::size(restored.bytes),
        args.source_name(),
        reader.id(),
    );
    if dropped > 0 {
        println!(
            "note: {dropped} of them had metadata (Content-Type, Cache-Control, user metadata...) \
             that {shown} cannot hold: their bytes were restored without it; restore into an \
             object store to keep it"
        );
    }
    Ok(())
}

/// `dr restore SOURCE [ID] [--to DIR] [--only PATH...]` for a directory source.
pub async fn restore(app: &App, args: &RestoreArgs, root: &std::path::Path) -> CliResult<()> {
    let bar = app.bar();
    let repo = app.read_repository(Some(bar.clone())).await?;
    let selector: BackupSelector = args.backup.parse().map_err(CliError::from)?;
    let reader = repo
        .open_backup(args.source_name(), &selector)
        .await
        .doing(|| format!("finding the backup of {} to restore", args.source_name()))?;
    let mut options = RestoreOptions::default();
    if let Some(to) = &args.to {
        options = options.with_target(to);
    }
    let restored = DirectoryTarget::new(root, repo.clone())
        .with_selection(args.only.clone())
        .with_owners(args.owners || (running_as_root() && !args.no_owners))
        .restore_tree(&reader, &options)
        .await;
    bar.finish();
    let (report, tree) =
        restored.doing(|| format!("restoring backup {} of {}", reader.id(), args.source_name()))?;
    if app.global.json {
        return output::json(&serde_json::json!({ "report": report, "tree": tree }));
    }
    println!(
        "restored {} {}: {} files ({}), {} directories, {} symlinks into {} in {:.1} s; every file matched its SHA-256",
        args.source_name(),
        report.backup_id,
        tree.files,
        output::size(tree.bytes),
        tree.directories,
        tree.symlinks,
        report.target,
        report.elapsed_ms as f64 / 1000.0
    );
    if tree.hard_links > 0 || tree.special > 0 {
        println!(
            "{} hard links restored as links, {} FIFOs and device nodes created",
            tree.hard_links, tree.special
        );
    }
    if !tree.special_not_created.is_empty() {
        println!(
            "warning: {} FIFOs or device nodes were not created: {}",
            tree.special_not_created.len(),
            tree.special_not_created.join("; ")
        );
    }
    if !tree.zero_size.is_empty() {
        println!(
            "zero-size files ({}): {}",
            tree.zero_size.len(),
            tree.zero_size.join(", ")
        );
    }
    if !tree.changed_during_backup.is_empty() {
        println!(
            "warning: these files changed while they were backed up and may be torn: {}",
            tree.changed_during_backup.join(", ")
        );
    }
    if let Some(kept) = &report.previous_kept_at {
        println!("the previous tree is kept at {kept}");
    }
    if let Some(merged) = &tree.merged {
        print_merged(merged);
    }
    Ok(())
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// What a selection restored into an existing tree changed there.
fn print_merged(merged: &dr_storage::files::Merged) {
    println!(
        "put {} selected paths into the existing tree (everything else left as it was): {}",
        merged.placed.len(),
        merged.placed.join(", ")
    );
    if merged.kept_aside.is_empty() {
        println!("nothing in the tree was in their way; nothing was moved aside");
    } else {
        let kept: Vec<String> = merged
            .kept_aside
            .iter()
            .map(|k| format!("{} -> {}", k.path, k.kept_at))
            .collect();
        println!(
            "kept aside {} entries that were in their way: {}",
            kept.len(),
            kept.join("; ")
        );
    }
}
