//! Point-in-time recovery with the library: a base backup of a throwaway cluster, its WAL
//! archived (in-process here; `dr wal-push %p` in production), a plan to recover to a time
//! between two batches of rows, and the restore into a new data directory.
//!
//! `cargo run -p dr-postgres --example pitr` (needs Debian's `postgresql`; starts its own
//! cluster on 127.0.0.1, as the postgres user when run as root).

use std::time::Duration;

use dr_core::{BackupOptions, Identities};
use dr_postgres::pitr::{self, RecoveryTarget};
use dr_postgres::{PgConnection, PitrOptions, PostgresBaseSource, WalArchive, restore_pitr};
use dr_testing::PgServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let work = tempfile::tempdir()?;
    let identities = Identities::generate();
    let store = std::sync::Arc::new(dr_core::object_store::memory::InMemory::new());
    let repo = dr_core::Repository::init(store, "memory://example", &identities.to_recipients())
        .await?
        .with_identities(identities);

    let server = PgServer::start_with(&[("wal_level", "replica")]);
    server.psql(
        "postgres",
        "CREATE TABLE orders AS SELECT i AS id FROM generate_series(1, 100) i",
    );
    let conn = PgConnection::from_url(&server.url("postgres"))?;
    let base = repo
        .backup(
            "db",
            &PostgresBaseSource::new(conn),
            &BackupOptions::default(),
        )
        .await?;
    println!("base backup {} ({} bytes)", base.id, base.plain_size());

    server.psql(
        "postgres",
        "INSERT INTO orders SELECT generate_series(101, 150)",
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let target = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server.psql("postgres", "DROP TABLE orders");
    server.psql("postgres", "SELECT pg_switch_wal()");

    // What archive_command would have pushed: every finished segment in pg_wal.
    let archive = WalArchive::new(&repo, "db")?;
    let sysid = dr_postgres::system_identifier(&server.data_dir())?;
    let pg_wal = server.data_dir().join("pg_wal");
    let current = server.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
    let mut names: Vec<String> = std::fs::read_dir(&pg_wal)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24 && *n < current)
        .collect();
    names.sort();
    for name in &names {
        archive.push(&pg_wal.join(name), sysid).await?;
    }
    println!("archived {} WAL segments", names.len());

    let plan = pitr::plan(&repo, "db", RecoveryTarget::Time(target)).await?;
    println!(
        "plan: base backup {}, {} WAL files, {} bytes to download",
        plan.base_backup,
        plan.wal.len(),
        plan.download_bytes
    );
    let options = PitrOptions {
        data_dir: work.path().join("recovered"),
        restore_command: "dr wal-fetch --source db %f %p".into(),
        keep_archiving: false,
        start_on_port: None,
    };
    let report = restore_pitr(&repo, plan, &options).await?;
    println!(
        "restored into {}: start PostgreSQL there to replay to {}",
        report.data_dir.display(),
        target.to_rfc3339()
    );
    Ok(())
}
