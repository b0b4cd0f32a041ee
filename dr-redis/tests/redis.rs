//! Round trips against real Redis 7 servers: every data type, binary keys and values, TTLs,
//! several databases; RDB (diskless and disk-based) and logical backups; file and RESTORE
//! restores compared with `DEBUG DIGEST`; damaged RDBs; a wrong password.

use std::sync::Arc;

use dr_core::{
    BackupOptions, Identities, Repository, Restore, RestoreOptions, Verify, VerifyLevel,
};
use dr_redis::redis::from_redis_value;
use dr_redis::{
    RedisClient, RedisConnection, RedisFileTarget, RedisMode, RedisReplayTarget, RedisSource,
    check_file,
};
use dr_testing::RedisServer;

async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://test", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

async fn client(server: &RedisServer) -> RedisClient {
    RedisConnection::from_url(&server.url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn run(client: &mut RedisClient, args: &[&[u8]]) {
    client.command(args).await.unwrap();
}

/// Every type in its small (listpack/intset) and large encodings, binary data, TTLs, a
/// stream with a consumer group and pending entries, in databases 0 and 5.
async fn populate(server: &RedisServer) {
    let mut c = client(server).await;
    run(&mut c, &[b"SET", b"string", b"hello"]).await;
    run(
        &mut c,
        &[b"SET", b"bin\x00\xff\r\nkey", b"\x00\x01\x02\xff\xfe"],
    )
    .await;
    run(&mut c, &[b"SET", b"number", b"123456"]).await;
    let long = vec![b'x'; 5000];
    run(&mut c, &[b"SET", b"compressible", &long]).await;
    run(&mut c, &[b"SET", b"ttl", b"soon", b"PX", b"600000"]).await;
    run(&mut c, &[b"RPUSH", b"list:small", b"a", b"b", b"\x00"]).await;
    run(&mut c, &[b"SADD", b"set:int", b"1", b"2", b"3"]).await;
    run(&mut c, &[b"SADD", b"set:small", b"x", b"y"]).await;
    run(&mut c, &[b"HSET", b"hash:small", b"f", b"v", b"g", b"\xff"]).await;
    run(&mut c, &[b"ZADD", b"zset:small", b"1.5", b"a", b"-2", b"b"]).await;
    for i in 0..300 {
        let member = format!("member-{i}-{}", "y".repeat(i % 70));
        let score = format!("{}", i as f64 * 0.25);
        run(&mut c, &[b"RPUSH", b"list:big", member.as_bytes()]).await;
        run(&mut c, &[b"SADD", b"set:big", member.as_bytes()]).await;
        run(
            &mut c,
            &[b"HSET", b"hash:big", member.as_bytes(), score.as_bytes()],
        )
        .await;
        run(
            &mut c,
            &[b"ZADD", b"zset:big", score.as_bytes(), member.as_bytes()],
        )
        .await;
        run(&mut c, &[b"XADD", b"stream", b"*", b"n", member.as_bytes()]).await;
    }
    run(&mut c, &[b"EXPIRE", b"hash:big", b"3600"]).await;
    run(&mut c, &[b"XGROUP", b"CREATE", b"stream", b"readers", b"0"]).await;
    run(
        &mut c,
        &[
            b"XREADGROUP",
            b"GROUP",
            b"readers",
            b"alice",
            b"COUNT",
            b"5",
            b"STREAMS",
            b"stream",
            b">",
        ],
    )
    .await;
    run(&mut c, &[b"SELECT", b"5"]).await;
    run(&mut c, &[b"SET", b"other-db", b"5"]).await;
    run(&mut c, &[b"LPUSH", b"queue", b"job1", b"job2"]).await;
}

async fn digest(server: &RedisServer) -> String {
    let mut c = client(server).await;
    let reply = c.command(&[b"DEBUG", b"DIGEST"]).await.unwrap();
    from_redis_value(reply).unwrap()
}

/// Per key (every database): the value digest and whether it has a TTL.
async fn contents(server: &RedisServer) -> Vec<(u32, Vec<u8>, String, bool)> {
    let mut c = client(server).await;
    let mut all = Vec::new();
    for db in [0u32, 5] {
        run(&mut c, &[b"SELECT", db.to_string().as_bytes()]).await;
        let keys = c.command(&[b"KEYS", b"*"]).await.unwrap();
        let keys: Vec<Vec<u8>> = from_redis_value(keys).unwrap();
        for key in keys {
            let value = c.command(&[b"DEBUG", b"DIGEST-VALUE", &key]).await.unwrap();
            let mut v: Vec<String> = from_redis_value(value).unwrap();
            let digest = v.remove(0);
            let ttl: i64 = from_redis_value(c.command(&[b"PTTL", &key]).await.unwrap()).unwrap();
            all.push((db, key, digest, ttl > 0));
        }
    }
    all.sort();
    all
}

#[tokio::test]
async fn rdb_backups_round_trip_every_type_by_file_and_by_restore() {
    for diskless in ["yes", "no"] {
        let source = RedisServer::start_with(Some("s3cret"), &[("repl-diskless-sync", diskless)]);
        populate(&source).await;
        let repo = repository().await;
        let conn = RedisConnection::from_url(&source.url()).unwrap();
        let manifest = repo
            .backup("cache", &RedisSource::new(conn), &BackupOptions::default())
            .await
            .unwrap();
        let counts = &manifest.source_info["rdb"]["databases"];
        assert_eq!(counts["0"]["keys"], 15, "{counts}");
        assert_eq!(counts["0"]["expires"], 2, "{counts}");
        assert_eq!(counts["5"]["keys"], 2, "{counts}");
        let original = digest(&source).await;

        // By RESTORE into an empty server.
        let replayed = RedisServer::start();
        let target = RedisReplayTarget::new(RedisConnection::from_url(&replayed.url()).unwrap());
        let report = target
            .restore(&repo.reader(manifest.clone()), &RestoreOptions::default())
            .await
            .unwrap();
        assert!(report.target.contains("17 keys"), "{}", report.target);
        assert_eq!(digest(&replayed).await, original, "diskless={diskless}");
        // A second restore into the now non-empty server needs force.
        let err = target
            .restore(&repo.reader(manifest.clone()), &RestoreOptions::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already holds") && err.contains("--force"),
            "{err}"
        );

        // As the dump.rdb of a server that starts on it; the old file kept.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dump.rdb"), b"previous").unwrap();
        let report = RedisFileTarget::new(dir.path().join("dump.rdb"))
            .restore(&repo.reader(manifest.clone()), &RestoreOptions::default())
            .await
            .unwrap();
        let kept = report.previous_kept_at.unwrap();
        assert_eq!(std::fs::read(kept).unwrap(), b"previous");
        let loaded = RedisServer::start_on(dir, None);
        assert_eq!(digest(&loaded).await, original);

        verifies_by_test_restore(&repo, manifest).await;
    }
}

async fn verifies_by_test_restore(repo: &Repository, manifest: dr_core::Manifest) {
    let verified = dr_redis::RedisVerifier::new()
        .verify(&repo.reader(manifest), VerifyLevel::Restore)
        .await
        .unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
}

#[tokio::test]
async fn logical_backups_round_trip_every_type() {
    let source = RedisServer::start();
    populate(&source).await;
    let repo = repository().await;
    let conn = RedisConnection::from_url(&source.url()).unwrap();
    let manifest = repo
        .backup(
            "cache",
            &RedisSource::new(conn).with_mode(RedisMode::Logical),
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(manifest.kind, "redis.logical");
    let replayed = RedisServer::start();
    RedisReplayTarget::new(RedisConnection::from_url(&replayed.url()).unwrap())
        .restore(&repo.reader(manifest.clone()), &RestoreOptions::default())
        .await
        .unwrap();
    let (want, got) = (contents(&source).await, contents(&replayed).await);
    assert_eq!(want.len(), 17);
    assert_eq!(want, got);
    verifies_by_test_restore(&repo, manifest).await;
}

#[tokio::test]
async fn damaged_rdbs_are_refused_with_the_offset() {
    let server = RedisServer::start();
    populate(&server).await;
    server.cli(&["SAVE"]);
    let rdb = std::fs::read(server.dir().join("dump.rdb")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.rdb");
    std::fs::write(&path, &rdb).unwrap();
    let summary = check_file(&path).await.unwrap();
    assert_eq!(summary.total_keys(), 17);
    std::fs::write(&path, &rdb[..rdb.len() / 2]).unwrap();
    let err = check_file(&path).await.unwrap_err().to_string();
    assert!(
        err.contains("truncated") && err.contains("at byte"),
        "{err}"
    );
    let mut flipped = rdb.clone();
    flipped[rdb.len() / 3] ^= 0x20;
    std::fs::write(&path, &flipped).unwrap();
    let err = check_file(&path).await.unwrap_err().to_string();
    assert!(err.contains("damaged at byte"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error() {
    let server = RedisServer::start_with(Some("right"), &[]);
    let url = format!("redis://:wrong@127.0.0.1:{}", server.port());
    let err = RedisConnection::from_url(&url)
        .unwrap()
        .connect()
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("refused the login") && !err.contains("wrong"),
        "{err}"
    );
}

#[tokio::test]
async fn a_replay_that_fails_midway_says_how_far_it_got() {
    let source = RedisServer::start();
    let mut c = client(&source).await;
    let value = vec![b'v'; 10_000];
    for i in 0..500 {
        run(&mut c, &[b"SET", format!("key:{i:04}").as_bytes(), &value]).await;
    }
    let repo = repository().await;
    let conn = RedisConnection::from_url(&source.url()).unwrap();
    let manifest = repo
        .backup("cache", &RedisSource::new(conn), &BackupOptions::default())
        .await
        .unwrap();
    // 2 MB of room for 5 MB of values: the server refuses writes part of the way through.
    let small = RedisServer::start_with(
        None,
        &[("maxmemory", "2mb"), ("maxmemory-policy", "noeviction")],
    );
    let err = RedisReplayTarget::new(RedisConnection::from_url(&small.url()).unwrap())
        .restore(&repo.reader(manifest), &RestoreOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("RESTORE of key"), "{err}");
    assert!(err.contains("OOM") || err.contains("maxmemory"), "{err}");
    // The count in the message is what the server holds.
    let held = small.cli(&["DBSIZE"]).trim().to_owned();
    assert!(
        err.contains(&format!("stopped part of the way: {held} of the 500 keys")),
        "{held} held: {err}"
    );
    assert!(held.parse::<u64>().unwrap() > 0, "{err}");
}
