//! examples/deploy/alerts.yaml and grafana-dashboard.json against the real `dr`: every metric
//! name they use is one that `dr status --prometheus` emits on a small repository (SQLite
//! source, local repository), the dashboard shows every emitted metric, and promtool (Debian's
//! `prometheus` package) accepts the rules and passes their unit tests.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{dr, ok};
use serde::Deserialize;

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: String,
    expr: String,
    labels: std::collections::BTreeMap<String, String>,
    annotations: std::collections::BTreeMap<String, String>,
}

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/deploy")
        .join(file)
}

/// The metric families `dr status --prometheus` emits for a backed-up, drilled SQLite source.
fn emitted_metrics() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
    db.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let config = dir.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[objectives]\nrpo = \"1h\"\nrto = \"15m\"\ndrill_every = \"30d\"\n[sources.app]\nkind = \"sqlite\"\npath = \"{0}/app.db\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    for args in [
        &["keygen"][..],
        &["init"],
        &["backup", "app"],
        &["drill", "app"],
    ] {
        ok(&config, args);
    }
    let (code, text) = dr(&config, &["status", "--prometheus"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF:\n{text}"
    );
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect()
}

/// The `dr_*` metric names a PromQL expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("dr_"))
        .map(str::to_owned)
        .collect()
}

fn assert_known(used: &BTreeSet<String>, emitted: &BTreeSet<String>, what: &str) {
    let unknown: Vec<_> = used.difference(emitted).collect();
    assert!(
        unknown.is_empty(),
        "{what} uses metrics dr does not emit: {unknown:?} (emitted: {emitted:?})"
    );
}

#[test]
fn alerts_and_dashboard_use_only_metrics_dr_emits() {
    let emitted = emitted_metrics();
    assert!(
        emitted.contains("dr_backup_last_success_timestamp_seconds"),
        "{emitted:?}"
    );

    let rules: RuleFile =
        serde_yaml_ng::from_str(&std::fs::read_to_string(deploy("alerts.yaml")).unwrap()).unwrap();
    let rules: Vec<Rule> = rules.groups.into_iter().flat_map(|g| g.rules).collect();
    let mut in_alerts = BTreeSet::new();
    for rule in &rules {
        let used = metric_names(&rule.expr);
        assert!(!used.is_empty(), "{} reads no dr metric", rule.alert);
        assert!(
            rule.labels.contains_key("severity"),
            "{} has no severity",
            rule.alert
        );
        assert!(
            rule.annotations.contains_key("summary"),
            "{} has no summary",
            rule.alert
        );
        in_alerts.extend(used);
    }
    assert_known(&in_alerts, &emitted, "alerts.yaml");
    // The conditions the alerts must cover, by the metrics they need.
    for needed in [
        "dr_rpo_objective_seconds",
        "dr_drill_last_success",
        "dr_drill_every_seconds",
        "dr_wal_archive_problems",
        "dr_wal_archive_recoverable_until_timestamp_seconds",
        "dr_copy_has_newest_backup",
    ] {
        assert!(in_alerts.contains(needed), "no alert reads {needed}");
    }
    assert!(
        rules
            .iter()
            .any(|r| r.expr.starts_with("absent(dr_status_timestamp_seconds")),
        "no alert for absent metrics (daemon down)"
    );

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana-dashboard.json")).unwrap())
            .unwrap();
    let mut queries = Vec::new();
    collect_queries(&dashboard, &mut queries);
    assert!(queries.len() > 10, "{queries:?}");
    let in_dashboard: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    assert_known(&in_dashboard, &emitted, "grafana-dashboard.json");
    let missing: Vec<_> = emitted.difference(&in_dashboard).collect();
    assert!(
        missing.is_empty(),
        "the dashboard does not show {missing:?}"
    );
}

/// Every `expr` of a panel target and every templating query, anywhere in the JSON.
fn collect_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is not installed ({e}): apt-get install prometheus (scripts/test does)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let rules = deploy("alerts.yaml");
    let out = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alerts_test.yaml");
    let out = promtool(&["test", "rules", cases.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
}
