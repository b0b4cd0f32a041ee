//! `dr restore` of PostgreSQL as a user runs it: `--server` onto an empty server brings the
//! roles and the database exactly as they were (psql/pg_dump are the oracle), `--globals`
//! applies only the roles, a backup by a role that is not a superuser works with the
//! defaults, `--swap` names the sessions in its way, and a damaged backup refused before an
//! in-place restore leaves no safety backup behind.

mod common;

use std::path::{Path, PathBuf};

use common::{dr, dr_with, listed_ids, ok};

/// `dr` with the source's password in its environment; asserts success.
fn ok_with(config: &Path, args: &[&str], password: &str) -> String {
    let (code, out) = dr_with(config, args, &with_password(password));
    assert_eq!(code, 0, "dr {args:?}: {out}");
    out
}
use dr_testing::PgServer;
use dr_testing::fidelity::assert_faithful;
use dr_testing::fidelity::postgres::{corpus, fingerprint_database, fingerprint_roles, psql};
use dr_testing::postgres::PASSWORD;

/// A dr.toml for source `shop` on `server` as `user`, a key and a repository.
fn setup(dir: &Path, server: &PgServer, user: &str) -> PathBuf {
    let config = dir.join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{repo}\"\nidentity = \"{key}\"\n\n[sources.shop]\nkind = \"postgres\"\n\
             url = \"postgres://{user}@127.0.0.1:{port}/shop\"\npassword_env = \"SHOP_DB_PASSWORD\"\n",
            repo = dir.join("repo").display(),
            key = dir.join("key.txt").display(),
            port = server.port()
        ),
    )
    .unwrap();
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    config
}

fn with_password(password: &str) -> [(&'static str, &str); 1] {
    [("SHOP_DB_PASSWORD", password)]
}

fn server_url(server: &PgServer) -> String {
    format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}", server.port())
}

#[test]
fn server_restore_onto_an_empty_server_brings_roles_and_database() {
    let source = PgServer::start();
    corpus::create(source.port(), "shop");
    let expected_db = fingerprint_database(source.port(), "shop");
    let expected_roles = fingerprint_roles(source.port());
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &source, "postgres");
    let (code, out) = dr_with(&config, &["backup", "shop"], &with_password(PASSWORD));
    assert_eq!(code, 0, "{out}");
    // The test restore of verify gets the same properties, and leaves nothing behind.
    let databases = dr_testing::fidelity::postgres::database_names(source.port());
    ok_with(&config, &["verify", "--level", "restore"], PASSWORD);
    assert_eq!(
        dr_testing::fidelity::postgres::database_names(source.port()),
        databases
    );

    let empty = PgServer::start();
    let url = server_url(&empty);
    let out = ok_with(
        &config,
        &["restore", "shop", "--server", &url, "--to", "shop"],
        PASSWORD,
    );
    for line in [
        "created: app_owner, app_ro, app_rw, reporting (without passwords",
        "already there, left as they are: postgres",
        "memberships granted: app_ro > reporting, app_rw > app_ro",
    ] {
        assert!(out.contains(line), "{line} missing from: {out}");
    }
    assert!(!out.contains(PASSWORD), "{out}");
    assert_faithful(
        "dr restore --server",
        &expected_db,
        &fingerprint_database(empty.port(), "shop"),
    );
    // Documented: no password without --with-role-passwords (postgres was there already).
    let roles = fingerprint_roles(empty.port());
    assert_eq!(roles.get("roles.passwords"), Some("postgres"));
    assert_faithful(
        "dr restore --server (roles)",
        &expected_roles.without(&["roles.passwords"]),
        &roles.without(&["roles.passwords"]),
    );

    // --globals alone, with the passwords, onto another empty server: roles only.
    let other = PgServer::start();
    let out = ok_with(
        &config,
        &[
            "restore",
            "shop",
            "--globals",
            "--with-role-passwords",
            "--server",
            &server_url(&other),
        ],
        PASSWORD,
    );
    assert!(out.contains("(with their passwords)"), "{out}");
    assert_faithful(
        "dr restore --globals --with-role-passwords",
        &expected_roles,
        &fingerprint_roles(other.port()),
    );
    assert_eq!(
        psql(
            other.port(),
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'shop'"
        ),
        "0",
        "--globals restored a database"
    );
}

