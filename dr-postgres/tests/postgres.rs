//! Logical backups against a real PostgreSQL 15 started by the harness.

use std::sync::Arc;

use dr_core::object_store::local::LocalFileSystem;
use dr_core::object_store::path::Path as ObjectPath;
use dr_core::object_store::{ObjectStoreExt, PutPayload};
use dr_core::{
    BackupOptions, Error, Identities, PipelineOptions, Repository, Restore, RestoreOptions, Verify,
    VerifyLevel,
};
use dr_postgres::{PgConnection, PostgresSource, PostgresTarget, PostgresVerifier};
use dr_testing::{Damage, PgServer};

const SCHEMA: &str = "
CREATE TABLE customers (id serial PRIMARY KEY, email text UNIQUE NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id),
                     total numeric(10,2) NOT NULL, doc jsonb, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE order_items (order_id bigint REFERENCES orders(id), line int, sku text, qty int,
                          PRIMARY KEY (order_id, line));
CREATE SEQUENCE invoice_numbers START 1000;
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 500;
CREATE FUNCTION order_count(c int) RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM orders WHERE customer_id = c';
INSERT INTO customers (email) SELECT 'user' || i || '@example.com' FROM generate_series(1, 500) i;
INSERT INTO orders (customer_id, total, doc) SELECT 1 + i % 500, (i % 1000)::numeric, jsonb_build_object('n', i, 'note', repeat('x', i % 50))
  FROM generate_series(1, 3000) i;
INSERT INTO order_items SELECT o.id, l, 'SKU-' || (o.id * l), l FROM orders o, generate_series(1, 2) l;
SELECT nextval('invoice_numbers') FROM generate_series(1, 7);
SELECT lo_from_bytea(424242, 'large object payload'::bytea);
";

struct Fixture {
    server: PgServer,
    repo: Repository,
    store: Arc<LocalFileSystem>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let server = PgServer::start();
    server.psql("postgres", "CREATE DATABASE shop");
    server.psql("shop", SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let ids = Identities::generate();
    let repo = Repository::init(store.clone(), "local", &ids.to_recipients())
        .await
        .unwrap()
        .with_identities(ids)
        .with_pipeline(PipelineOptions::default().with_part_size(64 * 1024));
    Fixture {
        server,
        repo,
        store,
        _dir: dir,
    }
}

impl Fixture {
    fn conn(&self, db: &str) -> PgConnection {
        PgConnection::from_url(&self.server.url(db)).unwrap()
    }

    /// A fingerprint of every table, the view, the function, the sequence and the large object.
    fn fingerprint(&self, db: &str) -> Vec<String> {
        let mut out = Vec::new();
        for table in ["customers", "orders", "order_items"] {
            out.push(self.server.psql(db, &format!("SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t")));
        }
        out.push(self.server.psql(db, "SELECT count(*) FROM big_orders"));
        out.push(self.server.psql(db, "SELECT order_count(7)"));
        out.push(
            self.server
                .psql(db, "SELECT last_value FROM invoice_numbers"),
        );
        out.push(
            self.server
                .psql(db, "SELECT convert_from(lo_get(424242), 'UTF8')"),
        );
        out
    }

    async fn backup(&self) -> dr_core::Manifest {
        let source = PostgresSource::new(self.conn("shop"));
        self.repo
            .backup("shop", &source, &BackupOptions::default())
            .await
            .unwrap()
    }

    /// A backup from `url` that must fail; returns its error.
    async fn failing_backup(&self, url: &str) -> Error {
        let source = PostgresSource::new(PgConnection::from_url(url).unwrap());
        self.repo
            .backup("shop", &source, &BackupOptions::default())
            .await
            .unwrap_err()
    }

    /// Flips one byte of a part of the dump; returns its key and original bytes.
    async fn damage_dump_part(
        &self,
        manifest: &dr_core::Manifest,
        part: usize,
    ) -> (ObjectPath, bytes::Bytes) {
        let key = dr_testing::damage::part_of(manifest, "dump", part);
        let original =
            dr_testing::damage::damage_object(self.store.as_ref(), &key, Damage::Flip).await;
        (key, original)
    }

