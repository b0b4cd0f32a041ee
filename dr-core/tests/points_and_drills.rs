//! Recovery points (recorded, found, kept whole by retention), drills (timed, recorded,
//! failed checks reported) and the recovery report built from their history.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use dr_core::drill::{DrillOptions, DrillRecord, Objectives, run_drill};
use dr_core::report::RecoveryReport;
use dr_core::retention::{RetentionItem, RetentionPolicy, keep_recovery_points, plan};
use dr_core::{
    Backup, BackupOptions, BackupReader, BackupWriter, FailedMember, Findings, Identities,
    KindVerifier, PointSelector, ProblemKind, Repository, Result, SourceInfo, Verify, VerifyLevel,
    VerifyProblem, VerifyReport, async_trait, verify_backup,
};

struct Bytes(&'static [u8]);

#[async_trait]
impl Backup for Bytes {
    fn kind(&self) -> &'static str {
        "test"
    }
    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        out.put_artifact("data", &mut &self.0[..]).await?;
        Ok(SourceInfo::new())
    }
}

struct Failing;

#[async_trait]
impl Backup for Failing {
    fn kind(&self) -> &'static str {
        "test"
    }
    async fn backup(&self, _: &mut BackupWriter) -> Result<SourceInfo> {
        Err(dr_core::Error::backend("source", "backup", "the server went away").retryable())
    }
}

/// A test restore that reads the artifact and checks it starts with `expected`.
struct StartsWith(&'static [u8]);

#[async_trait]
impl KindVerifier for StartsWith {
    fn can_test_restore(&self) -> bool {
        true
    }
    async fn test_restore(&self, backup: &BackupReader) -> Result<Findings> {
        let mut bytes = Vec::new();
        backup.copy_artifact("data", &mut bytes).await?;
        Ok(if bytes.starts_with(self.0) {
            Findings::passed(["content as expected".to_owned()])
        } else {
            Findings::default().with_problem(VerifyProblem::new(
                ProblemKind::FailedCheck,
                "content check failed",
            ))
        })
    }
}

#[async_trait]
impl Verify for StartsWith {
    async fn verify(&self, backup: &BackupReader, level: VerifyLevel) -> Result<VerifyReport> {
        verify_backup(backup, level, self).await
    }
}

async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

#[tokio::test]
async fn points_are_recorded_and_the_latest_complete_one_is_found() {
    let repo = repository().await;
    let opts = BackupOptions::default();
    let db = repo.backup("db", &Bytes(b"rows"), &opts).await.unwrap();
    let files = repo.backup("files", &Bytes(b"tree"), &opts).await.unwrap();
    let complete = repo
        .record_point("all", &[db.clone(), files.clone()], vec![], vec![])
        .await
        .unwrap();
    let failed = vec![FailedMember {
        source: "cache".into(),
        error: "connection refused".into(),
    }];
    let partial = repo
        .record_point("all", std::slice::from_ref(&db), failed, vec![])
        .await
        .unwrap();
    assert!(complete.is_complete() && !partial.is_complete());
    assert_eq!(repo.points().await.unwrap().points.len(), 2);
    let latest = repo.find_point(&PointSelector::Latest).await.unwrap();
    assert_eq!(
        latest.id, complete.id,
        "an incomplete point is never `latest`"
    );
    assert_eq!(latest.member("files").unwrap().backup_id, files.id);
    let by_id = repo
        .find_point(&PointSelector::Id(partial.id.clone()))
        .await
        .unwrap();
    assert_eq!(by_id.failed[0].source, "cache");
    repo.delete_point(&partial.id).await.unwrap();
    let err = repo
        .find_point(&PointSelector::Id(partial.id))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("recovery point"), "{err}");
}

