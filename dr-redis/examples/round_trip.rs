//! An RDB backup of a throwaway Redis into an in-memory repository, checked, then replayed
//! into a second server with RESTORE; both servers' `DEBUG DIGEST` must agree.
//!
//! `cargo run -p dr-redis --example round_trip` (needs Debian's `redis-server`).

use dr_core::{BackupOptions, Identities, Restore, RestoreOptions};
use dr_redis::{RedisConnection, RedisReplayTarget, RedisSource};
use dr_testing::RedisServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let identities = Identities::generate();
    let store = std::sync::Arc::new(dr_core::object_store::memory::InMemory::new());
    let repo = dr_core::Repository::init(store, "memory://example", &identities.to_recipients())
        .await?
        .with_identities(identities);

    let source = RedisServer::start_with(Some("secret"), &[]);
    source.cli(&["MSET", "user:1", "ada", "user:2", "grace"]);
    source.cli(&["XADD", "events", "*", "kind", "signup"]);
    source.cli(&["SET", "session", "abc", "EX", "600"]);
    let conn = RedisConnection::from_url(&source.url())?;
    let manifest = repo
        .backup("cache", &RedisSource::new(conn), &BackupOptions::default())
        .await?;
    println!(
        "backed up {} bytes of RDB: {}",
        manifest.plain_size(),
        manifest.source_info["rdb"]["databases"]
    );

    let target = RedisServer::start();
    let report = RedisReplayTarget::new(RedisConnection::from_url(&target.url())?)
        .restore(&repo.reader(manifest), &RestoreOptions::default())
        .await?;
    let (want, got) = (
        source.cli(&["DEBUG", "DIGEST"]),
        target.cli(&["DEBUG", "DIGEST"]),
    );
    println!("restored into {}: digests {want} / {got}", report.target);
    if want != got {
        return Err("the restored data set differs".into());
    }
    Ok(())
}
