//! Retention: which backups to keep, as a pure function of (backups, policy, now).
//!
//! Semantics follow restic's `forget`: each rule looks at a source's backups newest first,
//! by recorded start time (never by name), and keeps the newest backup of each of the last
//! `n` periods (hours, days, ISO weeks, months, years, in UTC) that have a backup. `within`
//! rules count back from the newest backup, so a stopped backup job never ages everything
//! out. On top of restic: a recovery window (Barman's: keep what is needed to restore to any
//! moment of the last N days, measured from `now`), and dependencies: a backup that a kept
//! backup depends on is always kept. Every kept backup carries its reasons.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;

/// How many backups to keep. The default keeps everything (no rule set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Keep the newest `n` backups.
    pub keep_last: u32,
    /// Keep the newest backup of each of the last `n` hours that have one.
    pub keep_hourly: u32,
    /// Same for days.
    pub keep_daily: u32,
    /// Same for ISO weeks.
    pub keep_weekly: u32,
    /// Same for months.
    pub keep_monthly: u32,
    /// Same for years.
    pub keep_yearly: u32,
    /// Keep every backup started within this span before the newest backup.
    #[serde(with = "span")]
    pub keep_within: Option<Duration>,
    /// Keep the newest backup of each hour within this span before the newest backup.
    #[serde(with = "span")]
    pub keep_within_hourly: Option<Duration>,
    /// Same for days.
    #[serde(with = "span")]
    pub keep_within_daily: Option<Duration>,
    /// Same for ISO weeks.
    #[serde(with = "span")]
    pub keep_within_weekly: Option<Duration>,
    /// Same for months.
    #[serde(with = "span")]
    pub keep_within_monthly: Option<Duration>,
    /// Same for years.
    #[serde(with = "span")]
    pub keep_within_yearly: Option<Duration>,
    /// Keep every backup carrying one of these labels.
    pub keep_labels: Vec<String>,
    /// Keep what is needed to restore to any moment of this span before `now`: every backup
    /// inside it and the newest one before it.
    #[serde(with = "span")]
    pub recovery_window: Option<Duration>,
}

impl RetentionPolicy {
    /// The seeds' policy: 30 daily, 12 weekly, 12 monthly.
    pub fn seed_default() -> Self {
        RetentionPolicy {
            keep_daily: 30,
            keep_weekly: 12,
            keep_monthly: 12,
            ..Self::default()
        }
    }

    /// Whether no rule is set (then everything is kept).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What retention needs to know about one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionItem {
    /// Backup id.
    pub id: String,
    /// Source name; each source is planned on its own.
    pub source: String,
    /// Recorded start time.
    pub time: DateTime<Utc>,
    /// Backups this one needs for a restore.
    pub depends_on: Vec<String>,
    /// Labels.
    pub labels: Vec<String>,
}

impl From<&Manifest> for RetentionItem {
    fn from(m: &Manifest) -> Self {
        RetentionItem {
            id: m.id.clone(),
            source: m.source.clone(),
            time: m.started_at,
            depends_on: m.depends_on.clone(),
            labels: m.labels.clone(),
        }
    }
}

/// The decision for one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Backup id.
    pub id: String,
    /// Source name.
    pub source: String,
    /// Recorded start time.
    pub time: DateTime<Utc>,
    /// Keep (true) or forget.
    pub keep: bool,
    /// Why it is kept, e.g. `daily 3/30`, `newest`; empty when forgotten.
    pub reasons: Vec<String>,
}

/// A retention plan: one decision per backup, by source, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Decisions grouped by source (sorted by name), each group newest first.
    pub decisions: Vec<Decision>,
}

impl Plan {
    /// The backups to keep.
    pub fn kept(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.keep)
    }

    /// The backups to forget (delete).
    pub fn forgotten(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| !d.keep)
    }
}

/// Plans retention for `backups` (any order, any sources) under `policy` at `now`.
pub fn plan(backups: &[RetentionItem], policy: &RetentionPolicy, now: DateTime<Utc>) -> Plan {
    let mut by_source: BTreeMap<&str, Vec<&RetentionItem>> = BTreeMap::new();
    for item in backups {
        by_source.entry(&item.source).or_default().push(item);
    }
    let mut decisions = Vec::with_capacity(backups.len());
    for mut items in by_source.into_values() {
        items.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
        let mut reasons = reasons_with_safety_backups(&items, policy, now);
        keep_dependencies(&items, &mut reasons);
        decisions.extend(items.iter().zip(reasons).map(|(item, reasons)| Decision {
            id: item.id.clone(),
            source: item.source.clone(),
            time: item.time,
            keep: !reasons.is_empty(),
            reasons,
        }));
    }
    Plan { decisions }
}