#[test]
fn retention_keeps_a_point_whole_and_what_its_members_depend_on() {
    let day = |d: i64| Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap() + TimeDelta::days(d);
    let item = |id: &str, source: &str, d: i64, deps: &[&str]| RetentionItem {
        id: id.into(),
        source: source.into(),
        time: day(d),
        depends_on: deps.iter().map(|s| s.to_string()).collect(),
        labels: vec![],
    };
    // Files are incremental: f2 depends on f1.
    let items = vec![
        item("db1", "db", 0, &[]),
        item("db2", "db", 1, &[]),
        item("db3", "db", 2, &[]),
        item("f1", "files", 0, &[]),
        item("f2", "files", 1, &["f1"]),
        item("f3", "files", 2, &[]),
    ];
    let keep_last_one = RetentionPolicy {
        keep_last: 1,
        ..RetentionPolicy::default()
    };
    let keep_last_two = RetentionPolicy {
        keep_last: 2,
        ..RetentionPolicy::default()
    };
    let now = day(3);
    let mut decisions = plan(&items[..3], &keep_last_two, now).decisions;
    decisions.extend(plan(&items[3..], &keep_last_one, now).decisions);
    let mut plan = dr_core::Plan { decisions };
    let kept = |plan: &dr_core::Plan, id: &str| plan.kept().any(|d| d.id == id);
    assert!(kept(&plan, "db2") && !kept(&plan, "f2") && !kept(&plan, "f1"));

    // db2 (kept) and f2 were taken together: f2 stays, and so does f1 beneath it.
    let points = vec![("P2".to_string(), vec!["db2".to_string(), "f2".to_string()])];
    keep_recovery_points(&mut plan, &items, &points);
    assert!(kept(&plan, "f2") && kept(&plan, "f1"));
    let f1 = plan.decisions.iter().find(|d| d.id == "f1").unwrap();
    assert_eq!(f1.reasons, ["base of kept backup f2"]);
    let f2 = plan.decisions.iter().find(|d| d.id == "f2").unwrap();
    assert_eq!(f2.reasons, ["member of kept recovery point P2"]);
    // A point none of whose backups is kept keeps nothing.
    assert!(!kept(&plan, "db1"));
    let again = plan.clone();
    keep_recovery_points(&mut plan, &items, &points);
    assert_eq!(plan, again, "applying the points twice changes nothing");
}

#[test]
fn an_incremental_chain_does_not_keep_every_point_of_it() {
    let day = |d: i64| Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap() + TimeDelta::days(d);
    // Nightly points of a database and an incremental tree: tree n depends on tree 0.
    let mut items = Vec::new();
    let mut points = Vec::new();
    for n in 0..5 {
        let deps = if n == 0 {
            vec![]
        } else {
            vec!["t0".to_string()]
        };
        items.push(RetentionItem {
            id: format!("d{n}"),
            source: "db".into(),
            time: day(n),
            depends_on: vec![],
            labels: vec![],
        });
        items.push(RetentionItem {
            id: format!("t{n}"),
            source: "tree".into(),
            time: day(n),
            depends_on: deps,
            labels: vec![],
        });
        points.push((format!("P{n}"), vec![format!("d{n}"), format!("t{n}")]));
    }
    let policy = RetentionPolicy {
        keep_last: 2,
        ..RetentionPolicy::default()
    };
    let db: Vec<RetentionItem> = items.iter().filter(|i| i.source == "db").cloned().collect();
    let tree: Vec<RetentionItem> = items
        .iter()
        .filter(|i| i.source == "tree")
        .cloned()
        .collect();
    let mut decisions = plan(&db, &policy, day(6)).decisions;
    decisions.extend(plan(&tree, &policy, day(6)).decisions);
    let mut plan = dr_core::Plan { decisions };
    keep_recovery_points(&mut plan, &items, &points);
    let kept: Vec<&str> = plan.kept().map(|d| d.id.as_str()).collect();
    // t0 is kept as the base of t3 and t4, but that does not keep d0 (nor points 0-2).
    assert_eq!(kept.len(), 5, "{kept:?}");
    for id in ["d3", "d4", "t0", "t3", "t4"] {
        assert!(kept.contains(&id), "{id}: {kept:?}");
    }
}

