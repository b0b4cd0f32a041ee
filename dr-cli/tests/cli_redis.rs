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
    use dr_testing::Damage;
    for (part, how) in [
        (parts.len() - 1, Damage::Flip),
        (parts.len() - 1, Damage::Truncate),
        (1, Damage::Flip),
    ] {
        let object = parts[part]["object"].as_str().unwrap();
        let path = dir.join(object);
        let original = std::fs::read(&path).unwrap();
        dr_testing::damage::damage_file(&path, how);
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
            "part {part} {how:?}: the target changed"
        );
        std::fs::write(&path, &original).unwrap();
    }
    assert!(!common::ok(&config, &["list"]).contains("pre-restore"));

    let out = common::ok(
        &config,
        &["restore", "cache", &id, "--server", &url, "--force"],
    );
    assert!(out.contains("12000 keys"), "{out}");
    // key:1..3000 were replaced; only-here (db 4) is not in the backup and was kept.
    assert!(
        out.contains("note: 1 key not in the backup was left as it is on the target")
            && out.contains("FLUSHALL and FUNCTION FLUSH before restoring"),
        "{out}"
    );
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

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn file_source(work: &Path, port: u16, rdb: &Path, extra: &str) -> std::path::PathBuf {
    let config = work.join(format!("dr-{}.toml", extra.len()));
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\npassword_env = \"CACHE_PASSWORD\"\nrdb_path = \"{1}\"\n{extra}",
            work.display(),
            rdb.display()
        ),
    )
    .unwrap();
    config
}

/// A file restore under a running server that saves to the same file would be undone on its
/// next save or shutdown: refused before anything is written (the file's SHA-256 unchanged,
/// nothing staged), also when the server refuses CONFIG (no password: NOAUTH); a
/// stop_command that does not stop it is caught after it ran; one that does, with a
/// start_command that starts it, restores the backup (DEBUG DIGEST of the restarted server).
#[test]
fn a_file_restore_under_a_running_server_is_refused_until_it_is_stopped() {
    let source = RedisServer::start_with(Some("pa55"), &[]);
    fill(&source, 500, "backed up");
    let backed_up = state(&source);
    source.cli(&["SAVE"]);
    let rdb = source.dir().join("dump.rdb");
    let work = tempfile::tempdir().unwrap();
    let plain = file_source(work.path(), source.port(), &rdb, "");
    common::ok(&plain, &["keygen"]);
    common::ok(&plain, &["init"]);
    let (code, out) = dr(&plain, &["backup", "cache"]);
    assert_eq!(code, 0, "{out}");
    source.cli(&["FLUSHALL"]);
    fill(&source, 20, "damaged");
    source.cli(&["SAVE"]);
    let before = sha256(&rdb);
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(source.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let files = listing();

    let (code, out) = dr(&plain, &["restore", "cache"]);
    assert_eq!(code, 2, "{out}");
    let url = format!("redis://127.0.0.1:{}", source.port());
    for needed in [
        &format!(
            "the Redis server at {url} is running and saves to {}",
            rdb.display()
        ) as &str,
        "Nothing was written",
        "stop_command = \"systemctl stop redis-server\"",
        &format!("--server {url}"),
        "--force",
    ] {
        assert!(out.contains(needed), "{needed:?} missing: {out}");
    }
    assert!(!out.contains("pa55"), "{out}");
    assert_eq!(sha256(&rdb), before);
    assert_eq!(listing(), files);
    // Without the password the server refuses CONFIG: it still answers, and the target is
    // the configured rdb_path.
    let (code, out) = common::dr(&plain, &["restore", "cache"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("CONFIG GET was refused"), "{out}");
    assert_eq!(sha256(&rdb), before);
    // Another file is not the server's: fine.
    let elsewhere = work.path().join("copy.rdb");
    let (code, out) = dr(
        &plain,
        &["restore", "cache", "--to", elsewhere.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");

    let marker = work.path().join("started");
    let not_stopping = file_source(
        work.path(),
        source.port(),
        &rdb,
        &format!(
            "stop_command = \"true\"\nstart_command = \"touch {}\"\n",
            marker.display()
        ),
    );
    let (code, out) = dr(&not_stopping, &["restore", "cache"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("stop_command (true) ran, but the Redis server")
            && out.contains("nothing was swapped"),
        "{out}"
    );
    assert_eq!(sha256(&rdb), before);
    assert_eq!(listing(), files);
    assert!(!marker.exists(), "start_command ran");
    assert_eq!(source.cli(&["DBSIZE"]), "20");

    // --force swaps the file in under the running server (documented: it is the user's call).
    let (code, out) = dr(&plain, &["restore", "cache", "--force"]);
    assert_eq!(code, 0, "{out}");
    assert_ne!(sha256(&rdb), before);

    let port = source.port();
    let dir = source.dir().display().to_string();
    let start = format!(
        "redis-server --port {port} --bind 127.0.0.1 --requirepass pa55 --dir {dir} --dbfilename dump.rdb --save '' --appendonly no --enable-debug-command yes --daemonize yes --pidfile {dir}/restarted.pid --logfile {dir}/restarted.log >/dev/null 2>&1 && for i in $(seq 100); do redis-cli -p {port} -a pa55 --no-auth-warning ping 2>/dev/null | grep -q PONG && exit 0; sleep 0.1; done; exit 1"
    );
    let stopping = file_source(
        work.path(),
        port,
        &rdb,
        &format!(
            "stop_command = \"redis-cli -p {port} -a pa55 --no-auth-warning shutdown nosave\"\nstart_command = \"{}\"\n",
            start.replace('"', "\\\"")
        ),
    );
    let (code, out) = dr(&stopping, &["restore", "cache"]);
    let shutdown = || {
        source.cli(&["SHUTDOWN", "NOSAVE"]);
    };
    if code != 0 {
        shutdown();
        panic!("{out}");
    }
    let restored = state(&source);
    shutdown();
    assert_eq!(restored, backed_up, "{out}");
    assert!(out.contains("the previous data is kept at"), "{out}");
    // Nothing listens at the URL any more: a stopped server is what the check wants.
    let (code, out) = dr(&plain, &["restore", "cache"]);
    assert_eq!(code, 0, "{out}");
}
