//! `dr copy` and `dr backup --copy`: committed backups (and WAL archives) replicated to the
//! repositories named in `copies`, idempotently and checked, by [`dr_core::ops::copy`].

use dr_core::copy::open_or_init_like;
use dr_core::ops::System;
use dr_core::ops::copy::{CopyDestination, CopyOptions, CopyReport, copy as copy_op};
use dr_core::{Manifest, ProgressHandle, Repository};

use crate::app::App;
use crate::config::{StoreConfig, as_pairs, store_options};
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// `dr copy [--to URL]`: every committed backup to each destination.
pub async fn copy(app: &App, to: Option<&str>) -> CliResult<()> {
    let repo = app.repository(None).await?;
    let options = CopyOptions::to(destinations(app, &repo, to).await?);
    let report = run(&repo, &options).await?;
    if app.global.json {
        output::json(&report)?;
    } else {
        print(&report);
        for unreadable in &report.unreadable {
            println!("PROBLEM not copied: {unreadable}");
        }
    }
    if report.is_complete() {
        return Ok(());
    }
    Err(CliError::verification(format!(
        "{} committed backups were not copied: their manifests are unreadable",
        report.unreadable.len()
    )))
}

/// Copies `manifests` to `to`, or to every configured copy; prints a line per destination.
pub async fn copy_to_all(
    app: &App,
    repo: &Repository,
    manifests: &[Manifest],
    to: Option<&str>,
) -> CliResult<CopyReport> {
    let ids = manifests.iter().map(|m| m.id.clone()).collect();
    let options = CopyOptions::to(destinations(app, repo, to).await?).with_ids(ids);
    let report = run(repo, &options).await?;
    if !app.global.json {
        print(&report);
    }
    Ok(report)
}

async fn run(repo: &Repository, options: &CopyOptions) -> CliResult<CopyReport> {
    // A copy needs no configured source: only the repositories.
    let system = System::new(dr::registry());
    copy_op(repo, &system, options, &ProgressHandle::default())
        .await
        .doing(|| "copying backups".into())
}

/// The destinations: `to`, or every configured copy, opened (created like `repo` when new).
async fn destinations(
    app: &App,
    repo: &Repository,
    to: Option<&str>,
) -> CliResult<Vec<CopyDestination>> {
    let stores: Vec<StoreConfig> = match to {
        Some(url) => vec![app.copy_store(url)],
        None => app.config.copies.clone(),
    };
    if stores.is_empty() {
        return Err(CliError::usage(
            "no destination: pass --to URL or list them in `copies` in dr.toml",
        ));
    }
    let mut opened = Vec::new();
    for store in stores {
        let (url, options) = (store.url(), store_options(store.ca_file()));
        let shown = dr_core::redact_url(url);
        let location = dr_storage::open_store(url, &as_pairs(&options), true)?;
        let target = open_or_init_like(repo, location.store(), &location.to_string())
            .await
            .map_err(|e| dr_storage::explain_untrusted_certificate(e, &shown))
            .doing(|| format!("opening the copy at {shown}"))?;
        opened.push(CopyDestination::new(url, app.equip(target, None)?));
    }
    Ok(opened)
}

fn print(report: &CopyReport) {
    for d in &report.destinations {
        println!(
            "{}: {} backups copied ({}), {} already there, {} WAL objects and {} recovery points copied",
            d.destination,
            d.copied,
            output::size(d.copied_bytes),
            d.already_there,
            d.wal_objects,
            d.points
        );
    }
}
