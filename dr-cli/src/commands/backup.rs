//! `dr init`, `dr keygen`, `dr backup`.

use std::path::PathBuf;

use dr_core::ops::backup::{BackupRunOptions, BackupRunReport, SourceBackupReport};
use dr_core::{Manifest, ProgressHandle};
use serde_json::json;

use crate::app::App;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// `dr init`.
pub async fn init(app: &App, recipients: &[String]) -> CliResult<()> {
    let url = app.repository_url()?;
    let recipients = app.init_recipients(recipients)?;
    let options = app.repository_options();
    let repo = dr_storage::init_repository(&url, &crate::config::as_pairs(&options), &recipients)
        .await
        .doing(|| "creating the repository".into())?;
    if app.global.json {
        return output::json(
            &json!({ "repository": repo.location(), "recipients": recipients.to_strings() }),
        );
    }
    println!("created repository {}", repo.location());
    println!(
        "backups are encrypted to: {}",
        recipients.to_strings().join(", ")
    );
    Ok(())
}

/// `dr keygen`.
pub fn keygen(app: &App, path: Option<PathBuf>, passphrase: bool) -> CliResult<()> {
    let path = path
        .or_else(|| app.identity_path())
        .unwrap_or_else(|| PathBuf::from("dr-key.txt"));
    let secret = match (passphrase, &app.global.identity_passphrase) {
        (false, _) => None,
        (true, Some(p)) => Some(p.as_str()),
        (true, None) => {
            return Err(CliError::usage(
                "--passphrase needs DR_IDENTITY_PASSPHRASE set",
            ));
        }
    };
    let public =
        dr_core::generate_identity_file(&path, secret).doing(|| "generating a key".into())?;
    if app.global.json {
        return output::json(&json!({ "identity": path, "public_key": public }));
    }
    println!(
        "wrote {} (keep it secret, keep a copy offline)",
        path.display()
    );
    println!("public key: {public}");
    Ok(())
}

/// What `dr backup` backs up: one source, or a group recorded as one recovery point.
pub struct BackupRun<'a> {
    /// One source by name.
    pub source: Option<&'a str>,
    /// Every configured source (the group `all`).
    pub all: bool,
    /// A group named in the configuration.
    pub group: Option<&'a str>,
    /// Labels recorded with every backup (and the point).
    pub labels: Vec<String>,
    /// Directory sources: store every file.
    pub full: bool,
    /// Copy the new backups to the configured copies.
    pub copy: bool,
}

/// `dr backup [SOURCE|--all|--group G]`: with a group, every source is backed up even when
/// one fails, and one recovery point records the backups (and the failures).
pub async fn backup(app: &App, run: BackupRun<'_>) -> CliResult<()> {
    let target = match (run.source, run.all, run.group) {
        (Some(name), _, _) => BackupRunOptions::source(name),
        (None, true, _) => BackupRunOptions::all(),
        (None, false, Some(group)) => BackupRunOptions::group(group),
        (None, false, None) => {
            return Err(CliError::usage(
                "name a source to back up, or pass --all or --group NAME",
            ));
        }
    };
    let options = target.with_labels(run.labels).with_full(run.full);
    let system = app.system()?;
    let bar = app.bar();
    let repo = app.repository(Some(bar.clone())).await?;
    let progress = ProgressHandle::new(bar.clone());
    let report = dr_core::ops::backup::backup(&repo, &system, &options, &progress).await;
    bar.finish();
    let report = report.doing(|| "backing up".into())?;
    if !app.global.json {
        print(&report);
    }
    let made: Vec<Manifest> = report.manifests().cloned().collect();
    if run.copy {
        super::copy::copy_to_all(app, &repo, &made, None).await?;
    }
    if app.global.json {
        output::json(&report)?;
    }
    outcome(&report)
}

fn print(report: &BackupRunReport) {
    for source in &report.sources {
        match (&source.id, &source.error) {
            (Some(id), _) => {
                println!(
                    "backed up {}: {} ({} stored) in {:.1} s as {id}",
                    source.source,
                    output::size(source.plain_bytes),
                    output::size(source.stored_bytes),
                    source.elapsed_ms as f64 / 1000.0
                );
                for note in &source.notes {
                    println!("note: {note}");
                }
            }
            (None, Some(error)) => eprintln!("error: backing up source {}: {error}", source.source),
            (None, None) => {}
        }
    }
    if let Some(point) = &report.point {
        let state = if point.is_complete() {
            "complete"
        } else {
            "INCOMPLETE"
        };
        println!(
            "recovery point {} ({}, {} backups, {state})",
            point.id,
            point.group,
            point.members.len()
        );
    }
    for failure in report.hook_failures() {
        eprintln!("error: {failure}");
    }
}

/// The exit code: a single source's own error; for a group, how many failed.
fn outcome(report: &BackupRunReport) -> CliResult<()> {
    let failed: Vec<&SourceBackupReport> = report.failed().collect();
    if let ([only], true) = (failed.as_slice(), report.point.is_none())
        && let Some(failure) = &only.failure
    {
        return Err(CliError::from(failure).context(&format!("backing up source {}", only.source)));
    }
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|f| f.source.as_str()).collect();
        return Err(CliError::operational(format!(
            "{} of {} sources failed ({}): the recovery point is incomplete; fix them and run the backup again",
            failed.len(),
            report.sources.len(),
            names.join(", ")
        )));
    }
    let hooks = report.hook_failures();
    if hooks.is_empty() {
        return Ok(());
    }
    Err(CliError::operational(format!(
        "the backup was made, but: {}",
        hooks.join("; ")
    )))
}
