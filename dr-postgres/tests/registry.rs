//! PostgreSQL through the kind registry, as a front end drives it: `register`, then
//! `build_source("postgres", settings)` and `Source::restore` with `RestoreOptions`.
//! Oracles are psql and pg_dump (dr_testing::fidelity::postgres), never dr.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_core::object_store::local::LocalFileSystem;
use dr_core::serde_json::json;
use dr_core::{
    BackupOptions, BackupSelector, Error, Identities, Registry, Repository, RestoreOptions,
    RestoreRequest, Source, SourceSettings, VerifyLevel,
};
use dr_testing::PgServer;
use dr_testing::fidelity::assert_faithful;
use dr_testing::fidelity::postgres::{corpus, fingerprint_database, fingerprint_roles, psql};
use dr_testing::postgres::{bin_dir, give_to_postgres, postgres_owner, stop_cluster};
use dr_testing::stall::assert_no_stall;

fn registry() -> Registry {
    let mut registry = Registry::new();
    dr_postgres::register(&mut registry);
    registry
}

async fn repository(dir: &Path) -> Repository {
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap());
    let ids = Identities::generate();
    Repository::init(store, "local", &ids.to_recipients())
        .await
        .unwrap()
        .with_identities(ids)
}

fn source(settings: dr_core::serde_json::Value) -> Arc<dyn Source> {
    registry()
        .build_source("postgres", &SourceSettings::new(settings))
        .unwrap()
}

async fn backup(repo: &Repository, name: &str, source: &dyn Source) -> dr_core::Manifest {
    let capture = source.backup(repo, name, false).await.unwrap();
    repo.backup(name, capture.as_ref(), &BackupOptions::default())
        .await
        .unwrap()
}

async fn restore(
    repo: &Repository,
    name: &str,
    source: &dyn Source,
    options: &RestoreOptions,
) -> dr_core::Result<dr_core::RestoreReport> {
    let selector = BackupSelector::Latest;
    source
        .restore(&RestoreRequest::new(repo, name, &selector, options))
        .await
}

