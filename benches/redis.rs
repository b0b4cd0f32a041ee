//! Redis backups and restores, side by side in one run: `redis-cli --rdb` to a file (and
//! piped through `zstd | age`) against dr's RDB backup, and restores by file placement plus
//! a server start against RESTORE replay, on `--keys` random values of `--value-bytes`.
//!
//! `cargo bench --bench redis -- [--keys 5000000] [--value-bytes 200]`
//!
//! Starts its own redis-server on 127.0.0.1 (`repl-diskless-sync-delay 0`, like the tests;
//! production servers wait 5 s by default before a diskless transfer). Needs the Debian
//! packages `redis-server`, `zstd` and `age`.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench binary: failing loudly is right

mod common;

use std::path::{Path, PathBuf};

use common::{arg, measure, path};
use dr::redis::{RedisConnection, RedisFileTarget, RedisReplayTarget, RedisSource};
use dr::{BackupOptions, BackupSelector, Identities, Restore, RestoreOptions};
use dr_testing::RedisServer;
use rand::RngCore;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        common::child(&args[1..], prepare, work);
        return;
    }
    let keys: u64 = arg(&args, "--keys").map_or(5_000_000, |v| v.parse().expect("--keys"));
    let value_bytes: usize =
        arg(&args, "--value-bytes").map_or(200, |v| v.parse().expect("--value-bytes"));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-redis");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let key = dir.join("key.txt");
    let recipient = dr::generate_identity_file(&key, None).expect("keygen");
    let server = RedisServer::start();
    common::runtime(2).block_on(fill(&server, keys, value_bytes));
    server.cli(&["SAVE"]);
    let rdb_size = std::fs::metadata(server.dir().join("dump.rdb"))
        .unwrap()
        .len();
    println!(
        "\n{keys} keys of {value_bytes} random bytes: RDB {:.0} MB",
        rdb_size as f64 / 1e6
    );
    println!("| operation | MB/s (RDB size) | keys/s | seconds | peak RSS MiB |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, (secs, rss): (f64, u64)| {
        println!(
            "| {name} | {:.0} | {:.0} | {secs:.2} | {:.0} |",
            rdb_size as f64 / secs / 1e6,
            keys as f64 / secs,
            rss as f64 / 1024.0
        );
    };
    let port = server.port().to_string();
    let out = dir.join("redis-cli.rdb");
    row(
        "`redis-cli --rdb` to a file",
        measure(&[
            "shell",
            &format!(
                "redis-cli -h 127.0.0.1 -p {port} --rdb {} > /dev/null",
                path(&out)
            ),
        ]),
    );
    row(
        "`redis-cli --rdb - \\| zstd -3 -T2 \\| age`",
        measure(&[
            "shell",
            &format!(
                "redis-cli -h 127.0.0.1 -p {port} --rdb - 2>/dev/null | zstd -3 -T2 -q | age -r {recipient} > {}",
                path(&dir.join("rdb.zst.age"))
            ),
        ]),
    );
    let repo = dir.join("repo");
    row(
        "dr backup (replication stream, checked, zstd, age, SHA-256)",
        measure(&["backup", &server.url(), path(&repo), path(&key)]),
    );
    drop(server);
    row(
        "restore: copy the RDB + redis-server loads it",
        measure(&["load", path(&out), path(&dir.join("load"))]),
    );
    row(
        "dr restore as dump.rdb (checked) + redis-server loads it",
        measure(&["file", path(&repo), path(&key), path(&dir.join("file"))]),
    );
    row(
        "dr restore by RESTORE replay into a running server",
        measure(&["replay", path(&repo), path(&key)]),
    );
}

/// Random values written with pipelined SETs.
async fn fill(server: &RedisServer, keys: u64, value_bytes: usize) {
    let mut client = RedisConnection::from_url(&server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut rng = rand::rng();
    let batch = 2000u64;
    let mut start = 0;
    while start < keys {
        let end = (start + batch).min(keys);
        let names: Vec<String> = (start..end).map(|i| format!("key:{i:010}")).collect();
        let values: Vec<Vec<u8>> = (start..end)
            .map(|_| {
                let mut v = vec![0u8; value_bytes];
                rng.fill_bytes(&mut v);
                v
            })
            .collect();
        let commands: Vec<Vec<&[u8]>> = names
            .iter()
            .zip(&values)
            .map(|(k, v)| vec![b"SET".as_slice(), k.as_bytes(), v])
            .collect();
        client.pipeline(&commands).await.unwrap();
        start = end;
    }
}

/// Before the clock: clean targets.
fn prepare(args: &[String]) {
    match args[0].as_str() {
        "backup" => {
            let _ = std::fs::remove_dir_all(&args[2]);
        }
        "load" | "file" => {
            let target = if args[0] == "load" {
                &args[2]
            } else {
                &args[3]
            };
            let _ = std::fs::remove_dir_all(target);
            std::fs::create_dir_all(target).unwrap();
        }
        _ => {}
    }
}

fn work(args: &[String]) {
    common::runtime(2).block_on(async {
        match args[0].as_str() {
            "backup" => {
                let ids = Identities::from_file(Path::new(&args[3])).unwrap();
                let repo = dr::storage::init_repository(&args[2], &[], &ids.to_recipients())
                    .await
                    .unwrap();
                let conn = RedisConnection::from_url(&args[1]).unwrap();
                repo.backup("cache", &RedisSource::new(conn), &BackupOptions::default())
                    .await
                    .unwrap();
            }
            "load" => {
                let dir = tempfile::Builder::new().tempdir_in(&args[2]).unwrap();
                std::fs::copy(&args[1], dir.path().join("dump.rdb")).unwrap();
                drop(RedisServer::start_on(dir, None));
            }
            "file" => {
                let dir = tempfile::Builder::new().tempdir_in(&args[3]).unwrap();
                let reader = open(&args[1], &args[2]).await;
                RedisFileTarget::new(dir.path().join("dump.rdb"))
                    .restore(&reader, &RestoreOptions::default())
                    .await
                    .unwrap();
                drop(RedisServer::start_on(dir, None));
            }
            _ => {
                let target = RedisServer::start();
                let reader = open(&args[1], &args[2]).await;
                RedisReplayTarget::new(RedisConnection::from_url(&target.url()).unwrap())
                    .restore(&reader, &RestoreOptions::default())
                    .await
                    .unwrap();
            }
        }
    });
}

async fn open(repo: &str, key: &str) -> dr::BackupReader {
    let ids = Identities::from_file(Path::new(key)).unwrap();
    let repo = dr::storage::open_repository(repo, &[])
        .await
        .unwrap()
        .with_identities(ids);
    repo.open_backup("cache", &BackupSelector::Latest)
        .await
        .unwrap()
}
