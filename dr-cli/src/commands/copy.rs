//! `dr copy` and `dr backup --copy`: committed backups (and WAL archives) replicated to the
//! repositories named in `copies`, idempotently and checked.

use dr_core::copy::{CopyOutcome, copy_backup, copy_points, copy_wal, open_or_init_like};
use dr_core::{Manifest, Repository};
use serde_json::json;

use crate::app::App;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// `dr copy [--to URL]`: every committed backup to each destination.
pub async fn copy(app: &App, to: Option<&str>) -> CliResult<()> {
    let repo = app.repository(None).await?;
    let listing = repo.list(None).await.doing(|| "listing backups".into())?;
    let mut manifests = listing.backups.clone();
    manifests.reverse();
    let results = copy_to_all(app, &repo, &manifests, to).await?;
    if app.global.json {
        output::json(&results)?;
    } else {
        for unreadable in &listing.unreadable {
            println!("PROBLEM not copied: {}", unreadable.describe());
        }
    }
    if listing.is_complete() {
        return Ok(());
    }
    Err(CliError::verification(format!(
        "{} committed backups were not copied: their manifests are unreadable",
        listing.unreadable.len()
    )))
}

/// Copies `manifests` to `to`, or to every configured copy; prints a line per destination.
pub async fn copy_to_all(
    app: &App,
    repo: &Repository,
    manifests: &[Manifest],
    to: Option<&str>,
) -> CliResult<Vec<serde_json::Value>> {
    let destinations: Vec<String> = match to {
        Some(url) => vec![url.to_owned()],
        None => app.config.copies.clone(),
    };
    if destinations.is_empty() {
        return Err(CliError::usage(
            "no destination: pass --to URL or list them in `copies` in dr.toml",
        ));
    }
    let mut results = Vec::new();
    for url in destinations {
        let shown = dr_core::redact_url(&url);
        let location = dr_storage::open_store(&url, &[], true).map_err(CliError::from)?;
        let target = open_or_init_like(repo, location.store(), &location.to_string())
            .await
            .doing(|| format!("opening the copy at {shown}"))?;
        let target = app.equip(target, None)?;
        let (mut copied, mut present, mut bytes) = (0u64, 0u64, 0u64);
        for manifest in manifests {
            match copy_backup(repo, &target, manifest).await.doing(|| {
                format!(
                    "copying backup {} of {} to {shown}",
                    manifest.id, manifest.source
                )
            })? {
                CopyOutcome::AlreadyThere => present += 1,
                CopyOutcome::Copied { bytes: b, .. } => {
                    copied += 1;
                    bytes += b;
                }
            }
        }
        let wal = copy_wal(repo, &target)
            .await
            .doing(|| format!("copying the WAL archive to {shown}"))?;
        let points = copy_points(repo, &target)
            .await
            .doing(|| format!("copying the recovery points to {shown}"))?;
        if !app.global.json {
            println!(
                "{shown}: {copied} backups copied ({}), {present} already there, {wal} WAL objects and {points} recovery points copied",
                output::size(bytes)
            );
        }
        results.push(
            json!({ "destination": shown, "copied": copied, "already_there": present,
            "bytes": bytes, "wal_objects": wal, "points": points }),
        );
    }
    Ok(results)
}
