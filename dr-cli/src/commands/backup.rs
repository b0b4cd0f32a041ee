//! `dr init`, `dr keygen`, `dr backup`.

use std::path::PathBuf;

use dr_core::BackupOptions;
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

/// `dr backup [SOURCE|--all]`.
pub async fn backup(
    app: &App,
    source: Option<&str>,
    all: bool,
    labels: Vec<String>,
    full: bool,
    copy: bool,
) -> CliResult<()> {
    let names: Vec<String> = match (source, all) {
        (Some(name), _) => vec![name.to_owned()],
        (None, true) => app.config.sources.keys().cloned().collect(),
        (None, false) => return Err(CliError::usage("name a source to back up, or pass --all")),
    };
    if names.is_empty() {
        return Err(CliError::usage(
            "no sources configured: add [sources.NAME] to dr.toml",
        ));
    }
    let bar = app.bar();
    let repo = app.repository(Some(bar.clone())).await?;
    let mut options = BackupOptions::default();
    options.labels = labels;
    let mut done = Vec::new();
    let mut made = Vec::new();
    for name in &names {
        let (source, depends_on) =
            super::files::source(&repo, name, app.config.source(name)?, full).await?;
        options.depends_on = depends_on;
        let started = std::time::Instant::now();
        let manifest = repo
            .backup(name, source.as_ref(), &options)
            .await
            .doing(|| format!("backing up source {name}"));
        bar.finish();
        let manifest = manifest?;
        made.push(manifest.clone());
        let secs = started.elapsed().as_secs_f64();
        if !app.global.json {
            println!(
                "backed up {name}: {} ({} stored) in {secs:.1} s as {}",
                output::size(manifest.plain_size()),
                output::size(manifest.stored_size()),
                manifest.id
            );
        }
        done.push(
            json!({ "source": name, "id": manifest.id, "plain_bytes": manifest.plain_size(),
            "stored_bytes": manifest.stored_size(), "elapsed_ms": (secs * 1000.0) as u64 }),
        );
    }
    if copy {
        super::copy::copy_to_all(app, &repo, &made, None).await?;
    }
    if app.global.json {
        output::json(&done)?;
    }
    Ok(())
}
