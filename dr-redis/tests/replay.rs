//! RESTORE replays into live Redis 7 servers: a damaged backup writes nothing (the target's
//! `DEBUG DIGEST` and DBSIZE unchanged), a replay the server stops part of the way reports
//! counts that match what the server holds, and `--force` over existing keys takes a safety
//! backup that brings the target back to its previous digest.

use std::sync::Arc;

use dr_core::object_store::{ObjectStoreExt, PutPayload, memory::InMemory, path::Path};
use dr_core::{
    BackupOptions, BackupSelector, Identities, Manifest, PipelineOptions, Repository, Restore,
    RestoreOptions,
};
use dr_redis::redis::from_redis_value;
use dr_redis::{RedisClient, RedisConnection, RedisMode, RedisReplayTarget, RedisSource};
use dr_testing::{Damage, RedisServer};

const KEYS: usize = 2000;

async fn repository() -> (Repository, Arc<InMemory>) {
    let identities = Identities::generate();
    let store = Arc::new(InMemory::new());
    let repo = Repository::init(store.clone(), "memory://test", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
        .with_pipeline(PipelineOptions::default().with_part_size(64 * 1024));
    (repo, store)
}

async fn client(url: &str) -> RedisClient {
    RedisConnection::from_url(url)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `count` keys `key:0000`... with 300 bytes of pseudo-random data each (no run the RDB's
/// LZF would shrink), so the backup spans several 64 KiB parts.
async fn fill(server: &RedisServer, count: usize, seed: u64) {
    let mut c = client(&server.url()).await;
    let mut state = seed | 1;
    let mut commands: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for i in 0..count {
        let value: Vec<u8> = (0..300)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        commands.push((format!("key:{i:04}").into_bytes(), value));
    }
    for chunk in commands.chunks(200) {
        let batch: Vec<Vec<&[u8]>> = chunk.iter().map(|(k, v)| vec![&b"SET"[..], k, v]).collect();
        for reply in c.pipeline(&batch).await.unwrap() {
            reply.unwrap();
        }
    }
}

async fn backup(repo: &Repository, server: &RedisServer, mode: RedisMode) -> Manifest {
    let conn = RedisConnection::from_url(&server.url()).unwrap();
    repo.backup(
        "cache",
        &RedisSource::new(conn).with_mode(mode),
        &BackupOptions::default(),
    )
    .await
    .unwrap()
}

/// `DEBUG DIGEST` and DBSIZE of every database.
async fn state(server: &RedisServer) -> (String, Vec<i64>) {
    let mut c = client(&server.url()).await;
    let digest = c.command(&[b"DEBUG", b"DIGEST"]).await.unwrap();
    let digest: String = from_redis_value(digest).unwrap();
    let mut sizes = Vec::new();
    for db in 0..16 {
        c.command(&[b"SELECT", db.to_string().as_bytes()])
            .await
            .unwrap();
        sizes.push(from_redis_value::<i64>(c.command(&[b"DBSIZE"]).await.unwrap()).unwrap());
    }
    (digest, sizes)
}

fn replay(url: &str) -> RedisReplayTarget {
    RedisReplayTarget::new(RedisConnection::from_url(url).unwrap())
}

fn forced() -> RestoreOptions {
    RestoreOptions::default().with_force(true)
}

/// Damages one stored part in the store; returns its object key and the original bytes.
async fn damage(
    store: &InMemory,
    manifest: &Manifest,
    part: usize,
    how: Damage,
) -> (Path, Vec<u8>) {
    let parts: Vec<_> = manifest.parts().collect();
    let object = &parts[part.min(parts.len() - 1)].object;
    let path = dr_testing::damage::backup_object(manifest, object);
    let original = dr_testing::damage::damage_object(store, &path, how).await;
    (path, original.to_vec())
}

#[tokio::test]
async fn a_damaged_part_writes_nothing_into_a_live_target() {
    let source = RedisServer::start();
    fill(&source, KEYS, 7).await;
    let (repo, store) = repository().await;
    let target = RedisServer::start();
    fill(&target, 50, 99).await;
    for mode in [RedisMode::Rdb, RedisMode::Logical] {
        let manifest = backup(&repo, &source, mode).await;
        let parts = manifest.parts().count();
        assert!(parts >= 5, "{parts} parts");
        for (part, how) in [
            (parts - 1, Damage::Flip),
            (parts - 1, Damage::Truncate),
            (1, Damage::Flip),
            (parts / 2, Damage::Truncate),
        ] {
            let before = state(&target).await;
            let (path, original) = damage(&store, &manifest, part, how).await;
            let err = replay(&target.url())
                .with_safety_backup(repo.clone(), "cache")
                .restore(&repo.reader(manifest.clone()), &forced())
                .await
                .unwrap_err();
            let case = format!("{mode:?} part {part} {how:?}");
            let message = err.to_string();
            assert!(
                matches!(err, dr_core::Error::ChecksFailed { .. }),
                "{case}: {message}"
            );
            assert!(message.contains(path.as_ref()), "{case}: {message}");
            assert!(message.contains("left as it was"), "{case}: {message}");
            assert_eq!(state(&target).await, before, "{case}: the target changed");
            store.put(&path, PutPayload::from(original)).await.unwrap();
        }
        // No safety backup was taken for the refused restores: the backup is the newest.
        let newest = repo.find("cache", &BackupSelector::Latest).await.unwrap();
        assert_eq!(newest.id, manifest.id);
        // And into an empty server: still nothing.
        let empty = RedisServer::start();
        let (path, _) = damage(&store, &manifest, parts - 1, Damage::Flip).await;
        let err = replay(&empty.url())
            .restore(&repo.reader(manifest.clone()), &RestoreOptions::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(path.as_ref()), "{err}");
        assert_eq!(state(&empty).await.1, vec![0; 16]);
    }
}

/// `W of the T keys ... were written`, `N were not` and the optional unknown count.
fn counts(message: &str) -> (u64, u64, u64, u64) {
    let number_before = |marker: &str| -> u64 {
        let at = message
            .find(marker)
            .unwrap_or_else(|| panic!("{marker}: {message}"));
        let head = message[..at].trim_end();
        let digits: String = head
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("{marker}: {message}"))
    };
    let unknown = if message.contains("may or may not") {
        number_before(" more were sent")
    } else {
        0
    };
    let head = message
        .split("stopped part of the way: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{message}"));
    let words: Vec<&str> = head.split_whitespace().collect();
    assert_eq!(words[1..3], ["of", "the"], "{message}");
    (
        words[0].parse().unwrap(),
        words[3].parse().unwrap(),
        number_before(" were not"),
        unknown,
    )
}

#[tokio::test]
async fn a_replay_refused_part_of_the_way_reports_what_the_server_holds() {
    let source = RedisServer::start();
    fill(&source, KEYS, 3).await;
    let (repo, _) = repository().await;
    let manifest = backup(&repo, &source, RedisMode::Rdb).await;
    // A user allowed to write only key:0*: half the keys, spread over every batch.
    let target = RedisServer::start();
    target.cli(&["ACL", "SETUSER", "half", "on", ">pw", "~key:0*", "+@all"]);
    let url = format!("redis://half:pw@127.0.0.1:{}", target.port());
    let err = replay(&url)
        .restore(&repo.reader(manifest), &RestoreOptions::default())
        .await
        .unwrap_err()
        .to_string();
    let (written, total, not_written, unknown) = counts(&err);
    let held = target.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap();
    assert_eq!(written, held, "{err}");
    assert!(written > 0 && written < 1000, "{err}");
    assert_eq!(
        (total, not_written, unknown),
        (2000, 2000 - held, 0),
        "{err}"
    );
    assert!(
        err.contains("NOPERM") && err.contains("RESTORE of key \"key:1"),
        "{err}"
    );
    assert!(err.contains("To undo, empty it (FLUSHALL"), "{err}");
    assert!(
        err.contains("run the same restore again with --force"),
        "{err}"
    );
    assert!(!err.contains("during backup"), "{err}");
}

#[tokio::test]
async fn a_connection_lost_part_of_the_way_says_which_keys_are_unknown() {
    let source = RedisServer::start();
    fill(&source, KEYS, 5).await;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..1_500_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect(); // incompressible: the DUMP payload stays over 1 MB
    let mut c = client(&source.url()).await;
    c.command(&[b"SET", b"key:big", &big]).await.unwrap();
    let (repo, _) = repository().await;
    let manifest = backup(&repo, &source, RedisMode::Logical).await;
    // The target closes the connection on the big key's RESTORE (its bulk length is over
    // the limit), after replying to the keys before it.
    let target = RedisServer::start_with(None, &[("proto-max-bulk-len", "1mb")]);
    let err = replay(&target.url())
        .restore(&repo.reader(manifest), &RestoreOptions::default())
        .await
        .unwrap_err()
        .to_string();
    let (written, total, not_written, unknown) = counts(&err);
    let held = target.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap();
    // Keys whose replies were lost may or may not be there; all the others are exact.
    assert!(
        written <= held && held <= written + unknown,
        "{held} held: {err}"
    );
    assert_eq!(total, 2001, "{err}");
    assert_eq!(written + not_written + unknown, total, "{err}");
    assert!(
        err.contains("ERR Protocol error") || err.contains("connection"),
        "{err}"
    );
}

#[tokio::test]
async fn force_over_existing_keys_takes_a_safety_backup_that_undoes_it() {
    let source = RedisServer::start();
    fill(&source, 300, 11).await;
    let (repo, _) = repository().await;
    let manifest = backup(&repo, &source, RedisMode::Rdb).await;
    let target = RedisServer::start();
    fill(&target, 500, 12).await; // key:0000..0499: 300 of them replaced by the restore
    target.cli(&["SET", "only-here", "x", "PX", "86400000"]);
    target.cli(&["-n", "3", "HSET", "h", "f", "v"]);
    let before = state(&target).await;

    let report = replay(&target.url())
        .with_safety_backup(repo.clone(), "cache")
        .restore(&repo.reader(manifest.clone()), &forced())
        .await
        .unwrap();
    assert_ne!(state(&target).await, before);
    let kept = report.previous_kept_at.unwrap();
    let id = kept
        .strip_prefix("safety backup ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{kept}"));
    assert!(
        kept.contains("label pre-restore") && kept.contains("FLUSHALL"),
        "{kept}"
    );
    let safety = repo
        .find("cache", &BackupSelector::Id(id.to_owned()))
        .await
        .unwrap();
    assert_eq!(safety.labels, vec!["pre-restore".to_owned()]);

    target.cli(&["FLUSHALL"]);
    replay(&target.url())
        .restore(&repo.reader(safety), &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(state(&target).await, before);
}
