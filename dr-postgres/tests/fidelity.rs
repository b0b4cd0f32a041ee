//! Fidelity: every restore mode gives back the database as it was at backup time — its
//! properties (owner, ACL, settings, comment, connection limit, encoding, locale), schema,
//! rows, sequences and large objects — and `--server` onto an empty server also its roles.
//! The oracle is psql/pg_dump (dr_testing::fidelity::postgres), never dr.

use std::sync::Arc;
use std::time::Duration;

use dr_core::object_store::local::LocalFileSystem;
use dr_core::{BackupOptions, Error, Identities, Repository, Restore, RestoreOptions};
use dr_postgres::{PgConnection, PostgresSource, PostgresTarget, apply_globals};
use dr_testing::PgServer;
use dr_testing::fidelity::assert_faithful;
use dr_testing::fidelity::postgres::{corpus, fingerprint_database, fingerprint_roles, psql};

struct Fixture {
    server: PgServer,
    repo: Repository,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let server = PgServer::start();
    corpus::create(server.port(), "shop");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let ids = Identities::generate();
    let repo = Repository::init(store, "local", &ids.to_recipients())
        .await
        .unwrap()
        .with_identities(ids);
    Fixture {
        server,
        repo,
        _dir: dir,
    }
}

fn conn(server: &PgServer, db: &str) -> PgConnection {
    PgConnection::from_url(&server.url(db)).unwrap()
}

impl Fixture {
    async fn backup(&self) -> dr_core::BackupReader {
        let source = PostgresSource::new(conn(&self.server, "shop"));
        let manifest = self
            .repo
            .backup("shop", &source, &BackupOptions::default())
            .await
            .unwrap();
        self.repo.reader(manifest)
    }
}

