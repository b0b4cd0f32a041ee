//! One function per command: parse nothing, call the library, print, return.

mod backup;
mod bench;
mod copy;
mod daemon;
mod drill;
mod files;
mod pg_globals;
mod pitr;
mod points;
mod prune;
mod restore;
mod status;
mod verify;
mod verify_wal;
mod wal;

pub use backup::{BackupRun, backup, init, keygen};
pub use bench::{BenchArgs, bench};
pub use copy::copy;
pub use daemon::daemon;
pub use drill::{drill, report};
pub use points::list_points;
pub use prune::prune;
pub use restore::restore;
pub use status::{StatusFormat, status};
pub use verify::verify;
pub use wal::{wal_fetch, wal_push};

use dr_core::ops::{ConfiguredSource, System};
use dr_core::{Manifest, Repository};
use serde::Serialize;

use crate::app::App;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// The system the operations serve: the built-in kinds of the facade and the configured
/// sources of dr.toml with their retention and objectives.
///
/// Until dr.toml is turned into a [`System`] by the configuration itself, each configured
/// source is bridged here by [`ConfigSource`], which serves what the reading operations need
/// (its kind and its verifier with the user checks, built for `repo`).
pub(crate) fn system(app: &App, repo: &Repository) -> CliResult<System> {
    let mut system = System::new(dr::registry())
        .with_default_retention(app.config.retention.clone())
        .with_default_objectives(app.config.objectives);
    for (name, config) in &app.config.sources {
        // A source that cannot even name its kind here (a password variable unset, say)
        // is served by its kind's support, as a backup read on another host would be.
        let kind = match config.backup() {
            Ok(backup) => backup.kind(),
            Err(e) => {
                tracing::debug!(source = %name, error = %e.message, "not bridged");
                continue;
            }
        };
        let source = ConfigSource {
            kind,
            verifier: config
                .verifier(repo)
                .map(std::sync::Arc::from)
                .map_err(|e| e.message),
        };
        let mut configured = ConfiguredSource::new(name.clone(), std::sync::Arc::new(source))
            .with_objectives(app.config.objectives_for(name));
        if let Some(retention) = &config.retention {
            configured = configured.with_retention(retention.clone());
        }
        system = system.with_source(configured);
    }
    Ok(system)
}

/// A configured source of dr.toml seen as a [`dr_core::Source`] by the reading operations
/// (backups and restores still go through their own commands).
struct ConfigSource {
    kind: &'static str,
    verifier: Result<std::sync::Arc<dyn dr_core::Verify>, String>,
}

#[dr_core::async_trait]
impl dr_core::Source for ConfigSource {
    fn kind(&self) -> &str {
        self.kind
    }

    async fn backup(
        &self,
        _: &Repository,
        _: &str,
        _: bool,
    ) -> dr_core::Result<Box<dyn dr_core::Backup>> {
        Err(not_here("backups"))
    }

    async fn restore(
        &self,
        _: &dr_core::RestoreRequest<'_>,
    ) -> dr_core::Result<dr_core::RestoreReport> {
        Err(not_here("restores"))
    }

    fn verifier(&self, _: &Repository) -> dr_core::Result<Box<dyn dr_core::Verify>> {
        match &self.verifier {
            Ok(verifier) => Ok(Box::new(SharedVerifier(verifier.clone()))),
            Err(message) => Err(dr_core::Error::refused(
                dr_core::Refusal::Unsupported,
                message.clone(),
            )),
        }
    }
}

fn not_here(what: &str) -> dr_core::Error {
    dr_core::Error::refused(
        dr_core::Refusal::Unsupported,
        format!("{what} of configured sources go through their own command"),
    )
}

/// A verifier shared by every call of [`ConfigSource::verifier`].
struct SharedVerifier(std::sync::Arc<dyn dr_core::Verify>);

#[dr_core::async_trait]
impl dr_core::Verify for SharedVerifier {
    async fn verify(
        &self,
        backup: &dr_core::BackupReader,
        level: dr_core::VerifyLevel,
    ) -> dr_core::Result<dr_core::VerifyReport> {
        self.0.verify(backup, level).await
    }
}

/// One line of `dr list`.
#[derive(Serialize)]
struct Listed<'a> {
    source: &'a str,
    id: &'a str,
    kind: &'a str,
    started_at: chrono::DateTime<chrono::Utc>,
    plain_bytes: u64,
    stored_bytes: u64,
    labels: &'a [String],
    /// Configured copies holding this backup (`null` when a copy could not be read).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    copies: Vec<Option<bool>>,
    /// Why the manifest of this committed backup could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

/// `dr list [SOURCE]`.
pub async fn list(app: &App, source: Option<&str>) -> CliResult<()> {
    let repo = app.read_repository(None).await?;
    let listing = repo.list(source).await.doing(|| "listing backups".into())?;
    let manifests = &listing.backups;
    let copies = copy_ids(app, source).await;
    let mut rows: Vec<Listed> = manifests
        .iter()
        .map(|m| {
            let mut row = listed(m);
            row.copies = copies
                .iter()
                .map(|ids| ids.as_ref().map(|ids| ids.contains(&m.id)))
                .collect();
            row
        })
        .collect();
    rows.extend(listing.unreadable.iter().map(unreadable_row));
    rows.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(a.id)));
    if app.global.json {
        return output::json(&rows);
    }
    if rows.is_empty() {
        if let Some(name) = source.filter(|s| !app.config.sources.contains_key(*s)) {
            return Err(no_such_source(app, &repo, name).await);
        }
        println!(
            "no backups{}",
            source.map(|s| format!(" of {s}")).unwrap_or_default()
        );
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.source.to_owned(),
                r.id.to_owned(),
                r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                r.kind.to_owned(),
                size_cell(r, r.plain_bytes),
                size_cell(r, r.stored_bytes),
                r.labels.join(","),
                copies_cell(&r.copies),
            ]
        })
        .collect();
    output::table(
        &[
            "SOURCE",
            "ID",
            "STARTED (UTC)",
            "KIND",
            "SIZE",
            "STORED",
            "LABELS",
            "COPIES",
        ],
        &table,
    );
    let physical = pitr_sources(manifests);
    match pitr::archive_checks(&repo, &physical).await {
        Ok(checks) => pitr::print_windows(&checks),
        Err(e) => println!("(recoverable windows not shown: {})", e.message),
    }
    for unreadable in &listing.unreadable {
        println!("PROBLEM {}", unreadable.describe());
    }
    Ok(())
}

