//! No blocking on the async runtime: a Redis file restore and a RESTORE replay of a backup
//! of ~30 MB run beside a 10 ms ticker on a current-thread runtime (dr_testing::stall), and
//! the ticker is never more than 500 ms late.

use std::sync::Arc;

use dr_core::{
    BackupOptions, BackupSelector, Identities, Registry, Repository, RestoreOptions,
    RestoreRequest, Source, SourceSettings,
};
use dr_testing::RedisServer;
use dr_testing::stall::assert_no_stall;
use serde_json::json;

/// 150 000 keys of ~200 random-ish bytes in database 0, written by Lua on the server.
const FILL: &str = "for i = 1, 150000 do redis.call('SET', 'key:' .. i, string.rep(string.format('%08x', i * 2654435761 % 4294967296), 25)) end return 1";

async fn setup() -> (RedisServer, Repository, Arc<dyn Source>) {
    let server = RedisServer::start();
    server.cli(&["EVAL", FILL, "0"]);
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    let repo = Repository::init(store, "memory://test", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities);
    let mut registry = Registry::new();
    dr_redis::register(&mut registry);
    let source = registry
        .build_source(
            "redis",
            &SourceSettings::new(json!({ "url": server.url() })),
        )
        .unwrap();
    let capture = source.backup(&repo, "cache", false).await.unwrap();
    repo.backup("cache", capture.as_ref(), &BackupOptions::default())
        .await
        .unwrap();
    (server, repo, source)
}

async fn restore(repo: &Repository, source: &dyn Source, options: &RestoreOptions) {
    let selector = BackupSelector::Latest;
    source
        .restore(&RestoreRequest::new(repo, "cache", &selector, options))
        .await
        .unwrap();
}

#[tokio::test]
async fn file_restore_does_not_block_the_runtime() {
    let (_server, repo, source) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dump.rdb");
    std::fs::write(&file, b"previous").unwrap();
    let options = RestoreOptions::default().with_target(&file);
    assert_no_stall(
        "Redis file restore",
        restore(&repo, source.as_ref(), &options),
    )
    .await;
    let loaded = RedisServer::start_on(dir, None);
    assert_eq!(loaded.cli(&["DBSIZE"]).trim(), "150000");
}

#[tokio::test]
async fn replay_does_not_block_the_runtime() {
    let (_server, repo, source) = setup().await;
    let other = RedisServer::start();
    other.cli(&["SET", "existing", "1"]);
    // Over an existing key: the safety backup of the target is part of the flow measured.
    let options = RestoreOptions::default()
        .with_server(Some(other.url()))
        .with_force(true);
    assert_no_stall("Redis replay", restore(&repo, source.as_ref(), &options)).await;
    assert_eq!(other.cli(&["DBSIZE"]).trim(), "150001");
}
