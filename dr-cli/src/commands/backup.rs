//! `dr init`, `dr keygen`, `dr backup`.

use std::path::PathBuf;

use dr_core::{BackupOptions, FailedMember, Manifest, RecoveryPoint, Repository};
use serde_json::json;

use crate::app::App;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// `dr init`.
pub async fn init(app: &App, recipients: &[String]) -> CliResult<()> {
    let url = app.repository_url()?;
    let recipients = app.init_recipients(recipients)?;
    let repo = dr_storage::init_repository(&url, &[], &recipients)
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
    let (names, group) = match (run.source, run.all, run.group) {
        (Some(name), _, _) => (vec![name.to_owned()], None),
        (None, true, _) => (app.config.group_sources("all")?, Some("all")),
        (None, false, Some(group)) => (app.config.group_sources(group)?, Some(group)),
        (None, false, None) => {
            return Err(CliError::usage(
                "name a source to back up, or pass --all or --group NAME",
            ));
        }
    };
    if names.is_empty() {
        return Err(CliError::usage(
            "no sources configured: add [sources.NAME] to dr.toml",
        ));
    }
    let bar = app.bar();
    let repo = app.repository(Some(bar.clone())).await?;
    let mut options = BackupOptions::default();
    options.labels = run.labels.clone();
    let mut done = Vec::new();
    let mut made = Vec::new();
    let mut failed = Vec::new();
    for name in &names {
        let outcome = backup_one(app, &repo, name, &mut options, run.full).await;
        bar.finish();
        match outcome {
            Ok((manifest, secs)) => {
                if !app.global.json {
                    println!(
                        "backed up {name}: {} ({} stored) in {secs:.1} s as {}",
                        output::size(manifest.plain_size()),
                        output::size(manifest.stored_size()),
                        manifest.id
                    );
                    for note in dr_core::backup_notes(&manifest.source_info) {
                        println!("note: {note}");
                    }
                    if manifest.source_info.get("globals_role_passwords")
                        == Some(&serde_json::Value::Bool(false))
                    {
                        println!(
                            "  the roles of {name} were backed up without their passwords: the backup role may not read pg_authid (not a superuser); a restore onto a new server creates them without passwords"
                        );
                    }
                }
                done.push(json!({ "source": name, "id": manifest.id,
                    "plain_bytes": manifest.plain_size(), "stored_bytes": manifest.stored_size(),
                    "elapsed_ms": (secs * 1000.0) as u64 }));
                made.push(manifest);
            }
            Err(e) if group.is_some() => {
                eprintln!("error: {}", e.message);
                failed.push(FailedMember {
                    source: name.clone(),
                    error: e.message,
                });
            }
            Err(e) => return Err(e),
        }
    }
    let point = match group {
        Some(group) => Some(record_point(app, &repo, group, &made, &failed, run.labels).await?),
        None => None,
    };
    if run.copy {
        super::copy::copy_to_all(app, &repo, &made, None).await?;
    }
    if app.global.json {
        output::json(&json!({ "backups": done, "point": point, "failed": failed }))?;
    }
    if failed.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = failed.iter().map(|f| f.source.as_str()).collect();
    Err(CliError::from(dr_core::Error::backend(
        "source",
        "backup",
        format!(
            "{} of {} sources failed ({}): the recovery point is incomplete; fix them and run the backup again",
            failed.len(),
            names.len() + made.len(),
            names.join(", ")
        ),
    )))
}

async fn backup_one(
    app: &App,
    repo: &Repository,
    name: &str,
    options: &mut BackupOptions,
    full: bool,
) -> CliResult<(Manifest, f64)> {
    let config = app.config.source(name)?;
    let (source, depends_on) = super::files::source(repo, name, config, full).await?;
    options.depends_on = depends_on;
    let started = std::time::Instant::now();
    let manifest = repo
        .backup(name, source.as_ref(), options)
        .await
        .doing(|| format!("backing up source {name}"))
        .map_err(|e| config.explain_auth(e))?;
    Ok((manifest, started.elapsed().as_secs_f64()))
}

async fn record_point(
    app: &App,
    repo: &Repository,
    group: &str,
    made: &[Manifest],
    failed: &[FailedMember],
    labels: Vec<String>,
) -> CliResult<RecoveryPoint> {
    let point = repo
        .record_point(group, made, failed.to_vec(), labels)
        .await
        .doing(|| format!("recording the recovery point of group {group}"))?;
    if !app.global.json {
        let state = if point.is_complete() {
            "complete"
        } else {
            "INCOMPLETE"
        };
        println!(
            "recovery point {} ({group}, {} backups, {state})",
            point.id,
            point.members.len()
        );
    }
    Ok(point)
}
