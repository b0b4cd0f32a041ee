//! A tokio service that embeds dr: its SQLite database is backed up to S3-compatible
//! storage on a timer with a user check, pruned, verified by a test restore, and restored
//! after a loss, all through the library operations (no `dr` binary involved).
//!
//! `cargo run --example embedded_service` starts the S3-compatible test server (moto, as the
//! tests do) on 127.0.0.1; point it at your own store with `DR_S3_URL=s3://bucket/prefix`
//! and the usual `AWS_*` variables instead.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dr::ops::backup::{BackupRunOptions, backup};
use dr::ops::prune::{PruneOptions, prune};
use dr::ops::restore::{RestoreRunOptions, restore};
use dr::ops::verify::{VerifyOptions, verify};
use dr::ops::{ConfiguredSource, System};
use dr::{
    Error, Event, Identities, Progress, ProgressHandle, Result, RetentionPolicy, Scope,
    SourceSettings, VerifyLevel,
};
use rusqlite::Connection;

const ROUNDS: usize = 3;

/// Logs phases and bytes as a service would export them.
struct Logged;

impl Progress for Logged {
    fn event(&self, scope: &Scope, event: &Event) {
        let op = scope.operation.map_or("?", |o| o.name());
        let artifact = scope.artifact.as_deref().unwrap_or("-");
        match event {
            Event::Started { phase, total_bytes } => {
                println!("   progress {op} {artifact}: {phase} started (total {total_bytes:?})")
            }
            Event::Failed { message } => println!("   progress {op} {artifact}: FAILED {message}"),
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let work = tempfile::tempdir().map_err(|e| Error::io("creating a work directory", e))?;
    let db = work.path().join("app.db");
    create(&db).map_err(sql)?;

    // The store: yours from DR_S3_URL, or the local S3-compatible test server.
    let server = std::env::var("DR_S3_URL")
        .is_err()
        .then(dr_testing::S3Server::start);
    let (url, options) = match &server {
        Some(s) => (s.url("embedded-service"), s.options()),
        None => (std::env::var("DR_S3_URL").unwrap_or_default(), Vec::new()),
    };
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let identities = Identities::generate();
    let repo = dr::storage::init_repository(&url, &options, &identities.to_recipients())
        .await?
        .with_identities(identities)
        .with_cache_dir(Some(work.path().join("cache")));
    println!("repository {}", repo.location());

    // The system: one SQLite source with a user check, keeping the last two backups.
    let registry = dr::registry();
    let settings = SourceSettings::new(serde_json::json!({ "path": db })).with_checks(vec![
        dr::core::checks::UserCheck {
            name: "has orders".into(),
            sql: "SELECT count(*) FROM orders".into(),
            expect: ">= 1".into(),
        },
    ]);
    let source = registry.build_source("sqlite", &settings)?;
    let keep = RetentionPolicy {
        keep_last: 2,
        ..RetentionPolicy::default()
    };
    let system = System::new(registry)
        .with_source(ConfiguredSource::new("app", source).with_retention(keep));
    let progress = ProgressHandle::new(Arc::new(Logged));

    // The service writes while backups run on a timer.
    let writer = tokio::spawn(write_orders(db.clone()));
    let mut timer = tokio::time::interval(Duration::from_millis(700));
    for round in 1..=ROUNDS {
        timer.tick().await;
        let made = backup(&repo, &system, &BackupRunOptions::source("app"), &progress).await?;
        let run = &made.sources[0];
        if let Some(error) = &run.error {
            return Err(Error::Usage(format!("backup {round} failed: {error}")));
        }
        println!("backup {round}: {:?}, {} bytes", run.id, run.plain_bytes);
    }
    writer.abort();

    let pruned = prune(&repo, &system, &PruneOptions::default(), &progress).await?;
    println!(
        "prune: {} kept, {} deleted",
        pruned.kept(),
        pruned.forgotten()
    );
    assert_eq!((pruned.kept(), pruned.forgotten()), (2, ROUNDS - 2));

    let options = VerifyOptions::default().with_level(VerifyLevel::Restore);
    let verified = verify(&repo, &system, &options, &progress).await?;
    for entry in &verified.entries {
        println!(
            "verify: ok={} at {:?}",
            entry.report.is_ok(),
            entry.report.level_performed
        );
    }
    assert!(verified.is_ok(), "verify found problems");

    let before = count(&db).map_err(sql)?;
    std::fs::write(&db, b"this is not a database any more")
        .map_err(|e| Error::io("damaging the database", e))?;
    let restored = restore(&repo, &system, &RestoreRunOptions::source("app"), &progress).await?;
    if let Some(e) = restored.failure {
        return Err(e);
    }
    let after = count(&db).map_err(sql)?;
    println!("restored: {after} orders (the live database had {before} when it was lost)");
    assert!(after >= 1 && after <= before);
    Ok(())
}

fn create(db: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(db)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT);
         INSERT INTO orders(item) VALUES ('first');",
    )
}

async fn write_orders(db: std::path::PathBuf) {
    for i in 0.. {
        let db = db.clone();
        let _ = tokio::task::spawn_blocking(move || {
            Connection::open(&db)?.execute("INSERT INTO orders(item) VALUES (?1)", [i])
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count(db: &Path) -> rusqlite::Result<i64> {
    Connection::open(db)?.query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
}

fn sql(e: rusqlite::Error) -> Error {
    Error::Usage(format!("the example's SQLite: {e}"))
}
