//! Retention: the seeds' policy over two simulated years, irregular schedules, and the
//! invariants of DESIGN.md checked with proptest.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use dr_core::retention::{Plan, RetentionItem, RetentionPolicy, plan};
use proptest::prelude::*;

fn item(source: &str, time: DateTime<Utc>, n: usize) -> RetentionItem {
    RetentionItem {
        // Names deliberately sort *against* time: ordering must come from `time`.
        id: format!("{:06}", 999_999 - n),
        source: source.into(),
        time,
        depends_on: vec![],
        labels: vec![],
    }
}

fn daily_at_two(from: DateTime<Utc>, days: i64) -> Vec<RetentionItem> {
    (0..days)
        .map(|d| {
            item(
                "db",
                from + TimeDelta::days(d) + TimeDelta::hours(2),
                d as usize,
            )
        })
        .collect()
}

fn kept_times(p: &Plan) -> BTreeSet<DateTime<Utc>> {
    p.kept().map(|d| d.time).collect()
}

/// Independent oracle for one bucket rule: group by period, take the newest of each of the
/// `n` newest periods.
fn newest_per_period(items: &[RetentionItem], n: usize, fmt: &str) -> BTreeSet<DateTime<Utc>> {
    let mut groups: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for it in items {
        let key = it.time.format(fmt).to_string();
        let slot = groups.entry(key).or_insert(it.time);
        *slot = (*slot).max(it.time);
    }
    let mut newest: Vec<DateTime<Utc>> = groups.into_values().collect();
    newest.sort_by(|a, b| b.cmp(a));
    newest.into_iter().take(n).collect()
}

fn seed_oracle(items: &[RetentionItem]) -> BTreeSet<DateTime<Utc>> {
    let mut keep = newest_per_period(items, 30, "%Y-%m-%d");
    keep.extend(newest_per_period(items, 12, "%G-W%V"));
    keep.extend(newest_per_period(items, 12, "%Y-%m"));
    keep
}

#[test]
fn seed_policy_over_two_years_of_daily_backups() {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 3, 0, 0).unwrap();
    let items = daily_at_two(Utc.with_ymd_and_hms(2024, 11, 24, 0, 0, 0).unwrap(), 730);
    let result = plan(&items, &RetentionPolicy::seed_default(), now);
    // 30 days (Oct 25 - Nov 23), 6 more Sundays (Sep 13 - Oct 18), 10 more month ends
    // (Dec 2025 - Sep 2026); 2026-11-23 is a Monday.
    assert_eq!(result.kept().count(), 46);
    assert_eq!(kept_times(&result), seed_oracle(&items));
    let newest = result.decisions.first().unwrap();
    assert_eq!(
        newest.time,
        Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap()
    );
    assert_eq!(
        newest.reasons,
        ["newest", "daily 1/30", "weekly 1/12", "monthly 1/12"]
    );
    let sep_30 = result
        .decisions
        .iter()
        .find(|d| d.time == Utc.with_ymd_and_hms(2026, 9, 30, 2, 0, 0).unwrap())
        .unwrap();
    assert_eq!(sep_30.reasons, ["monthly 3/12"]);
    assert!(result.forgotten().all(|d| d.reasons.is_empty()));
}

#[test]
fn irregular_schedules_match_the_oracle() {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 3, 0, 0).unwrap();
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let mut items = Vec::new();
    let mut rng_state = 12345u64;
    let mut next = || {
        rng_state = rng_state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng_state >> 33
    };
    for day in 0..690 {
        // Missed days (about one in five) and up to three backups on other days.
        let count = [0, 1, 1, 2, 3][(next() % 5) as usize];
        for k in 0..count {
            let at = start + TimeDelta::days(day) + TimeDelta::minutes((next() % 1440) as i64);
            items.push(item("db", at, items.len() + k));
        }
    }
    // Clock going backwards in input order: shuffle by reversing chunks.
    items.reverse();
    items[..100].reverse();
    let result = plan(&items, &RetentionPolicy::seed_default(), now);
    assert_eq!(kept_times(&result), seed_oracle(&items));
}

