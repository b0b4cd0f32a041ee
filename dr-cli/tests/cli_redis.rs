//! `kind = "redis"` from the command line: backup (password from the environment), list,
//! verify with a scratch server, restore by RESTORE into another server and as a file.

use std::path::Path;

mod common;

use dr_testing::RedisServer;

fn dr(config: &Path, args: &[&str]) -> (i32, String) {
    common::dr_with(config, args, &[("CACHE_PASSWORD", "pa55")])
}

#[test]
fn redis_sources_back_up_verify_and_restore() {
    let source = RedisServer::start_with(Some("pa55"), &[]);
    source.cli(&["MSET", "a", "1", "b", "2"]);
    source.cli(&["HSET", "h", "f", "v"]);
    source.cli(&["SET", "t", "x", "EX", "3600"]);
    source.cli(&["-n", "2", "RPUSH", "q", "j1", "j2"]);
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{1}\"\npassword_env = \"CACHE_PASSWORD\"\n",
            work.path().display(),
            source.port()
        ),
    )
    .unwrap();
    let ok = |args: &[&str]| {
        let (code, out) = dr(&config, args);
        assert_eq!(code, 0, "dr {args:?}: {out}");
        out
    };
    ok(&["keygen"]);
    ok(&["init"]);
    let out = ok(&["backup", "cache"]);
    assert!(out.contains("backed up cache"), "{out}");
    assert!(ok(&["list"]).contains("redis.rdb"));
    let out = ok(&["verify", "cache", "--level", "restore"]);
    assert!(
        out.contains("scratch redis-server holds the recorded keys (5 in 2"),
        "{out}"
    );

    let digest = |server: &RedisServer| server.cli(&["DEBUG", "DIGEST"]);
    let empty = RedisServer::start();
    let out = ok(&["restore", "cache", "--server", &empty.url()]);
    assert!(out.contains("5 keys"), "{out}");
    assert_eq!(digest(&empty), digest(&source));
    let (code, out) = dr(&config, &["restore", "cache", "--server", &empty.url()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--force"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let rdb = dir.path().join("dump.rdb");
    ok(&["restore", "cache", "--to", rdb.to_str().unwrap()]);
    let loaded = RedisServer::start_on(dir, None);
    assert_eq!(digest(&loaded), digest(&source));
}

/// Every object of an RDB backup damaged in turn: verify names it, restore refuses it.
#[test]
fn every_damaged_object_of_an_rdb_backup_is_reported_and_refused() {
    let server = RedisServer::start();
    for i in 0..2000 {
        server.cli(&["SET", &format!("key:{i}"), &"v".repeat(200)]);
    }
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{1}\"\n",
            work.path().display(),
            server.port()
        ),
    )
    .unwrap();
    common::ok(&config, &["keygen"]);
    common::ok(&config, &["init"]);
    common::ok(&config, &["backup", "cache"]);
    let listed: serde_json::Value =
        serde_json::from_str(&common::ok(&config, &["list", "--json"])).unwrap();
    let id = listed[0]["id"].as_str().unwrap();
    let cases = common::sweep::sweep(work.path(), &config, "cache", id);
    assert!(cases >= 6, "{cases}");
}