/// Reasons per item (same order as `items`, newest first). The rules rank regular backups
/// only: a restore's safety backup ([`crate::SAFETY_LABEL`]) must not take the "newest" or a
/// daily slot from the backup that was restored. A safety backup is kept while a regular
/// backup at least as old is kept (it ages out with the schedule), or while there is none.
fn reasons_with_safety_backups(
    items: &[&RetentionItem],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Vec<Vec<String>> {
    let is_safety = |it: &RetentionItem| it.labels.iter().any(|l| l == crate::SAFETY_LABEL);
    let regular: Vec<&RetentionItem> = items.iter().copied().filter(|it| !is_safety(it)).collect();
    let ranked = reasons_by_rule(&regular, policy, now);
    let oldest_kept = regular
        .iter()
        .zip(&ranked)
        .filter(|(_, r)| !r.is_empty())
        .map(|(it, _)| it.time)
        .min();
    let mut ranked = ranked.into_iter();
    items
        .iter()
        .map(|it| {
            if !is_safety(it) {
                return ranked.next().unwrap_or_default();
            }
            if policy.is_empty() {
                return vec!["no retention policy".to_owned()];
            }
            if policy.keep_labels.iter().any(|l| l == crate::SAFETY_LABEL) {
                return vec![format!("label {}", crate::SAFETY_LABEL)];
            }
            match oldest_kept {
                Some(oldest) if it.time < oldest => Vec::new(),
                Some(_) => {
                    vec!["safety backup of a restore, newer than the oldest kept backup".to_owned()]
                }
                None => vec!["safety backup of a restore, no regular backup kept".to_owned()],
            }
        })
        .collect()
}

/// Reasons per item (same order as `items`, newest first).
fn reasons_by_rule(
    items: &[&RetentionItem],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Vec<Vec<String>> {
    let mut reasons = vec![Vec::new(); items.len()];
    let Some(newest) = items.first() else {
        return reasons;
    };
    reasons[0].push("newest".to_owned());
    if policy.is_empty() {
        reasons
            .iter_mut()
            .skip(1)
            .for_each(|r| r.push("no retention policy".to_owned()));
        return reasons;
    }
    for (i, r) in reasons
        .iter_mut()
        .enumerate()
        .take(policy.keep_last as usize)
    {
        r.push(format!("last {}/{}", i + 1, policy.keep_last));
    }
    for period in Period::ALL {
        let count = period.count(policy);
        if count > 0 {
            keep_per_period(items, period, count, None, &mut reasons);
        }
        if let Some(span) = period.within(policy) {
            let since = newest.time - chrono_span(span);
            keep_per_period(items, period, u32::MAX, Some((since, span)), &mut reasons);
        }
    }
    if let Some(span) = policy.keep_within {
        let since = newest.time - chrono_span(span);
        mark(
            items,
            &mut reasons,
            |it| it.time >= since,
            &format!("within {}", humantime::format_duration(span)),
        );
    }
    for label in &policy.keep_labels {
        mark(
            items,
            &mut reasons,
            |it| it.labels.contains(label),
            &format!("label {label}"),
        );
    }
    if let Some(span) = policy.recovery_window {
        keep_recovery_window(items, span, now, &mut reasons);
    }
    reasons
}

fn mark(
    items: &[&RetentionItem],
    reasons: &mut [Vec<String>],
    keep: impl Fn(&RetentionItem) -> bool,
    reason: &str,
) {
    for (item, r) in items.iter().zip(reasons.iter_mut()) {
        if keep(item) {
            r.push(reason.to_owned());
        }
    }
}

/// Keeps the newest item of each of the first `count` periods (optionally only periods
/// of items at or after `since`).
fn keep_per_period(
    items: &[&RetentionItem],
    period: Period,
    count: u32,
    within: Option<(DateTime<Utc>, Duration)>,
    reasons: &mut [Vec<String>],
) {
    let mut last_key = None;
    let mut kept = 0u32;
    for (item, r) in items.iter().zip(reasons.iter_mut()) {
        if within.is_some_and(|(since, _)| item.time < since) || kept >= count {
            break;
        }
        let key = period.key(item.time);
        if last_key.as_ref() == Some(&key) {
            continue;
        }
        last_key = Some(key);
        kept += 1;
        r.push(match within {
            None => format!("{} {kept}/{count}", period.name()),
            Some((_, span)) => format!(
                "within-{} {}",
                period.name(),
                humantime::format_duration(span)
            ),
        });
    }
}

fn keep_recovery_window(
    items: &[&RetentionItem],
    span: Duration,
    now: DateTime<Utc>,
    reasons: &mut [Vec<String>],
) {
    let start = now - chrono_span(span);
    let label = humantime::format_duration(span);
    mark(
        items,
        reasons,
        |it| it.time >= start,
        &format!("recovery window {label}"),
    );
    if let Some(base) = items.iter().position(|it| it.time < start) {
        reasons[base].push(format!("base of recovery window {label}"));
    }
}

/// Keeps, transitively, every backup a kept backup depends on.
fn keep_dependencies(items: &[&RetentionItem], reasons: &mut [Vec<String>]) {
    let index: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.id.as_str(), i))
        .collect();
    let mut queue: Vec<usize> = (0..items.len())
        .filter(|&i| !reasons[i].is_empty())
        .collect();
    while let Some(i) = queue.pop() {
        for dep in &items[i].depends_on {
            let Some(&d) = index.get(dep.as_str()) else {
                continue;
            };
            let reason = format!("{BASE_OF} {}", items[i].id);
            if reasons[d].is_empty() {
                queue.push(d);
            }
            if !reasons[d].contains(&reason) {
                reasons[d].push(reason);
            }
        }
    }
}