#[test]
fn keep_last_within_labels_and_recovery_window() {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
    let mut items = daily_at_two(Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap(), 50);
    items[3].labels.push("pre-migration".into());
    let policy = RetentionPolicy {
        keep_last: 2,
        keep_within: Some(Duration::from_secs(3 * 86400)),
        keep_labels: vec!["pre-migration".into()],
        recovery_window: Some(Duration::from_secs(7 * 86400)),
        ..RetentionPolicy::default()
    };
    let result = plan(&items, &policy, now);
    let reasons: BTreeMap<String, Vec<String>> = result
        .kept()
        .map(|d| (d.time.format("%m-%d").to_string(), d.reasons.clone()))
        .collect();
    assert_eq!(
        reasons["11-19"],
        [
            "newest",
            "last 1/2",
            "within 3days",
            "recovery window 7days"
        ]
    );
    assert_eq!(reasons["10-04"], ["label pre-migration"]);
    // The window starts 11-16 12:00: every backup after it, plus the one before it.
    assert_eq!(
        reasons["11-16"],
        ["within 3days", "base of recovery window 7days"]
    );
    assert_eq!(result.kept().count(), 5);
}

#[test]
fn dependencies_of_kept_backups_are_kept() {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
    let mut items = daily_at_two(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(), 10);
    let base = items[0].id.clone();
    let middle = items[5].id.clone();
    items[5].depends_on.push(base.clone());
    items[9].depends_on.push(middle.clone());
    let policy = RetentionPolicy {
        keep_last: 1,
        ..RetentionPolicy::default()
    };
    let result = plan(&items, &policy, now);
    let kept: Vec<&str> = result.kept().map(|d| d.id.as_str()).collect();
    assert_eq!(kept.len(), 3);
    assert!(kept.contains(&base.as_str()) && kept.contains(&middle.as_str()));
    let base_decision = result.decisions.iter().find(|d| d.id == base).unwrap();
    assert_eq!(
        base_decision.reasons,
        [format!("base of kept backup {middle}")]
    );
}

#[test]
fn empty_policy_keeps_everything_and_sources_are_separate() {
    let now = Utc::now();
    let mut items = daily_at_two(now - TimeDelta::days(10), 5);
    items.push(item("cache", now - TimeDelta::days(30), 77));
    let result = plan(&items, &RetentionPolicy::default(), now);
    assert_eq!(result.kept().count(), 6);
    let cache = result
        .decisions
        .iter()
        .find(|d| d.source == "cache")
        .unwrap();
    assert_eq!(cache.reasons, ["newest"]);
}

fn arb_items() -> impl Strategy<Value = Vec<RetentionItem>> {
    prop::collection::vec((0i64..3 * 365 * 24, 0usize..4, prop::bool::ANY), 1..80).prop_map(|raw| {
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let mut items: Vec<RetentionItem> = raw
            .iter()
            .enumerate()
            .map(|(n, (hours, _, _))| {
                item(
                    if n % 5 == 0 { "b" } else { "a" },
                    start + TimeDelta::hours(*hours),
                    n,
                )
            })
            .collect();
        for (n, (_, back, depends)) in raw.iter().enumerate() {
            if *depends && n > *back {
                let dep = items[n - back - 1].clone();
                if dep.source == items[n].source && dep.time < items[n].time {
                    items[n].depends_on.push(dep.id);
                }
            }
        }
        items
    })
}

fn arb_policy() -> impl Strategy<Value = RetentionPolicy> {
    (
        0u32..4,
        0u32..4,
        0u32..8,
        0u32..5,
        0u32..5,
        0u32..3,
        prop::option::of(1u64..2000),
    )
        .prop_map(
            |(last, hourly, daily, weekly, monthly, yearly, within_hours)| RetentionPolicy {
                keep_last: last,
                keep_hourly: hourly,
                keep_daily: daily,
                keep_weekly: weekly,
                keep_monthly: monthly,
                keep_yearly: yearly,
                keep_within: within_hours.map(|h| Duration::from_secs(h * 3600)),
                ..RetentionPolicy::default()
            },
        )
}