#[tokio::test]
async fn drills_are_timed_recorded_and_reported() {
    let repo = repository().await;
    let opts = BackupOptions::default();
    let db = repo.backup("db", &Bytes(b"rows"), &opts).await.unwrap();
    assert!(repo.backup("db", &Failing, &opts).await.is_err());
    let objectives = Objectives {
        rto: Some(Duration::from_secs(3600)),
        rpo: Some(Duration::from_secs(86400)),
        drill_every: None,
    };
    let options = DrillOptions::new(objectives);
    let reader = repo.reader(db.clone());
    let good = run_drill(&repo, &reader, &StartsWith(b"ro"), &options)
        .await
        .unwrap();
    assert!(good.ok && good.passed(), "{good:?}");
    assert_eq!(good.recoverable_until, db.finished_at);
    assert!(good.rpo_s >= 0.0 && good.rpo_s < 60.0, "{}", good.rpo_s);
    let bad = run_drill(&repo, &reader, &StartsWith(b"xx"), &options)
        .await
        .unwrap();
    assert!(!bad.ok);
    assert_eq!(bad.problems, ["content check failed"]);

    let drills = repo.drills(Some("db")).await.unwrap();
    assert_eq!(drills.len(), 2);
    assert_eq!(drills[0], good, "recorded as returned, oldest first");
    let failures = repo.backup_failures(None).await.unwrap();
    assert_eq!(failures.len(), 1);
    assert!(failures[0].error.contains("the server went away"));

    let backups = repo.list(None).await.unwrap().backups;
    let since = Utc::now() - TimeDelta::days(30);
    let report = RecoveryReport::build(&drills, &backups, &failures, since, Utc::now());
    let db_report = &report.sources[0];
    assert_eq!(db_report.drills, 2);
    assert_eq!(db_report.drill_success_rate_pct, Some(50.0));
    assert_eq!(db_report.backup_success_rate_pct, Some(50.0));
    assert_eq!(db_report.last_drill_passed, Some(false));
    assert_eq!(db_report.drills_per_month.values().sum::<usize>(), 2);
    let md = report.to_markdown();
    assert!(
        md.contains("| db |") && md.contains("FAILED: content check failed"),
        "{md}"
    );
    assert!(md.contains("1h"), "the objective is shown: {md}");
}

#[test]
fn a_missed_objective_fails_the_drill_and_the_trend_follows_the_rto() {
    let at = |m: i64| Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap() + TimeDelta::days(m * 31);
    let drill = |m: i64, rto_ms: u64| DrillRecord {
        source: "db".into(),
        kind: "test".into(),
        backup_id: format!("b{m}"),
        point_id: None,
        started_at: at(m),
        ok: true,
        rto_ms,
        recoverable_until: at(m) - TimeDelta::hours(2),
        rpo_s: 7200.0,
        objectives: Objectives {
            rto: Some(Duration::from_secs(60)),
            rpo: Some(Duration::from_secs(3600)),
            drill_every: None,
        },
        passed: vec![],
        problems: vec![],
    };
    let history = [drill(0, 10_000), drill(1, 11_000), drill(2, 30_000)];
    assert_eq!(history[0].rto_met(), Some(true));
    assert_eq!(history[0].rpo_met(), Some(false));
    assert!(
        !history[0].passed(),
        "2 h of data lost against a 1 h objective"
    );
    let report = RecoveryReport::build(&history, &[], &[], at(-1), at(3));
    assert_eq!(report.sources[0].rto_trend, "rising");
    assert_eq!(report.sources[0].drills_per_month.len(), 3);
    assert_eq!(report.drill_success_rate_pct, Some(0.0));
    assert!(report.to_markdown().contains("objective missed"));
}
