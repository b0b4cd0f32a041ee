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

/// `count` keys `key:1`... of 320 hex characters (SHA-1s: nothing the RDB's LZF shrinks).
fn fill(server: &RedisServer, count: usize, seed: &str) {
    let script = "for i=1,tonumber(ARGV[1]) do local v='' for j=1,8 do v=v..redis.sha1hex(i..':'..j..ARGV[2]) end redis.call('SET','key:'..i,v) end return 1";
    server.cli(&["EVAL", script, "0", &count.to_string(), seed]);
}

fn state(server: &RedisServer) -> (String, String) {
    (server.cli(&["DEBUG", "DIGEST"]), server.cli(&["DBSIZE"]))
}

/// A replay into a live server reads the whole backup before it writes: a flipped or
/// truncated part leaves the target as it was (digest, DBSIZE) and the error names it;
/// `--force` over existing keys takes a safety backup whose restore, as the message says,
/// brings the target back to its digest.
#[test]
fn a_live_replay_writes_nothing_from_a_damaged_backup_and_keeps_a_safety_backup() {
    let source = RedisServer::start();
    fill(&source, 12000, "source");
    let target = RedisServer::start();
    fill(&target, 3000, "target"); // key:1..3000 are replaced by the restore
    target.cli(&["-n", "4", "SET", "only-here", "x", "PX", "86400000"]);
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[pipeline]\npart_size_mib = 1\n[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{1}\"\n",
            work.path().display(),
            source.port()
        ),
    )
    .unwrap();
    common::ok(&config, &["keygen"]);
    common::ok(&config, &["init"]);
    common::ok(&config, &["backup", "cache"]);
    let listed: serde_json::Value =
        serde_json::from_str(&common::ok(&config, &["list", "--json"])).unwrap();
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let dir = work.path().join("repo/backups/cache").join(&id);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let parts = manifest["artifacts"][0]["parts"].as_array().unwrap();
    assert!(parts.len() >= 3, "{} parts", parts.len());
    let url = target.url();
    let before = state(&target);
    for (part, flip) in [(parts.len() - 1, true), (parts.len() - 1, false), (1, true)] {
        let object = parts[part]["object"].as_str().unwrap();
        let path = dir.join(object);
        let original = std::fs::read(&path).unwrap();
        let mut damaged = original.clone();
        if flip {
            damaged[original.len() / 2] ^= 0x10;
        } else {
            damaged.truncate(original.len() / 2);
        }
        std::fs::write(&path, &damaged).unwrap();
        let (code, out) = dr(
            &config,
            &["restore", "cache", &id, "--server", &url, "--force"],
        );
        assert_eq!(code, 3, "{out}");
        assert!(
            out.contains(object) && out.contains("left as it was"),
            "{out}"
        );
        assert!(!out.contains("during backup"), "{out}");
        assert_eq!(
            state(&target),
            before,
            "part {part} flip={flip}: the target changed"
        );
        std::fs::write(&path, &original).unwrap();
    }
    assert!(!common::ok(&config, &["list"]).contains("pre-restore"));

    let out = common::ok(
        &config,
        &["restore", "cache", &id, "--server", &url, "--force"],
    );
    assert!(out.contains("12000 keys"), "{out}");
    assert_ne!(state(&target), before);
    let safety = out
        .split("safety backup ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert!(
        out.contains(&format!("dr restore cache {safety} --server {url}")),
        "{out}"
    );
    assert!(common::ok(&config, &["list"]).contains("pre-restore"));
    // Going back as the message says.
    target.cli(&["FLUSHALL"]);
    common::ok(&config, &["restore", "cache", &safety, "--server", &url]);
    assert_eq!(state(&target), before);
}
