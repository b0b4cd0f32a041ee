//! `ops::verify` with test kinds: typed problems, the level performed, user checks told from
//! damage, archives checked through the registry, headless backups, foreign identities.

mod common;

use dr_core::object_store::{ObjectStoreExt, PutPayload, path::Path};
use dr_core::ops::verify::{Subject, VerifyOptions, verify};
use dr_core::ops::{ConfiguredSource, System};
use dr_core::{Identities, NoProgress, ProblemKind, ProgressHandle, VerifyLevel};
use std::sync::Arc;

fn progress() -> ProgressHandle {
    ProgressHandle::new(Arc::new(NoProgress))
}

fn system(prefix: &[u8]) -> System {
    let (registry, _) = common::registry();
    System::new(registry).with_source(ConfiguredSource::new(
        "app",
        Arc::new(common::BlobSource {
            data: Vec::new(),
            prefix: prefix.to_vec(),
        }),
    ))
}

fn options(target: Option<&str>, level: VerifyLevel) -> VerifyOptions {
    VerifyOptions::default()
        .with_target(target.map(str::to_owned))
        .with_level(level)
}

#[tokio::test]
async fn restore_level_runs_the_test_restore_and_says_so_when_a_kind_has_none() {
    let repo = common::repository().await;
    common::backup(&repo, "app", "test.blob", b"hello world").await;
    common::backup(&repo, "files", "test.plain", b"plain bytes").await;
    let run = verify(
        &repo,
        &system(b"hello"),
        &options(None, VerifyLevel::Restore),
        &progress(),
    )
    .await
    .unwrap();
    assert!(run.is_ok(), "{run:?}");
    let app = &run
        .entries
        .iter()
        .find(|e| e.source.as_deref() == Some("app"))
        .unwrap()
        .report;
    assert_eq!(app.level_performed, VerifyLevel::Restore);
    assert!(app.test_restore_ms.is_some());
    assert!(
        app.passed.iter().any(|p| p == "read 11 bytes back"),
        "{app:?}"
    );
    let plain = &run
        .entries
        .iter()
        .find(|e| e.source.as_deref() == Some("files"))
        .unwrap()
        .report;
    assert_eq!(plain.level_requested, VerifyLevel::Restore);
    assert_eq!(plain.level_performed, VerifyLevel::Checksums);
    assert_eq!(
        plain.notes,
        ["no test restore for kind test.plain: verified at checksums level"]
    );
}

#[tokio::test]
async fn a_failed_user_check_is_told_from_damage() {
    let repo = common::repository().await;
    let m = common::backup(&repo, "app", "test.blob", b"goodbye").await;
    let run = verify(
        &repo,
        &system(b"hello"),
        &options(Some("app"), VerifyLevel::Restore),
        &progress(),
    )
    .await
    .unwrap();
    assert!(!run.is_ok());
    assert!(run.only_user_checks_failed(), "{run:?}");
    let problem = &run.entries[0].report.problems[0];
    assert_eq!(
        (problem.kind, problem.object.as_deref()),
        (ProblemKind::FailedCheck, Some("starts"))
    );

    // Now damage the one part: a stored-hash problem naming the object, not a user check.
    let part = m.parts().next().unwrap().object.clone();
    let key = Path::from(format!("backups/app/{}/{part}", m.id));
    let mut bytes = repo
        .store()
        .get(&key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    bytes[40] ^= 1;
    repo.store()
        .put(&key, PutPayload::from(bytes))
        .await
        .unwrap();
    let run = verify(
        &repo,
        &system(b"hello"),
        &options(Some(&m.id), VerifyLevel::Restore),
        &progress(),
    )
    .await
    .unwrap();
    assert!(!run.only_user_checks_failed());
    let report = &run.entries[0].report;
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.problems[0].kind, ProblemKind::StoredHash);
    assert_eq!(report.problems[0].object.as_deref(), Some(key.as_ref()));
    assert_eq!(
        report.level_performed,
        VerifyLevel::Checksums,
        "no test restore of damage"
    );
}

#[tokio::test]
async fn the_archive_is_checked_through_the_registry() {
    let repo = common::repository().await;
    let (registry, archive) = common::registry();
    let old = common::backup(&repo, "db", "test.wal", b"base one").await;
    let new = common::backup(&repo, "db", "test.wal", b"base two").await;
    archive.gap_for.lock().unwrap().push(new.id.clone());
    let system = System::new(registry);
    let run = verify(
        &repo,
        &system,
        &options(None, VerifyLevel::Checksums),
        &progress(),
    )
    .await
    .unwrap();
    assert_eq!(run.entries.len(), 1, "the latest only");
    let report = &run.entries[0].report;
    assert_eq!(report.backup_id, new.id);
    assert_ne!(report.backup_id, old.id);
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind, ProblemKind::Archive);
    assert!(report.problems[0].message.contains("gap after"));
}

#[tokio::test]
async fn headless_backups_and_unknown_targets() {
    let repo = common::repository().await;
    let m = common::backup(&repo, "app", "test.blob", b"hello").await;
    let key = Path::from(format!("backups/app/{}/manifest.json", m.id));
    repo.store().delete(&key).await.unwrap();
    let run = verify(
        &repo,
        &system(b""),
        &options(None, VerifyLevel::Quick),
        &progress(),
    )
    .await
    .unwrap();
    assert_eq!(run.entries.len(), 1, "{run:?}");
    assert_eq!(run.entries[0].subject, Subject::Headless);
    assert_eq!(
        run.entries[0].report.problems[0].kind,
        ProblemKind::Unreadable
    );
    let err = verify(
        &repo,
        &system(b""),
        &options(Some("nothing"), VerifyLevel::Quick),
        &progress(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, dr_core::Error::BackupNotFound { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_foreign_identity_fails_fast() {
    let repo = common::repository().await;
    common::backup(&repo, "app", "test.blob", b"hello").await;
    let repo = repo.with_identities(Identities::generate());
    let err = verify(
        &repo,
        &system(b""),
        &options(None, VerifyLevel::Checksums),
        &progress(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, dr_core::Error::NoMatchingIdentity { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_restore_level_verify_without_identity_is_a_problem() {
    let repo = common::repository().await;
    common::backup(&repo, "app", "test.blob", b"hello").await;
    let repo = repo.with_identities(Identities::default());
    let run = verify(
        &repo,
        &system(b""),
        &options(None, VerifyLevel::Restore),
        &progress(),
    )
    .await
    .unwrap();
    let report = &run.entries[0].report;
    assert!(!report.decoded);
    assert_eq!(report.problems[0].kind, ProblemKind::NoMatchingIdentity);
}
