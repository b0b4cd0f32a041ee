//! Back up a live SQLite database into an in-memory repository, damage the database, and
//! restore it: the damaged file is kept aside, the restored copy checked before the swap.
//!
//! `cargo run -p dr-sqlite --example backup_restore`

use dr_core::{BackupOptions, BackupSelector, Identities, Restore, RestoreOptions};
use dr_sqlite::{SqliteSource, SqliteTarget};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let work = tempfile::tempdir()?;
    let db = work.path().join("app.db");
    let conn = rusqlite::Connection::open(&db)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         INSERT INTO notes (body) SELECT 'note ' || i FROM n;",
    )?;

    let identities = Identities::generate();
    let store = std::sync::Arc::new(dr_core::object_store::memory::InMemory::new());
    let repo = dr_core::Repository::init(store, "memory://example", &identities.to_recipients())
        .await?
        .with_identities(identities);
    let manifest = repo
        .backup("app", &SqliteSource::new(&db), &BackupOptions::default())
        .await?;
    println!(
        "backed up {} bytes as {} (row counts: {})",
        manifest.plain_size(),
        manifest.id,
        manifest
            .source_info
            .get("row_counts")
            .cloned()
            .unwrap_or_default()
    );

    conn.execute("DELETE FROM notes WHERE id % 2 = 0", [])?;
    drop(conn);
    let reader = repo.open_backup("app", &BackupSelector::Latest).await?;
    let report = SqliteTarget::new(&db)
        .restore(&reader, &RestoreOptions::default())
        .await?;
    let count: i64 =
        rusqlite::Connection::open(&db)?
            .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))?;
    println!(
        "restored {} rows into {}; the previous file is kept at {}",
        count,
        report.target,
        report.previous_kept_at.unwrap_or_default()
    );
    Ok(())
}