    fn databases(&self) -> String {
        self.server.psql(
            "postgres",
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_into_a_new_database_and_swap() {
    let fx = fixture().await;
    let before = fx.fingerprint("shop");
    let manifest = fx.backup().await;
    let info = &manifest.source_info;
    assert!(
        info["server_version"].as_str().unwrap().starts_with("15"),
        "{info:?}"
    );
    assert_eq!(info["row_counts"]["public.orders"], 3000);
    assert_eq!(info["row_counts"]["public.order_items"], 6000);
    assert!(info["system_identifier"].as_str().is_some());
    assert!(
        manifest.artifact("globals").unwrap().plain_size > 0,
        "roles dumped"
    );

    // Into a new database: identical content, the original untouched.
    let target = PostgresTarget::new(fx.conn("shop"));
    let options = RestoreOptions::default().with_target("shop_copy");
    let report = target
        .restore(&fx.repo.reader(manifest.clone()), &options)
        .await
        .unwrap();
    assert!(report.target.ends_with("/shop_copy"), "{}", report.target);
    assert_eq!(fx.fingerprint("shop_copy"), before);

    // A change after the backup, then a restore with swap: the change is gone from `shop`
    // and kept in the renamed original.
    fx.server.psql(
        "shop",
        "DELETE FROM order_items; DELETE FROM orders WHERE id > 10",
    );
    let swapped = target
        .restore(
            &fx.repo.reader(manifest.clone()),
            &RestoreOptions::default().with_swap(true),
        )
        .await
        .unwrap();
    assert_eq!(
        fx.fingerprint("shop"),
        before,
        "restored content swapped in"
    );
    let kept = swapped.previous_kept_at.unwrap();
    assert!(kept.starts_with("shop_pre_restore_"), "{kept}");
    assert_eq!(fx.server.psql(&kept, "SELECT count(*) FROM orders"), "10");

    // A target that exists is refused without force.
    let err = target
        .restore(&fx.repo.reader(manifest), &options)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_restores_into_a_scratch_database_and_drops_it() {
    let fx = fixture().await;
    let manifest = fx.backup().await;
    let databases = fx.databases();
    let checks = vec![dr_core::checks::UserCheck {
        name: "orders".into(),
        sql: "SELECT count(*) FROM orders".into(),
        expect: ">= 3000".into(),
    }];
    let report = PostgresVerifier::new(fx.conn("shop"))
        .with_checks(checks)
        .verify(&fx.repo.reader(manifest.clone()), VerifyLevel::Restore)
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.level_performed, VerifyLevel::Restore);
    let passed = report.passed.join("\n");
    assert!(passed.contains("row counts match the backup"), "{passed}");
    assert!(
        passed.contains("no orphaned rows through 2 foreign keys"),
        "{passed}"
    );
    assert!(passed.contains("check orders: 3000 >= 3000 ok"), "{passed}");
    assert!(passed.contains("measured RTO"), "{passed}");
    assert_eq!(fx.databases(), databases, "scratch database dropped");
    let structure = PostgresVerifier::new(fx.conn("shop"))
        .verify(&fx.repo.reader(manifest), VerifyLevel::Checksums)
        .await
        .unwrap();
    let passed = structure.passed.join("\n");
    assert!(
        passed.contains("pg_restore --list reads the archive"),
        "checksums level runs the structure check: {passed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_found_through_foreign_keys() {
    let fx = fixture().await;
    fx.server.psql("shop", "ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_fkey; DELETE FROM orders WHERE id = 5;");
    fx.server.psql("shop", "ALTER TABLE order_items ADD CONSTRAINT order_items_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders(id) NOT VALID");
    let client = fx.conn("shop").connect().await.unwrap();
    let outcome = dr_postgres::check_restored(&client, None, &[])
        .await
        .unwrap();
    assert_eq!(outcome.problems.len(), 1, "{:?}", outcome.problems);
    assert!(
        outcome.problems[0].contains("order_items_order_id_fkey: 2 orphaned rows"),
        "{:?}",
        outcome.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pg_dump_commits_nothing() {
    let fx = fixture().await;
    fx.server.psql("shop", "CREATE ROLE limited LOGIN PASSWORD 'limited'; GRANT CONNECT ON DATABASE shop TO limited; REVOKE ALL ON orders FROM PUBLIC;");
    let url = fx
        .server
        .url("shop")
        .replace("postgres:dr-test-secret@", "limited:limited@");
    let source = PostgresSource::new(PgConnection::from_url(&url).unwrap())
        .with_exact_counts(false)
        .with_globals(false);
    let err = fx
        .repo
        .backup("shop", &source, &BackupOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("pg_dump failed") && text.contains("permission denied"),
        "{text}"
    );
    assert!(
        matches!(&err, Error::Tool { program, status: Some(1), .. } if program == "pg_dump"),
        "{err:?}"
    );
    assert!(
        !text.contains("limited:limited"),
        "no password in errors: {text}"
    );
    assert!(
        fx.repo.list(None).await.unwrap().is_empty(),
        "nothing committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unreachable_server_are_clear() {
    let fx = fixture().await;
    let url = fx.server.url("shop").replace("dr-test-secret", "wrong");
    let err = fx.failing_backup(&url).await;
    assert!(
        err.to_string().contains("wrong password for user postgres"),
        "{err}"
    );
    assert!(!err.to_string().contains("wrong@"), "{err}");
    assert!(
        matches!(
            err,
            Error::Backend {
                system: "postgres",
                ..
            }
        ) && !err.is_retryable(),
        "a wrong password is not worth retrying: {err:?}"
    );
    let port = dr_testing::s3::free_port();
    let url = format!("postgres://postgres:x@127.0.0.1:{port}/shop");
    let err = fx.failing_backup(&url).await;
    assert!(
        err.to_string()
            .contains("cannot reach PostgreSQL at 127.0.0.1"),
        "{err}"
    );
    assert!(err.is_retryable(), "{err:?}");
}

/// Nothing listens on the port: a retryable [`Error::Backend`] carrying the client's error as
/// its cause, and no password in its message. Needs no server.
#[tokio::test]
async fn a_closed_port_is_a_retryable_backend_error() {
    use std::error::Error as _;
    let port = dr_testing::s3::free_port();
    let url = format!("postgres://postgres:s3cret@127.0.0.1:{port}/shop");
    let err = PgConnection::from_url(&url)
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    match &err {
        Error::Backend {
            system,
            operation,
            retryable,
            cause,
            ..
        } => {
            assert_eq!(*system, "postgres");
            assert!(operation.starts_with("connecting"), "{operation}");
            assert!(*retryable, "{err:?}");
            assert!(cause.is_some(), "the client's error is kept");
        }
        other => panic!("expected Backend, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert!(err.source().is_some());
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("s3cret"), "no password in errors: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_failing_midway_drops_the_new_database_and_keeps_the_original() {
    let fx = fixture().await;
    let manifest = fx.backup().await;
    let before = fx.fingerprint("shop");
    let databases = fx.databases();
    // Damage a part in the middle of the dump: pg_restore gets half an archive.
    let parts = manifest.artifact("dump").unwrap().parts.len();
    assert!(parts >= 3, "several parts");
    fx.damage_dump_part(&manifest, parts / 2).await;
    let err = PostgresTarget::new(fx.conn("shop"))
        .restore(
            &fx.repo.reader(manifest),
            &RestoreOptions::default().with_swap(true),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CorruptPart { .. }), "{err}");
    assert_eq!(fx.databases(), databases, "half-restored database dropped");
    assert_eq!(fx.fingerprint("shop"), before, "original untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_restore_is_one_transaction() {
    let fx = fixture().await;
    let manifest = fx.backup().await;
    let before = fx.fingerprint("shop");
    fx.server.psql(
        "shop",
        "DELETE FROM order_items WHERE qty = 2; CREATE TABLE scratch_notes (t text)",
    );
    let changed = fx.fingerprint("shop");
    assert_ne!(changed, before);

    // A damaged part is found by the check of the whole backup before the first write.
    let last = manifest.artifact("dump").unwrap().parts.len() - 1;
    let (key, original) = fx.damage_dump_part(&manifest, last).await;
    let target = PostgresTarget::new(fx.conn("shop")).with_in_place(true);
    let err = target
        .restore(
            &fx.repo.reader(manifest.clone()),
            &RestoreOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ChecksFailed { .. }), "{err}");
    assert!(err.to_string().contains(key.as_ref()), "{err}");
    assert_eq!(
        fx.fingerprint("shop"),
        changed,
        "rolled back: the database is as it was"
    );

    fx.store
        .put(&key, PutPayload::from(original))
        .await
        .unwrap();
    let report = target
        .restore(&fx.repo.reader(manifest), &RestoreOptions::default())
        .await
        .unwrap();
    assert!(report.target.ends_with("/shop"), "{}", report.target);
    assert_eq!(fx.fingerprint("shop"), before, "restored in place");
}