/// The reason given to a backup kept because a kept backup depends on it.
const BASE_OF: &str = "base of kept backup";
/// The reason given to a backup kept because its recovery point is kept.
const MEMBER_OF: &str = "member of kept recovery point";

/// Whether a rule of the policy keeps the backup itself (not only as a dependency or a
/// point member).
fn kept_by_rule(decision: &Decision) -> bool {
    decision
        .reasons
        .iter()
        .any(|r| !r.starts_with(BASE_OF) && !r.starts_with(MEMBER_OF))
}

/// Treats each recovery point as one unit: when a rule of the policy keeps any of its
/// backups, all of them are kept ("member of kept recovery point P"), and so, transitively,
/// is what those depend on. A backup kept only as the base of another (an incremental
/// chain) does not keep its point: otherwise a chain of increments, each in a point, would
/// keep every point forever.
/// `points` pairs a point id with its member backup ids; `items` are every source's
/// backups (the `depends_on` links). Run it on the union of the per-source plans.
pub fn keep_recovery_points(
    plan: &mut Plan,
    items: &[RetentionItem],
    points: &[(String, Vec<String>)],
) {
    let depends: HashMap<&str, &[String]> = items
        .iter()
        .map(|it| (it.id.as_str(), it.depends_on.as_slice()))
        .collect();
    // Which points are kept is decided before any member is marked: a member kept for its
    // point is not kept by a rule, so marking cannot cascade from point to point.
    let kept_points: Vec<&(String, Vec<String>)> = points
        .iter()
        .filter(|(_, members)| {
            members.iter().any(|id| {
                plan.decisions
                    .iter()
                    .any(|d| &d.id == id && kept_by_rule(d))
            })
        })
        .collect();
    for (point, members) in kept_points {
        let reason = format!("{MEMBER_OF} {point}");
        for id in members {
            keep_with(plan, id, &reason, &depends);
        }
    }
}

/// Keeps `id` for `reason`, then what it depends on.
fn keep_with(plan: &mut Plan, id: &str, reason: &str, depends: &HashMap<&str, &[String]>) {
    let Some(decision) = plan.decisions.iter_mut().find(|d| d.id == id) else {
        return;
    };
    let newly = !decision.keep;
    if !decision.reasons.iter().any(|r| r == reason) {
        decision.reasons.push(reason.to_owned());
    }
    decision.keep = true;
    if newly {
        let base_reason = format!("{BASE_OF} {id}");
        for dep in depends.get(id).copied().unwrap_or_default() {
            keep_with(plan, dep, &base_reason, depends);
        }
    }
}

fn chrono_span(span: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(span).unwrap_or(chrono::TimeDelta::MAX)
}

#[derive(Debug, Clone, Copy)]
enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    const ALL: [Period; 5] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::Yearly,
    ];

    fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    fn key(self, t: DateTime<Utc>) -> String {
        let format = match self {
            Period::Hourly => "%Y-%m-%d %H",
            Period::Daily => "%Y-%m-%d",
            Period::Weekly => "%G-W%V",
            Period::Monthly => "%Y-%m",
            Period::Yearly => "%Y",
        };
        t.format(format).to_string()
    }

    fn count(self, p: &RetentionPolicy) -> u32 {
        match self {
            Period::Hourly => p.keep_hourly,
            Period::Daily => p.keep_daily,
            Period::Weekly => p.keep_weekly,
            Period::Monthly => p.keep_monthly,
            Period::Yearly => p.keep_yearly,
        }
    }

    fn within(self, p: &RetentionPolicy) -> Option<Duration> {
        match self {
            Period::Hourly => p.keep_within_hourly,
            Period::Daily => p.keep_within_daily,
            Period::Weekly => p.keep_within_weekly,
            Period::Monthly => p.keep_within_monthly,
            Period::Yearly => p.keep_within_yearly,
        }
    }
}

/// Serde for optional spans written as humantime strings (`30d`, `12h`).
pub(crate) mod span {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}