/// Changes every property the restore must put back (and some rows), on `shop`.
fn drift(port: u16) {
    psql(
        port,
        "postgres",
        "ALTER DATABASE shop SET work_mem = '1MB'; ALTER DATABASE shop RESET timezone;
         GRANT CONNECT, TEMPORARY ON DATABASE shop TO PUBLIC; REVOKE CONNECT ON DATABASE shop FROM app_ro;
         COMMENT ON DATABASE shop IS 'changed'; ALTER DATABASE shop CONNECTION LIMIT -1;
         ALTER ROLE reporting IN DATABASE shop SET work_mem = '2MB';
         ALTER ROLE app_ro IN DATABASE shop RESET ALL; ALTER DATABASE shop OWNER TO app_rw",
    );
    psql(
        port,
        "shop",
        "DELETE FROM app.items WHERE id % 3 = 0; SELECT nextval('app.unused'); SELECT lo_unlink(424243);
         ALTER POLICY tenant_isolation ON app.accounts USING (true)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_restore_mode_on_the_same_server_is_faithful() {
    let fx = fixture().await;
    let port = fx.server.port();
    let source = fingerprint_database(port, "shop");
    let reader = fx.backup().await;
    let target = PostgresTarget::new(conn(&fx.server, "shop"));

    // The default: a new database <db>_restored_<time>. Its name is the one thing it is
    // documented not to carry.
    let report = target
        .restore(&reader, &RestoreOptions::default())
        .await
        .unwrap();
    let name = report.target.rsplit('/').next().unwrap().to_owned();
    assert!(name.starts_with("shop_restored_"), "{name}");
    assert_faithful(
        "new database (default)",
        &source.without(&["db.name"]),
        &fingerprint_database(port, &name).without(&["db.name"]),
    );
    psql(port, "postgres", &format!("DROP DATABASE {name}"));

    // --to NAME: the same, under the name asked for.
    let options = RestoreOptions::default().with_target("shop copy");
    target.restore(&reader, &options).await.unwrap();
    let copy = fingerprint_database(port, "shop copy");
    assert_eq!(copy.get("db.name"), Some("shop copy"));
    assert_faithful(
        "--to",
        &source.without(&["db.name"]),
        &copy.without(&["db.name"]),
    );

    // --swap after the source drifted: shop is the backup again, name and all.
    drift(port);
    assert_ne!(
        fingerprint_database(port, "shop"),
        source,
        "the drift changed nothing"
    );
    let swapped = target
        .restore(&reader, &RestoreOptions::default().with_swap(true))
        .await
        .unwrap();
    assert_faithful("--swap", &source, &fingerprint_database(port, "shop"));
    let kept = swapped.previous_kept_at.unwrap();
    assert_eq!(
        fingerprint_database(port, &kept).get("db.comment"),
        Some("changed")
    );

    // --in-place after another drift: the database itself is given back its properties.
    drift(port);
    PostgresTarget::new(conn(&fx.server, "shop"))
        .with_in_place(true)
        .restore(&reader, &RestoreOptions::default())
        .await
        .unwrap();
    assert_faithful("--in-place", &source, &fingerprint_database(port, "shop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restore_onto_an_empty_server_brings_the_roles() {
    let fx = fixture().await;
    let source_db = fingerprint_database(fx.server.port(), "shop");
    let source_roles = fingerprint_roles(fx.server.port());
    let reader = fx.backup().await;
    let options = RestoreOptions::default().with_target("shop");

    // Without the roles, pg_restore stops at the first one it needs, and says what to do.
    let empty = PgServer::start();
    let onto = PostgresTarget::new(conn(&empty, "shop"));
    let err = onto.restore(&reader, &options).await.unwrap_err();
    let text = err.to_string();
    eprintln!("--server without the roles: {text}");
    assert!(
        text.contains("does not exist") && text.contains("--globals"),
        "{text}"
    );
    assert!(
        !fingerprint_roles(empty.port())
            .get("roles")
            .unwrap()
            .contains("app_ro"),
        "a failed restore created roles"
    );

    // The roles without passwords (the default), then the database.
    let outcome = apply_globals(&conn(&empty, "postgres"), &reader, false)
        .await
        .unwrap();
    assert_eq!(
        outcome.created,
        ["app_owner", "app_ro", "app_rw", "reporting"],
        "{outcome:?}"
    );
    assert_eq!(outcome.existing, ["postgres"]);
    onto.restore(&reader, &options).await.unwrap();
    assert_faithful(
        "--server",
        &source_db,
        &fingerprint_database(empty.port(), "shop"),
    );
    // Documented: passwords are not restored without --with-role-passwords.
    let roles = fingerprint_roles(empty.port());
    assert_eq!(roles.get("roles.passwords"), Some("postgres"));
    assert_faithful(
        "--server roles without passwords",
        &source_roles.without(&["roles.passwords"]),
        &roles.without(&["roles.passwords"]),
    );
    // Applying them again changes nothing: every role exists and is left alone.
    let again = apply_globals(&conn(&empty, "postgres"), &reader, true)
        .await
        .unwrap();
    assert!(again.created.is_empty(), "{again:?}");
    assert_eq!(fingerprint_roles(empty.port()), roles);

    // With passwords, onto another empty server: the roles are the source's exactly.
    let other = PgServer::start();
    apply_globals(&conn(&other, "postgres"), &reader, true)
        .await
        .unwrap();
    assert_faithful(
        "--server --with-role-passwords",
        &source_roles,
        &fingerprint_roles(other.port()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_waits_for_sessions_and_ends_them_only_with_force() {
    let fx = fixture().await;
    let port = fx.server.port();
    let reader = fx.backup().await;
    let holder = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password(dr_testing::postgres::PASSWORD)
        .dbname("shop")
        .application_name("report-job")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let (client, connection) = holder;
    let held = tokio::spawn(connection);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let target = PostgresTarget::new(conn(&fx.server, "shop")).with_wait(Duration::from_secs(2));
    let started = std::time::Instant::now();
    let err = target
        .restore(&reader, &RestoreOptions::default().with_swap(true))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(2));
    let text = err.to_string();
    assert!(
        matches!(err, Error::TargetInUse { holder_pid: Some(p), .. } if i64::from(p) == i64::from(pid)),
        "{err:?}"
    );
    for part in [
        format!("pid {pid}"),
        "user postgres".into(),
        "\"report-job\"".into(),
        "127.0.0.1".into(),
        "--force".into(),
    ] {
        assert!(text.contains(&part), "{part} missing from: {text}");
    }
    // Nothing was ended, shop was not replaced and takes sessions again.
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    assert_eq!(
        psql(port, "shop", "SELECT current_database()"),
        "shop",
        "shop takes new sessions again"
    );

    // With --force the session is ended and the swap happens.
    let report = target
        .restore(
            &reader,
            &RestoreOptions::default().with_swap(true).with_force(true),
        )
        .await
        .unwrap();
    assert!(report.previous_kept_at.is_some());
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
    let _ = held.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_lock_wait_times_out_naming_the_relation_and_holder() {
    let fx = fixture().await;
    let port = fx.server.port();
    let reader = fx.backup().await;
    psql(
        port,
        "shop",
        "INSERT INTO app.accounts VALUES (999, 'x', 0)",
    );
    let before = fingerprint_database(port, "shop");
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password(dr_testing::postgres::PASSWORD)
        .dbname("shop")
        .application_name("long-report")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("BEGIN; LOCK TABLE app.items IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let err = PostgresTarget::new(conn(&fx.server, "shop"))
        .with_in_place(true)
        .with_wait(Duration::from_secs(2))
        .restore(&reader, &RestoreOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    eprintln!("in-place under a lock: {text}");
    for part in [
        "lock timeout".to_owned(),
        format!("on app.items held by pid {pid}"),
        "long-report".into(),
        "is as it was".into(),
    ] {
        assert!(text.contains(&part), "{part} missing from: {text}");
    }
    client.batch_execute("COMMIT").await.unwrap();
    assert_faithful(
        "failed --in-place leaves the database",
        &before,
        &fingerprint_database(port, "shop"),
    );
}

/// Compiles the de_DE.UTF-8 locale into a directory of its own (for `LOCPATH`), so that
/// only the server started with it has that locale.
fn private_locale() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("localedef")
        .args(["-i", "de_DE", "-f", "UTF-8"])
        .arg(dir.path().join("de_DE.UTF-8"))
        .output()
        .expect("localedef (libc-bin) is missing");
    assert!(
        dir.path().join("de_DE.UTF-8").exists(),
        "localedef failed (apt-get install -y locales): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dr_testing::postgres::give_to_postgres(dir.path());
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_locale_is_kept_or_its_absence_is_a_clear_error() {
    let locales = private_locale();
    let locpath = locales.path().to_str().unwrap().to_owned();
    let server = PgServer::start_with_env(&[], &[("LOCPATH", &locpath)]);
    let port = server.port();
    psql(
        port,
        "postgres",
        "CREATE DATABASE shop TEMPLATE template0 ENCODING 'UTF8' LOCALE 'de_DE.UTF-8'",
    );
    psql(
        port,
        "shop",
        "CREATE TABLE words (w text); INSERT INTO words VALUES ('Äpfel'), ('Zebra'), ('apfel'), ('Öl')",
    );
    let source = fingerprint_database(port, "shop");
    assert_eq!(source.get("db.collate"), Some("de_DE.UTF-8"));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let ids = Identities::generate();
    let repo = Repository::init(store, "local", &ids.to_recipients())
        .await
        .unwrap()
        .with_identities(ids);
    let manifest = repo
        .backup(
            "shop",
            &PostgresSource::new(conn(&server, "shop")),
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    let reader = repo.reader(manifest);

    // On a server that has the locale: created with it (the cluster default is another).
    PostgresTarget::new(conn(&server, "shop"))
        .restore(&reader, &RestoreOptions::default().with_target("shop2"))
        .await
        .unwrap();
    assert_faithful(
        "--to on a server with the locale",
        &source.without(&["db.name"]),
        &fingerprint_database(port, "shop2").without(&["db.name"]),
    );

    // On one without it: a clear error, and no database left behind.
    let other = PgServer::start();
    let err = PostgresTarget::new(conn(&other, "shop"))
        .restore(&reader, &RestoreOptions::default().with_target("shop"))
        .await
        .unwrap_err();
    let text = err.to_string();
    eprintln!("restore onto a server without the locale: {text}");
    for part in ["LC_COLLATE de_DE.UTF-8", "install that locale"] {
        assert!(text.contains(part), "{part} missing from: {text}");
    }
    assert!(
        !dr_testing::fidelity::postgres::database_names(other.port()).contains("shop"),
        "a database was left on the target"
    );
}