#[test]
fn a_backup_role_that_is_not_a_superuser_works_with_the_defaults() {
    let source = PgServer::start();
    corpus::create(source.port(), "shop");
    // What the README says a backup role needs: LOGIN, CONNECT on the database (shop is
    // closed to PUBLIC), BYPASSRLS (pg_dump refuses a table whose policies would hide rows),
    // and read access to every schema, table, sequence and large object: here by grants,
    // so pg_authid stays unreadable and the roles are backed up without passwords.
    psql(
        source.port(),
        "postgres",
        "CREATE ROLE backup LOGIN BYPASSRLS PASSWORD 'backup-secret';
         GRANT CONNECT ON DATABASE shop TO backup;",
    );
    psql(
        source.port(),
        "shop",
        "GRANT USAGE ON SCHEMA app, reports TO backup;
         GRANT SELECT ON ALL TABLES IN SCHEMA app, reports, public TO backup;
         GRANT SELECT ON ALL SEQUENCES IN SCHEMA app TO backup;
         GRANT SELECT ON LARGE OBJECT 424242, 424243 TO backup",
    );
    let expected_db = fingerprint_database(source.port(), "shop");
    let expected_roles = fingerprint_roles(source.port());
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &source, "backup");
    let out = ok_with(&config, &["backup", "shop"], "backup-secret");
    assert!(out.contains("backed up without their passwords"), "{out}");
    let id = listed_ids(&config, Some("shop")).remove(0);
    let shown = ok(&config, &["show", &id, "--json"]);
    assert!(
        shown.contains("\"globals_role_passwords\": false"),
        "{shown}"
    );

    let empty = PgServer::start();
    let url = server_url(&empty);
    ok_with(
        &config,
        &["restore", "shop", "--server", &url, "--to", "shop"],
        "backup-secret",
    );
    assert_faithful(
        "restore of a non-superuser backup",
        &expected_db,
        &fingerprint_database(empty.port(), "shop"),
    );
    assert_faithful(
        "roles of a non-superuser backup (no passwords in it)",
        &expected_roles.without(&["roles.passwords"]),
        &fingerprint_roles(empty.port()).without(&["roles.passwords"]),
    );

    // The other way the README names, pg_read_all_data, reads pg_authid too: the roles'
    // passwords are in the backup then, and the output says nothing about them.
    psql(
        source.port(),
        "postgres",
        "GRANT pg_read_all_data TO backup",
    );
    let out = ok_with(&config, &["backup", "shop"], "backup-secret");
    assert!(!out.contains("without their passwords"), "{out}");
}

#[test]
fn damaged_backup_before_in_place_takes_no_safety_backup_and_swap_names_sessions() {
    let source = PgServer::start();
    corpus::create(source.port(), "shop");
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &source, "postgres");
    let env = with_password(PASSWORD);
    assert_eq!(dr_with(&config, &["backup", "shop"], &env).0, 0);
    let before = listed_ids(&config, Some("shop"));
    let id = before[0].clone();

    // --swap with a session on shop and no --force: it waits, names it, replaces nothing.
    let mut holder = std::process::Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &source.port().to_string()])
        .args(["-U", "postgres", "-d", "shop", "-c", "SELECT pg_sleep(120)"])
        .env("PGPASSWORD", PASSWORD)
        .env("PGAPPNAME", "nightly-report")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (code, out) = dr_with(
        &config,
        &["restore", "shop", "--swap", "--wait", "2s"],
        &env,
    );
    let _ = holder.kill();
    let _ = holder.wait();
    eprintln!("--swap with a session:\n{out}");
    assert_ne!(code, 0, "{out}");
    for part in [
        "still connected to shop after 2 s",
        "\"nightly-report\"",
        "user postgres",
        "--force",
    ] {
        assert!(out.contains(part), "{part} missing from: {out}");
    }

    // A damaged part: refused before the safety backup, so `dr list` shows nothing new.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join(format!("repo/backups/shop/{id}/manifest.json")),
        )
        .unwrap(),
    )
    .unwrap();
    let dump = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "dump")
        .unwrap();
    let object = dump["parts"][0]["object"].as_str().unwrap();
    let part = dir.path().join(format!("repo/backups/shop/{id}/{object}"));
    dr_testing::damage::damage_file(&part, dr_testing::Damage::Flip);
    let (code, out) = dr_with(&config, &["restore", "shop", &id, "--in-place"], &env);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("nothing was written"), "{out}");
    let (_, _) = dr(&config, &["list"]);
    assert_eq!(
        listed_ids(&config, Some("shop")),
        before,
        "a safety backup was taken"
    );
}
