//! FORMAT.md's by-hand recovery of a PostgreSQL logical backup, run literally with the stock
//! `jq`, `age`, `zstd`, `psql` and `pg_restore` onto an empty server: the database and the
//! roles come back as they were (psql/pg_dump are the oracle, the source's fingerprint taken
//! before the backup), and still do, but for the name, once the database is renamed.

mod common;

use std::path::Path;
use std::process::Command;

use dr_testing::PgServer;
use dr_testing::fidelity::assert_faithful;
use dr_testing::fidelity::postgres::{corpus, fingerprint_database, fingerprint_roles, psql};
use dr_testing::postgres::{PASSWORD, bin_dir};

/// The bash block after the `by-hand-postgres-recipe` marker in FORMAT.md.
fn recipe() -> String {
    let format =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../FORMAT.md")).unwrap();
    let after = format
        .split("<!-- by-hand-postgres-recipe -->")
        .nth(1)
        .expect("FORMAT.md has the by-hand PostgreSQL recipe");
    let body = after.split("```bash\n").nth(1).unwrap();
    body.split("\n```").next().unwrap().to_owned()
}

/// A dr.toml for source `shop` on `server` as the superuser, a key and a repository.
fn setup(dir: &Path, server: &PgServer) -> std::path::PathBuf {
    let config = dir.join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{repo}\"\nidentity = \"{key}\"\n\n[sources.shop]\nkind = \"postgres\"\n\
             url = \"postgres://postgres@127.0.0.1:{port}/shop\"\npassword_env = \"SHOP_DB_PASSWORD\"\n",
            repo = dir.join("repo").display(),
            key = dir.join("key.txt").display(),
            port = server.port()
        ),
    )
    .unwrap();
    common::ok(&config, &["keygen"]);
    common::ok(&config, &["init"]);
    config
}

#[test]
fn the_by_hand_recovery_of_format_md_gives_the_database_and_roles_back() {
    let source = PgServer::start();
    corpus::create(source.port(), "shop");
    let expected_db = fingerprint_database(source.port(), "shop");
    let expected_roles = fingerprint_roles(source.port());
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &source);
    let (code, out) = common::dr_with(
        &config,
        &["backup", "shop"],
        &[("SHOP_DB_PASSWORD", PASSWORD)],
    );
    assert_eq!(code, 0, "{out}");
    let id = common::listed_ids(&config, Some("shop")).remove(0);

    let target = PgServer::start();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &recipe()])
        .current_dir(dir.path().join("repo"))
        .env("PATH", path)
        .env("SOURCE", "shop")
        .env("ID", &id)
        .env("KEY", dir.path().join("key.txt"))
        .env(
            "TARGET",
            format!("postgres://postgres@127.0.0.1:{}/postgres", target.port()),
        )
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("FORMAT.md's recipe said:\n{stderr}");
    assert!(out.status.success(), "FORMAT.md's recipe failed: {stderr}");
    // The one error expected: the target's own superuser exists already.
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors
            .iter()
            .all(|l| l.contains("role \"postgres\" already exists")),
        "{errors:?}"
    );

    assert_faithful(
        "FORMAT.md by hand (database)",
        &expected_db,
        &fingerprint_database(target.port(), "shop"),
    );
    // A superuser's backup holds the password hashes: every field, passwords included.
    assert_faithful(
        "FORMAT.md by hand (roles)",
        &expected_roles,
        &fingerprint_roles(target.port()),
    );

    // FORMAT.md: under another name, rename it afterwards; all but the name stays.
    psql(
        target.port(),
        "postgres",
        "ALTER DATABASE shop RENAME TO shop_copy",
    );
    assert_faithful(
        "FORMAT.md by hand, renamed",
        &expected_db.without(&["db.name"]),
        &fingerprint_database(target.port(), "shop_copy").without(&["db.name"]),
    );
}
