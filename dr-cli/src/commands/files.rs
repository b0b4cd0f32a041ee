//! Directory sources: incremental backups over the newest backup of the source, restores of
//! the whole tree or selected paths.

use dr_core::{Backup, BackupSelector, Repository, RestoreOptions};
use dr_storage::files::{DirectorySource, DirectoryTarget, read_index};

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
    let Some(root) = config.directory() else {
        return Ok((config.backup()?, Vec::new()));
    };
    let source = DirectorySource::new(root).with_filter(config.tree_filter());
    let parent = match repo.find(name, &BackupSelector::Latest).await {
        Ok(parent) if !full => parent,
        _ => return Ok((Box::new(source), Vec::new())),
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
    Ok((Box::new(source.with_parent(&parent.id, index)), depends_on))
}

/// `dr restore SOURCE [ID] [--to DIR] [--only PATH...]` for a directory source.
pub async fn restore(app: &App, args: &RestoreArgs, root: &std::path::Path) -> CliResult<()> {
    let bar = app.bar();
    let repo = app.repository(Some(bar.clone())).await?;
    let selector: BackupSelector = args.backup.parse().map_err(CliError::from)?;
    let reader = repo
        .open_backup(&args.source, &selector)
        .await
        .doing(|| format!("finding the backup of {} to restore", args.source))?;
    let mut options = RestoreOptions::default();
    if let Some(to) = &args.to {
        options = options.with_target(to);
    }
    let restored = DirectoryTarget::new(root, repo.clone())
        .with_selection(args.only.clone())
        .restore_tree(&reader, &options)
        .await;
    bar.finish();
    let (report, tree) =
        restored.doing(|| format!("restoring backup {} of {}", reader.id(), args.source))?;
    if app.global.json {
        return output::json(&serde_json::json!({ "report": report, "tree": tree }));
    }
    println!(
        "restored {} {}: {} files ({}), {} directories, {} symlinks into {} in {:.1} s; every file matched its SHA-256",
        args.source,
        report.backup_id,
        tree.files,
        output::size(tree.bytes),
        tree.directories,
        tree.symlinks,
        report.target,
        report.elapsed_ms as f64 / 1000.0
    );
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
    Ok(())
}