#[tokio::test]
async fn logical_restores_to_a_new_database_and_in_place_without_stalling() {
    let server = PgServer::start();
    let port = server.port();
    corpus::create(port, "shop");
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path()).await;
    let shop = source(json!({ "url": server.url("shop") }));
    assert_eq!(shop.kind(), "postgres.logical");
    let original = fingerprint_database(port, "shop");

    let report = assert_no_stall("logical backup and restore to a new database", async {
        backup(&repo, "shop", shop.as_ref()).await;
        let options = RestoreOptions::default().with_target("shop copy");
        restore(&repo, "shop", shop.as_ref(), &options)
            .await
            .unwrap()
    })
    .await;
    assert!(report.target.ends_with("shop copy"), "{}", report.target);
    assert!(report.safety_backup_id.is_none());
    assert_faithful(
        "registry: new database",
        &original.without(&["db.name"]),
        &fingerprint_database(port, "shop copy").without(&["db.name"]),
    );

    // In place after the live database changed: a safety backup of the changed database
    // first (in the repository, labelled), then the backup's content.
    psql(port, "shop", "DELETE FROM app.items WHERE id % 2 = 0");
    let changed = fingerprint_database(port, "shop");
    assert_ne!(changed, original, "the change changed nothing");
    let options = RestoreOptions::default().with_in_place(true);
    let report = assert_no_stall(
        "in-place restore",
        restore(&repo, "shop", shop.as_ref(), &options),
    )
    .await
    .unwrap();
    assert_faithful(
        "registry: in place",
        &original,
        &fingerprint_database(port, "shop"),
    );
    let safety = report.safety_backup_id.clone().expect("a safety backup id");
    assert!(
        report.notes.iter().any(|n| n.contains(&safety)),
        "{:?}",
        report.notes
    );
    assert_eq!(report.details["checked_before_writing"], true);
    let listed = repo.list(Some("shop")).await.unwrap().backups;
    let manifest = listed
        .iter()
        .find(|m| m.id == safety)
        .expect("safety backup listed");
    assert!(manifest.labels.iter().any(|l| l == dr_core::SAFETY_LABEL));
    // The safety backup holds the database as it was before: restored beside it, it is the
    // changed one.
    let selector = BackupSelector::Id(safety);
    let options = RestoreOptions::default().with_target("before");
    shop.restore(&RestoreRequest::new(&repo, "shop", &selector, &options))
        .await
        .unwrap();
    assert_faithful(
        "the safety backup",
        &changed.without(&["db.name"]),
        &fingerprint_database(port, "before").without(&["db.name"]),
    );
    // A wrong password from password_env (HOME: set, and surely not the password): the
    // error names the variable, never its value.
    let home = std::env::var("HOME").unwrap();
    let wrong = source(json!({
        "url": format!("postgres://postgres@127.0.0.1:{port}/shop"),
        "password_env": "HOME",
    }));
    let options = RestoreOptions::default().with_target("never");
    let err = restore(&repo, "shop", wrong.as_ref(), &options)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("variable HOME, named by password_env"),
        "{err}"
    );
    assert!(!err.contains(&home), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restore_brings_the_roles_first_and_globals_only_the_roles() {
    let server = PgServer::start();
    corpus::create(server.port(), "shop");
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path()).await;
    let shop = source(json!({ "url": server.url("shop") }));
    backup(&repo, "shop", shop.as_ref()).await;
    let source_db = fingerprint_database(server.port(), "shop");
    let source_roles = fingerprint_roles(server.port());

    let empty = PgServer::start();
    let options = RestoreOptions::default()
        .with_server(Some(empty.url("postgres")))
        .with_target("shop");
    let report = restore(&repo, "shop", shop.as_ref(), &options)
        .await
        .unwrap();
    let created = &report.details["roles"]["outcome"]["created"];
    assert_eq!(
        created,
        &json!(["app_owner", "app_ro", "app_rw", "reporting"]),
        "{}",
        report.details
    );
    assert_faithful(
        "registry: --server",
        &source_db,
        &fingerprint_database(empty.port(), "shop"),
    );
    assert_faithful(
        "registry: --server roles (no passwords)",
        &source_roles.without(&["roles.passwords"]),
        &fingerprint_roles(empty.port()).without(&["roles.passwords"]),
    );

    // Only the roles, with their passwords, onto another empty server.
    let other = PgServer::start();
    let options = RestoreOptions::default()
        .with_server(Some(other.url("postgres")))
        .with_globals(true)
        .with_role_passwords(true);
    let report = restore(&repo, "shop", shop.as_ref(), &options)
        .await
        .unwrap();
    assert_eq!(report.details["outcome"]["passwords_restored"], true);
    assert_faithful(
        "registry: globals",
        &source_roles,
        &fingerprint_roles(other.port()),
    );
    assert!(!dr_testing::fidelity::postgres::database_names(other.port()).contains("shop"));
}

#[tokio::test]
async fn unknown_settings_and_unsupported_options_are_refused() {
    let registry = registry();
    assert_eq!(registry.source_types().collect::<Vec<_>>(), ["postgres"]);
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path()).await;
    assert!(
        registry
            .kind("postgres.logical")
            .unwrap()
            .verifier(&repo)
            .is_none()
    );
    assert!(
        registry
            .kind("postgres.base")
            .unwrap()
            .verifier(&repo)
            .is_some()
    );
    assert!(registry.archive("postgres.base").is_some());
    assert!(registry.archive("postgres.logical").is_none());

    let typo = SourceSettings::new(json!({ "url": "postgres://a@127.0.0.1/db", "globlas": false }));
    let err = registry.build_source("postgres", &typo).err().unwrap();
    assert!(
        matches!(err, Error::Usage(_)) && err.to_string().contains("globlas"),
        "{err}"
    );

    // Refused before anything is read: the repository holds no backup at all, and the
    // server does not exist.
    let logical = source(json!({ "url": "postgres://a@127.0.0.1:1/db" }));
    for (option, options) in [
        ("dry_run", RestoreOptions::default().with_dry_run(true)),
        (
            "keep_archiving",
            RestoreOptions::default().with_keep_archiving(true),
        ),
        (
            "only",
            RestoreOptions::default().with_only(vec!["x".into()]),
        ),
        (
            "with_role_passwords",
            RestoreOptions::default().with_role_passwords(true),
        ),
        (
            "in_place",
            RestoreOptions::default()
                .with_in_place(true)
                .with_server(Some("postgres://b@h/x".into())),
        ),
    ] {
        let err = restore(&repo, "db", logical.as_ref(), &options)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Usage(_)) && err.to_string().contains(option),
            "{option}: {err}"
        );
    }
    let physical = source(json!({ "url": "postgres://a@127.0.0.1:1/db", "method": "physical" }));
    assert_eq!(physical.kind(), "postgres.base");
    for (option, options) in [
        ("swap", RestoreOptions::default().with_swap(true)),
        ("in_place", RestoreOptions::default().with_in_place(true)),
        (
            "server",
            RestoreOptions::default().with_server(Some("postgres://b@h/x".into())),
        ),
        ("globals", RestoreOptions::default().with_globals(true)),
    ] {
        let err = restore(&repo, "db", physical.as_ref(), &options)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Usage(_)) && err.to_string().contains(option),
            "{option}: {err}"
        );
    }
}

