//! PostgreSQL logical backup and restore, side by side with `pg_dump -Fc` and `pg_restore`
//! (1 job and -j2), on two databases in one run: `pgbench -i -s 50` (its padding compresses
//! about 40x and flatters every dump) and a realistic one, 2M rows of varied jsonb documents.
//!
//! `cargo bench --bench postgres -- [--scale 50] [--rows 2000000] [--only jsonb|pgbench]`
//!
//! Starts its own PostgreSQL 15 on 127.0.0.1 (as dr's tests do). Needs `postgresql` and
//! `zstd` (Debian packages).
#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench binary: failing loudly is right

mod common;

use std::path::{Path, PathBuf};

use common::{arg, dir_size, measure, path, row};
use dr::postgres::{PgConnection, PostgresSource, PostgresTarget};
use dr::{BackupOptions, BackupSelector, Identities, Restore, RestoreOptions};
use dr_testing::PgServer;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        common::child(&args[1..], prepare, work);
        return;
    }
    let scale = arg(&args, "--scale").unwrap_or("50").to_owned();
    let rows: u64 = arg(&args, "--rows").map_or(2_000_000, |v| v.parse().expect("--rows"));
    let only = arg(&args, "--only");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-postgres");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let key = dir.join("key.txt");
    dr::generate_identity_file(&key, None).expect("keygen");
    let server = PgServer::start();
    if only != Some("jsonb") {
        server.psql("postgres", "CREATE DATABASE bench_pgbench");
        let pgbench = dr_testing::postgres::bin_dir().join("pgbench");
        let status = std::process::Command::new(pgbench)
            .args([
                "-i",
                "-q",
                "-s",
                &scale,
                "-h",
                "127.0.0.1",
                "-p",
                &server.port().to_string(),
                "-U",
                "postgres",
                "bench_pgbench",
            ])
            .env("PGPASSWORD", dr_testing::postgres::PASSWORD)
            .status()
            .expect("pgbench");
        assert!(status.success(), "pgbench -i failed");
        compare(&server, "bench_pgbench", &dir, &key);
    }
    if only != Some("pgbench") {
        server.psql("postgres", "CREATE DATABASE bench_jsonb");
        server.psql("bench_jsonb", &jsonb_schema(rows));
        compare(&server, "bench_jsonb", &dir, &key);
    }
}

fn compare(server: &PgServer, db: &str, dir: &Path, key: &Path) {
    server.psql(db, "VACUUM ANALYZE");
    let size: u64 = server
        .psql(db, "SELECT pg_database_size(current_database())")
        .parse()
        .expect("size");
    let url = server.url(db);
    let env = format!(
        "PGPASSWORD={} PGHOST=127.0.0.1 PGPORT={} PGUSER=postgres",
        dr_testing::postgres::PASSWORD,
        server.port()
    );
    let dump = dir.join(format!("{db}.dump"));
    let repo = dir.join(format!("repo-{db}"));
    println!("\n{db}: {:.0} MB on disk", size as f64 / 1e6);
    println!(
        "| operation | settings | MB/s (database size) | seconds | peak RSS MiB | output MB |"
    );
    println!("|---|---|---|---|---|---|");
    let m = measure(&[
        "shell",
        &format!("{env} pg_dump -Fc -f {} {db}", path(&dump)),
    ]);
    row(
        "`pg_dump -Fc` to a file",
        "zlib default",
        size,
        m,
        &mb(file_size(&dump)),
    );
    let zst = dir.join(format!("{db}.dump.zst"));
    let m = measure(&[
        "shell",
        &format!(
            "{env} pg_dump -Fc -Z0 {db} | zstd -3 -T2 -q > {}",
            path(&zst)
        ),
    ]);
    row(
        "`pg_dump -Fc -Z0 \\| zstd -3 -T2`",
        "-",
        size,
        m,
        &mb(file_size(&zst)),
    );
    let m = measure(&["backup", &url, path(&repo), path(key), "-"]);
    row(
        "dr backup (pg_dump -Z0, zstd, age, repository)",
        "level 3",
        size,
        m,
        &mb(dir_size(&repo)),
    );
    for jobs in ["1", "2"] {
        let target = format!("{db}_pgrestore");
        let m = measure(&[
            "shell",
            &format!(
                "{env} dropdb --if-exists {target} && {env} createdb {target} && {env} pg_restore -j {jobs} -d {target} {}",
                path(&dump)
            ),
        ]);
        row(
            "`pg_restore` from a local file (incl. createdb)",
            &format!("-j {jobs}"),
            size,
            m,
            "-",
        );
    }
    let m = measure(&["restore", &url, path(&repo), path(key), &format!("{db}_dr")]);
    row(
        "dr restore (new database, row counts, FK orphan checks)",
        "1 job",
        size,
        m,
        "-",
    );
}

/// Before the clock: drop a previous restore target.
fn prepare(args: &[String]) {
    if args[0] == "restore" {
        let conn = PgConnection::from_url(&args[1]).unwrap();
        common::runtime(1).block_on(async {
            let admin = conn.with_database("postgres").connect().await.unwrap();
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    dr::postgres::quote_ident(&args[4])
                ))
                .await
                .unwrap();
        });
    }
    if args[0] == "backup" {
        let _ = std::fs::remove_dir_all(&args[2]);
    }
}

fn work(args: &[String]) {
    let conn = PgConnection::from_url(&args[1]).unwrap();
    let (repo, key) = (args[2].clone(), PathBuf::from(&args[3]));
    common::runtime(2).block_on(async {
        let ids = Identities::from_file(&key).unwrap();
        if args[0] == "backup" {
            let repo = dr::storage::init_repository(&repo, &[], &ids.to_recipients())
                .await
                .unwrap();
            repo.backup("db", &PostgresSource::new(conn), &BackupOptions::default())
                .await
                .unwrap();
        } else {
            let repo = dr::storage::open_repository(&repo, &[])
                .await
                .unwrap()
                .with_identities(ids);
            let reader = repo
                .open_backup("db", &BackupSelector::Latest)
                .await
                .unwrap();
            let options = RestoreOptions::default().with_target(&args[4]);
            PostgresTarget::new(conn)
                .restore(&reader, &options)
                .await
                .unwrap();
        }
    });
}

/// 2M rows of varied jsonb: tokens, URLs, text; compresses about 2.5x.
fn jsonb_schema(rows: u64) -> String {
    format!(
        "CREATE TABLE documents (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, doc jsonb NOT NULL);
         INSERT INTO documents (created_at, doc)
         SELECT now() - (i || ' seconds')::interval,
                jsonb_build_object(
                  'token', md5(i::text || random()::text),
                  'session', encode(sha256((i * 7)::text::bytea), 'base64'),
                  'url', 'https://example.com/' || substr(md5(random()::text), 1, (4 + i % 20)) || '/item/' || (random() * 1e6)::int,
                  'user_agent', (ARRAY['Mozilla/5.0 (X11; Linux x86_64)', 'curl/8.5.0', 'Mozilla/5.0 (Macintosh)', 'okhttp/4.12'])[1 + i % 4],
                  'text', substr(repeat(md5(random()::text) || ' lorem ipsum dolor sit amet ', 1 + (i % 7)), 1, 40 + (i % 300)),
                  'score', random(), 'tags', jsonb_build_array('t' || (i % 97), 't' || (i % 13)))
         FROM generate_series(1, {rows}) i;"
    )
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn mb(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / 1e6)
}