fn kept_ids(p: &Plan) -> BTreeSet<String> {
    p.kept().map(|d| d.id.clone()).collect()
}

proptest! {
    #[test]
    fn invariants(items in arb_items(), policy in arb_policy(), extra in 1u32..5) {
        let now = Utc.with_ymd_and_hms(2027, 6, 1, 0, 0, 0).unwrap();
        let result = plan(&items, &policy, now);
        prop_assert_eq!(result.decisions.len(), items.len());
        // The newest backup of each source is kept.
        for source in ["a", "b"] {
            if let Some(newest) = items.iter().filter(|i| i.source == source).max_by(|x, y| x.time.cmp(&y.time).then(x.id.cmp(&y.id))) {
                prop_assert!(kept_ids(&result).contains(&newest.id));
            }
        }
        // Whatever a kept backup depends on is kept.
        let kept = kept_ids(&result);
        for it in items.iter().filter(|i| kept.contains(&i.id)) {
            for dep in &it.depends_on {
                prop_assert!(kept.contains(dep), "dependency {} of {} forgotten", dep, it.id);
            }
        }
        // Deterministic and independent of input order.
        let mut reversed = items.clone();
        reversed.reverse();
        prop_assert_eq!(&plan(&reversed, &policy, now), &result);
        // Stable: planning again over what was kept keeps all of it.
        let survivors: Vec<RetentionItem> = items.iter().filter(|i| kept.contains(&i.id)).cloned().collect();
        prop_assert_eq!(plan(&survivors, &policy, now).kept().count(), survivors.len());
        // A more generous policy never forgets more.
        let generous = RetentionPolicy {
            keep_last: policy.keep_last + extra,
            keep_daily: policy.keep_daily + extra,
            keep_monthly: policy.keep_monthly + extra,
            ..policy.clone()
        };
        prop_assert!(kept.is_subset(&kept_ids(&plan(&items, &generous, now))));
    }
}

#[test]
fn a_safety_backup_takes_no_slot_from_the_backup_it_was_taken_before() {
    let day = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut items = daily_at_two(day, 10);
    // A restore on the last day, at 03:00: its safety backup is the newest of that day.
    let mut safety = item("db", day + TimeDelta::days(9) + TimeDelta::hours(3), 100);
    safety.labels = vec![dr_core::SAFETY_LABEL.into()];
    // An old safety backup, older than anything the policy keeps: it ages out.
    let mut old_safety = item("db", day - TimeDelta::days(30), 101);
    old_safety.labels = vec![dr_core::SAFETY_LABEL.into()];
    items.push(safety.clone());
    items.push(old_safety.clone());
    let policy = RetentionPolicy {
        keep_daily: 3,
        ..RetentionPolicy::default()
    };
    let p = plan(&items, &policy, day + TimeDelta::days(10));
    let decision = |id: &str| p.decisions.iter().find(|d| d.id == id).unwrap().clone();
    let restored_from = decision(&items[9].id);
    assert!(restored_from.keep, "{restored_from:?}");
    assert!(
        restored_from.reasons.contains(&"newest".to_owned()),
        "{restored_from:?}"
    );
    assert!(
        restored_from
            .reasons
            .iter()
            .any(|r| r.starts_with("daily 1/"))
    );
    let kept_safety = decision(&safety.id);
    assert!(kept_safety.keep, "{kept_safety:?}");
    assert!(
        kept_safety.reasons[0].starts_with("safety backup"),
        "{kept_safety:?}"
    );
    assert!(!decision(&old_safety.id).keep);
    assert_eq!(
        p.kept().count(),
        4,
        "3 daily + the recent safety backup: {p:?}"
    );
}

#[test]
fn without_a_policy_safety_backups_are_kept_like_everything() {
    let day = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut items = daily_at_two(day, 3);
    let mut old_safety = item("db", day - TimeDelta::days(30), 100);
    old_safety.labels = vec![dr_core::SAFETY_LABEL.into()];
    items.push(old_safety);
    let p = plan(
        &items,
        &RetentionPolicy::default(),
        day + TimeDelta::days(3),
    );
    assert_eq!(p.kept().count(), 4, "{p:?}");
}