/// Switches to a new WAL segment and waits until the finished one is archived.
fn archive_now(server: &PgServer) {
    let segment = server.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
    server.psql("postgres", "SELECT pg_switch_wal()");
    let deadline = Instant::now() + Duration::from_secs(60);
    let archived = |last: &str| last.len() == 24 && last[8..] >= segment[8..];
    while !archived(&server.psql(
        "postgres",
        "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
    )) {
        assert!(Instant::now() < deadline, "{segment} not archived");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `pg_ctl` as the postgres user (when root) on the restored directory.
fn pg_ctl(args: &[&str]) {
    let mut command = Command::new(bin_dir().join("pg_ctl"));
    command.args(args).stdout(std::process::Stdio::null());
    if let Some((uid, gid)) = postgres_owner() {
        command.uid(uid).gid(gid);
    }
    assert!(command.status().unwrap().success(), "pg_ctl {args:?}");
}

#[tokio::test]
async fn physical_base_backup_and_pitr_through_the_registry_without_stalling() {
    // The cluster archives into a plain directory; the test pushes those files into the
    // repository's WAL archive, and the restored server's restore_command (the front end's
    // argv + `wal-fetch --source NAME %f %p`) is a shell that copies from that directory.
    let work = tempfile::tempdir().unwrap();
    let waldir = work.path().join("wal");
    std::fs::create_dir(&waldir).unwrap();
    give_to_postgres(work.path());
    let archive_command = format!("cp %p {}/%f", waldir.display());
    let server = PgServer::start_with(&[
        ("archive_mode", "on"),
        ("archive_command", &archive_command),
        ("wal_level", "replica"),
    ]);
    server.psql("postgres", "CREATE DATABASE shop");
    server.psql("shop", "CREATE TABLE t (v int); INSERT INTO t VALUES (1)");
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = repository(repo_dir.path()).await;
    let fetch = format!("cp \"{}/$4\" \"$5\"", waldir.display());
    let settings = SourceSettings::new(json!({ "url": server.url("shop"), "method": "physical" }))
        .with_self_command(vec!["sh".into(), "-c".into(), fetch, "fetch".into()]);
    let pg = registry().build_source("postgres", &settings).unwrap();

    let manifest = assert_no_stall("base backup", backup(&repo, "pg", pg.as_ref())).await;
    server.psql("shop", "INSERT INTO t VALUES (2)");
    archive_now(&server);
    let sysid = dr_postgres::system_identifier(&server.data_dir()).unwrap();
    let archive = dr_postgres::WalArchive::new(&repo, "pg").unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&waldir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in &names {
        archive.push(path, sysid).await.unwrap();
    }

    // The archive as verify and prune see it.
    let wal = registry().archive("postgres.base").unwrap();
    let findings = wal
        .check(
            &repo,
            "pg",
            std::slice::from_ref(&manifest),
            VerifyLevel::Checksums,
        )
        .await
        .unwrap();
    assert_eq!(findings.len(), 1);
    assert!(
        findings[0].problems.is_empty(),
        "{:?}",
        findings[0].problems
    );
    assert!(
        findings[0]
            .passed
            .iter()
            .any(|p| p.starts_with("WAL archive continuous")),
        "{:?}",
        findings[0].passed
    );
    assert!(findings[0].recoverable_until.is_some());
    let pruned = wal
        .prune(&repo, "pg", std::slice::from_ref(&manifest), true)
        .await
        .unwrap();
    let start = manifest.source_info["start_wal_file"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        pruned.unneeded.iter().all(|n| n[..24] < start[..]),
        "{:?} vs {start}",
        pruned.unneeded
    );
    assert!(
        wal.prune(&repo, "pg", &[], true)
            .await
            .unwrap()
            .kept_all_because
            .is_some()
    );

    // Dry run: the plan in the details, nothing written.
    let data = work.path().join("restored");
    let dry = RestoreOptions::default()
        .with_dry_run(true)
        .with_target(&data);
    let report = restore(&repo, "pg", pg.as_ref(), &dry).await.unwrap();
    assert_eq!(report.details["dry_run"], true);
    assert_eq!(report.details["plan"]["base_backup"], manifest.id.as_str());
    assert!(
        !report.details["plan"]["wal"].as_array().unwrap().is_empty(),
        "{}",
        report.details
    );
    assert!(!data.exists());

    let options = RestoreOptions::default().with_target(&data);
    let report = assert_no_stall("PITR restore", restore(&repo, "pg", pg.as_ref(), &options))
        .await
        .unwrap();
    assert_eq!(report.backup_id, manifest.id);
    assert_eq!(report.details["promoted"], false);
    let auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("wal-fetch --source pg %f %p"), "{auto}");
    assert!(data.join("recovery.signal").exists());

    // The oracle: PostgreSQL itself replays the WAL and holds the row written after the
    // base backup.
    give_to_postgres(&data);
    let port = dr_testing::s3::free_port();
    let opts = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {}",
        data.display()
    );
    let log = data.join("test.log");
    pg_ctl(&[
        "start",
        "-w",
        "-D",
        data.to_str().unwrap(),
        "-l",
        log.to_str().unwrap(),
        "-o",
        &opts,
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while psql(port, "postgres", "SELECT pg_is_in_recovery()") != "f" {
        assert!(
            Instant::now() < deadline,
            "not promoted: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        psql(
            port,
            "shop",
            "SELECT string_agg(v::text, ',' ORDER BY v) FROM t"
        ),
        "1,2"
    );
    stop_cluster(&data);

    // A drill: the RPO probe goes into the live cluster, and the archive says how far a
    // recovery reaches.
    let setup = pg
        .drill(&repo, &repo.reader(manifest.clone()))
        .await
        .unwrap();
    assert!(setup.recoverable_until.is_some());

    // A damaged archived segment: verify names it, and a restore is refused before it
    // writes anything.
    let damaged = names
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .find(|n| n.len() == 24 && n[..] > start[..])
        .expect("a segment after the base backup's first");
    let key = dr_core::object_store::path::Path::from(format!(
        "wal/pg/{}/{damaged}.zst.age",
        &damaged[..8]
    ));
    let store = LocalFileSystem::new_with_prefix(repo_dir.path()).unwrap();
    dr_testing::damage::damage_object(&store, &key, dr_testing::Damage::Flip).await;
    let findings = wal
        .check(
            &repo,
            "pg",
            std::slice::from_ref(&manifest),
            VerifyLevel::Checksums,
        )
        .await
        .unwrap();
    let problems = findings[0].problems.join("; ");
    assert!(
        problems.contains(&format!("WAL file {damaged} is damaged")),
        "{problems}"
    );
    let elsewhere = work.path().join("refused");
    let options = RestoreOptions::default().with_target(&elsewhere);
    let err = restore(&repo, "pg", pg.as_ref(), &options)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ChecksFailed { .. }), "{err}");
    assert!(
        err.to_string().contains(&damaged) && err.to_string().contains("nothing was written"),
        "{err}"
    );
    assert!(!elsewhere.exists());
}