/// The row of a committed backup whose manifest could not be read: its time from its id.
fn unreadable_row(u: &dr_core::UnreadableBackup) -> Listed<'_> {
    let started_at =
        u.id.get(..16)
            .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ").ok())
            .map(|t| t.and_utc())
            .unwrap_or_default();
    Listed {
        source: &u.source,
        id: &u.id,
        kind: "UNREADABLE",
        started_at,
        plain_bytes: 0,
        stored_bytes: 0,
        labels: &[],
        copies: Vec::new(),
        problem: Some(u.error.clone()),
    }
}

fn size_cell(row: &Listed, bytes: u64) -> String {
    if row.problem.is_some() {
        "?".into()
    } else {
        output::size(bytes)
    }
}

/// A usage error for a source that is neither configured nor has backups, naming what exists.
pub(super) async fn no_such_source(app: &App, repo: &Repository, name: &str) -> CliError {
    let mut known: Vec<String> = app.config.sources.keys().cloned().collect();
    if let Ok(listing) = repo.list(None).await {
        let listed = listing.backups.iter().map(|m| &m.source);
        known.extend(
            listed
                .chain(listing.unreadable.iter().map(|u| &u.source))
                .cloned(),
        );
    }
    known.sort();
    known.dedup();
    CliError::usage(format!(
        "no source named {name:?} is configured or has backups (known: {})",
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        }
    ))
}

/// The sources with base backups among `manifests`.
pub(super) fn pitr_sources(manifests: &[Manifest]) -> Vec<&str> {
    let mut sources: Vec<&str> = manifests
        .iter()
        .filter(|m| m.kind == dr_postgres::BASE_KIND)
        .map(|m| m.source.as_str())
        .collect();
    sources.dedup();
    sources.sort_unstable();
    sources.dedup();
    sources
}

/// The backup ids in each configured copy (`None`: unreadable).
pub(super) async fn copy_ids(app: &App, source: Option<&str>) -> Vec<Option<Vec<String>>> {
    let mut all = Vec::new();
    for url in &app.config.copies {
        let ids = match dr_storage::open_repository(url, &[]).await {
            Ok(copy) => copy
                .list(source)
                .await
                .ok()
                .map(|listing| listing.backups.into_iter().map(|m| m.id).collect()),
            Err(_) => None,
        };
        all.push(ids);
    }
    all
}

/// `2/2`, `1/2`, `?` when a copy could not be read; empty without copies.
fn copies_cell(copies: &[Option<bool>]) -> String {
    if copies.is_empty() {
        return String::new();
    }
    let held = copies.iter().filter(|c| **c == Some(true)).count();
    let unknown = if copies.iter().any(Option::is_none) {
        " ?"
    } else {
        ""
    };
    format!("{held}/{}{unknown}", copies.len())
}

fn listed(m: &Manifest) -> Listed<'_> {
    Listed {
        source: &m.source,
        id: &m.id,
        kind: &m.kind,
        started_at: m.started_at,
        plain_bytes: m.plain_size(),
        stored_bytes: m.stored_size(),
        labels: &m.labels,
        copies: Vec::new(),
        problem: None,
    }
}

/// `dr show ID`.
pub async fn show(app: &App, id: &str) -> CliResult<()> {
    let repo = app.read_repository(None).await?;
    let manifest = find_by_id(&repo, id).await?;
    if app.global.json {
        return output::json(&manifest);
    }
    println!("backup     {}", manifest.id);
    println!("source     {} ({})", manifest.source, manifest.kind);
    println!("started    {}", manifest.started_at.to_rfc3339());
    println!("finished   {}", manifest.finished_at.to_rfc3339());
    println!(
        "size       {} stored as {}",
        output::size(manifest.plain_size()),
        output::size(manifest.stored_size())
    );
    println!("encrypted  to {}", manifest.recipients.join(", "));
    for a in &manifest.artifacts {
        println!(
            "artifact   {}: {} in {} parts",
            a.name,
            output::size(a.plain_size),
            a.parts.len()
        );
    }
    for (key, value) in &manifest.source_info {
        println!("{key:<10} {value}");
    }
    Ok(())
}

/// Finds a backup by id in any source.
async fn find_by_id(repo: &Repository, id: &str) -> CliResult<Manifest> {
    let listing = repo.list(None).await.doing(|| "listing backups".into())?;
    if let Some(unreadable) = listing.unreadable.iter().find(|u| u.id == id) {
        return Err(CliError::verification(unreadable.describe()));
    }
    listing
        .backups
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| {
            CliError::usage(format!(
                "no backup with id {id}: run `dr list` to see what exists"
            ))
        })
}
