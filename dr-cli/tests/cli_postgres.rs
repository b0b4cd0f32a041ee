//! `dr` against a real PostgreSQL: backup, restore-level verify, restore with swap.

use std::process::Command;

use dr_testing::PgServer;
use dr_testing::postgres::PASSWORD;

fn dr(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(args)
        .current_dir(dir)
        .env("SHOP_DB_PASSWORD", PASSWORD)
        .env_remove("DR_REPOSITORY")
        .env_remove("DR_IDENTITY")
        .env_remove("DR_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn postgres_source_end_to_end() {
    let server = PgServer::start();
    server.psql("postgres", "CREATE DATABASE shop");
    server.psql(
        "shop",
        "CREATE TABLE customers (id serial PRIMARY KEY, email text);
         CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers(id));
         INSERT INTO customers (email) SELECT 'u' || i FROM generate_series(1, 100) i;
         INSERT INTO orders (customer_id) SELECT 1 + i % 100 FROM generate_series(1, 1000) i;",
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/shop", server.port());
    let config = format!(
        "repository = \"./repo\"\nidentity = \"./key.txt\"\n\n[sources.shop]\nkind = \"postgres\"\nurl = \"{url}\"\n\
         password_env = \"SHOP_DB_PASSWORD\"\n\
         timestamp_columns = {{ \"public.customers\" = \"email\" }}\n\n[[sources.shop.checks]]\nname = \"orders\"\n\
         sql = \"SELECT count(*) FROM orders\"\nexpect = \">= 1000\"\n"
    );
    std::fs::write(dir.path().join("dr.toml"), config).unwrap();
    for args in [&["keygen"][..], &["init"], &["backup", "shop"]] {
        let (code, out, err) = dr(dir.path(), args);
        assert_eq!(code, 0, "dr {args:?}: {out}{err}");
    }
    let (code, out, err) = dr(dir.path(), &["verify", "--level", "restore"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("no orphaned rows through 1 foreign keys"),
        "{out}"
    );
    assert!(out.contains("check orders: 1000 >= 1000 ok"), "{out}");
    assert!(out.contains("newest public.customers.email: u99"), "{out}");
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));

    server.psql("shop", "DELETE FROM orders");
    let (code, out, err) = dr(dir.path(), &["restore", "shop", "--swap"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("the previous data is kept at shop_pre_restore_"),
        "{out}"
    );
    assert_eq!(server.psql("shop", "SELECT count(*) FROM orders"), "1000");

    server.psql("shop", "DELETE FROM orders WHERE id > 10");
    let (code, out, err) = dr(dir.path(), &["restore", "shop", "--in-place"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("safety backup") && out.contains("label pre-restore"),
        "{out}"
    );
    assert_eq!(server.psql("shop", "SELECT count(*) FROM orders"), "1000");
    let (_, listed, _) = dr(dir.path(), &["list"]);
    assert!(listed.contains("pre-restore"), "{listed}");

    // Into another server: a new database there, named like the source.
    let other = PgServer::start();
    let other_url = other
        .url("postgres")
        .trim_end_matches("/postgres")
        .to_owned();
    // The newest backup is now the safety backup (10 orders): take the one before it.
    let (_, listed, _) = dr(dir.path(), &["list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let full = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["labels"].as_array().unwrap().is_empty())
        .unwrap();
    let id = full["id"].as_str().unwrap();
    let (code, out, err) = dr(
        dir.path(),
        &[
            "restore", "shop", id, "--server", &other_url, "--to", "shop",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(PASSWORD), "{out}");
    assert_eq!(other.psql("shop", "SELECT count(*) FROM orders"), "1000");
}

/// `dr restore` killed with SIGKILL while pg_restore runs: the original is untouched, and the
/// next restore drops the abandoned database and succeeds.
#[test]
fn a_killed_restore_leaves_the_original_and_is_cleaned_up_next_time() {
    let server = PgServer::start();
    server.psql("postgres", "CREATE DATABASE shop");
    server.psql(
        "shop",
        "CREATE TABLE events (id bigserial PRIMARY KEY, body text);
         INSERT INTO events (body) SELECT repeat(md5(i::text), 20) FROM generate_series(1, 300000) i;",
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/shop", server.port());
    let config = format!(
        "repository = \"./repo\"\nidentity = \"./key.txt\"\n\n[sources.shop]\nkind = \"postgres\"\nurl = \"{url}\"\n\
         password_env = \"SHOP_DB_PASSWORD\"\nglobals = false\n"
    );
    std::fs::write(dir.path().join("dr.toml"), config).unwrap();
    for args in [&["keygen"][..], &["init"], &["backup", "shop"]] {
        assert_eq!(dr(dir.path(), args).0, 0, "dr {args:?}");
    }
    let before = server.psql(
        "shop",
        "SELECT count(*) || md5(string_agg(body, '' ORDER BY id)) FROM events",
    );
    let mut restore = Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(["restore", "shop"])
        .current_dir(dir.path())
        .env("SHOP_DB_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let incomplete = "SELECT count(*) FROM pg_database d JOIN pg_stat_activity a ON a.datid = d.oid \
                      WHERE shobj_description(d.oid, 'pg_database') LIKE 'dr: incomplete restore%' \
                      AND a.application_name = 'pg_restore'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.psql("postgres", incomplete) == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "pg_restore never started"
        );
        assert!(
            restore.try_wait().unwrap().is_none(),
            "the restore finished before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    restore.kill().unwrap(); // SIGKILL: no cleanup code runs
    restore.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let leftovers = "SELECT count(*) FROM pg_database WHERE shobj_description(oid, 'pg_database') LIKE 'dr: incomplete restore%'";
    assert_eq!(
        server.psql("postgres", leftovers),
        "1",
        "the killed restore left its database"
    );
    assert_eq!(
        server.psql(
            "shop",
            "SELECT count(*) || md5(string_agg(body, '' ORDER BY id)) FROM events"
        ),
        before
    );

    let (code, out, err) = dr(dir.path(), &["restore", "shop"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        server.psql("postgres", leftovers),
        "0",
        "abandoned restore dropped"
    );
}

/// The live table's content, digested by PostgreSQL (the oracle, not dr).
fn digest(server: &PgServer) -> String {
    server.psql(
        "shop",
        "SELECT count(*) || ':' || md5(string_agg(id || '=' || v, ',' ORDER BY id)) FROM items",
    )
}

fn backup_ids(dir: &std::path::Path) -> Vec<String> {
    let (code, out, err) = dr(dir, &["list", "--json", "shop"]);
    assert_eq!(code, 0, "{out}{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn in_place_checks_the_whole_backup_first_and_says_how_to_undo() {
    let server = PgServer::start();
    server.psql("postgres", "CREATE DATABASE shop");
    server.psql(
        "shop",
        "CREATE TABLE items (id int PRIMARY KEY, v text);
         INSERT INTO items SELECT i, md5(random()::text) || md5(random()::text) FROM generate_series(1, 200000) i;",
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/shop", server.port());
    let base = format!(
        "repository = \"./repo\"\nidentity = \"./key.txt\"\n[pipeline]\npart_size_mib = 1\n\n[sources.shop]\nkind = \"postgres\"\nurl = \"{url}\"\npassword_env = \"SHOP_DB_PASSWORD\"\n"
    );
    let config = dir.path().join("dr.toml");
    std::fs::write(&config, &base).unwrap();
    for args in [
        &["keygen"][..],
        &["init"],
        &["backup", "shop"],
        &["backup", "shop"],
    ] {
        let (code, out, err) = dr(dir.path(), args);
        assert_eq!(code, 0, "dr {args:?}: {out}{err}");
    }
    let original = digest(&server);
    let ids = backup_ids(dir.path());
    let (damaged, good) = (ids[0].clone(), ids[1].clone());
    server.psql("shop", "UPDATE items SET v = 'changed' WHERE id % 10 = 0");
    let live = digest(&server);
    assert_ne!(live, original);

    // The last part of the newest backup is damaged: refused before any write and before
    // the safety backup, the live database as it was.
    let mut parts: Vec<std::path::PathBuf> = walk(&dir.path().join("repo"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&damaged))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("dump.") && name.ends_with(".zst.age")
        })
        .collect();
    parts.sort();
    assert!(parts.len() >= 3, "{parts:?}");
    let last = parts.last().unwrap();
    dr_testing::damage::damage_file(last, dr_testing::Damage::Flip);
    let (code, out, err) = dr(dir.path(), &["restore", "shop", &damaged, "--in-place"]);
    assert_eq!(
        code, 3,
        "a damaged backup is a verification failure: {out}{err}"
    );
    assert!(
        err.contains("damaged") && err.contains("nothing was written"),
        "{out}{err}"
    );
    assert_eq!(digest(&server), live);
    assert_eq!(
        backup_ids(dir.path()).len(),
        2,
        "no safety backup was taken"
    );

    // A restore that fails after its commit (a check the restored data fails) says what was
    // written and how to undo it; the command it names brings the live data back.
    std::fs::write(
        &config,
        format!(
            "{base}\n[[sources.shop.checks]]\nname = \"changed rows\"\nsql = \"SELECT count(*) FROM items WHERE v = 'changed'\"\nexpect = \">= 1\"\n"
        ),
    )
    .unwrap();
    let (code, out, err) = dr(dir.path(), &["restore", "shop", &good, "--in-place"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("committed"), "{err}");
    assert_eq!(
        digest(&server),
        original,
        "what the message says was written"
    );
    let undo = err
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in {err}"));
    let words: Vec<&str> = undo.split(' ').collect();
    assert_eq!(words[..3], ["dr", "restore", "shop"], "{undo}");
    assert_eq!(words[4], "--in-place", "{undo}");
    assert!(
        !ids.contains(&words[3].to_owned()),
        "{undo}: the safety backup"
    );
    assert!(
        err.contains(&format!("`dr restore shop {good} --in-place`")),
        "{err}"
    );
    let (code, out, err) = dr(dir.path(), &words[1..]);
    assert_eq!(code, 0, "{undo}: {out}{err}");
    assert_eq!(digest(&server), live, "undone");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
