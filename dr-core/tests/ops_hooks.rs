//! Hooks: commands run as argument arrays with a timeout, health checks retried.

use std::path::Path;
use std::time::{Duration, Instant};

use dr_core::ops::Hooks;
use dr_core::ops::hooks::{HealthCheck, HookCommand, HookEnv, HookPhase};

fn sh(script: &str) -> HookCommand {
    HookCommand::new(["sh", "-c", script])
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie waiting for init to reap it is dead.
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_timeout_kills_the_hook_and_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let hook = sh(&format!("sleep 30 & echo $! > {}; wait", pidfile.display()))
        .with_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let run = hook
        .run(HookPhase::AfterRestore, &HookEnv::new("restore"))
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let error = run.error.expect("a timed-out hook fails");
    assert!(error.contains("killed"), "{error}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(pid), "the hook's child {pid} survived the timeout");
}

#[tokio::test]
async fn the_health_check_is_retried_until_it_passes() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("n");
    let script = format!(
        "n=$(cat {f} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {f}; [ $n -ge 3 ]",
        f = count.display()
    );
    let health = HealthCheck::new(["sh", "-c", &script])
        .with_interval(Duration::from_millis(100))
        .with_timeout(Duration::from_secs(20));
    let report = health.wait(&HookEnv::new("restore")).await;
    assert!(report.passed, "{report:?}");
    assert_eq!(report.attempts, 3);
    assert!(report.elapsed_ms >= 200, "{report:?}");
    assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "3");
}

#[tokio::test]
async fn the_health_check_gives_up_after_its_timeout() {
    let health = HealthCheck::new(["sh", "-c", "echo not yet >&2; exit 1"])
        .with_interval(Duration::from_millis(100))
        .with_timeout(Duration::from_millis(600));
    let started = Instant::now();
    let report = health.wait(&HookEnv::new("restore")).await;
    assert!(!report.passed);
    assert!(report.attempts >= 3, "{report:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(report.error.unwrap().contains("not yet"));
}

#[tokio::test]
async fn a_failing_before_hook_stops_the_ones_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("second-ran");
    let hooks = Hooks::default()
        .with_before_restore(sh("echo cannot stop the app >&2; exit 4"))
        .with_before_restore(HookCommand::new(["touch", marker.to_str().unwrap()]));
    let mut runs = Vec::new();
    let err = hooks
        .run_before(
            HookPhase::BeforeRestore,
            &HookEnv::new("restore"),
            &mut runs,
        )
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("before_restore hook"), "{message}");
    assert!(message.contains("cannot stop the app"), "{message}");
    assert!(message.contains("nothing was restored"), "{message}");
    assert_eq!(runs.len(), 1);
    assert!(!marker.exists());
}

#[tokio::test]
async fn hooks_get_the_operation_in_their_environment_and_no_shell() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let env = HookEnv::new("restore")
        .with_source("db")
        .with_backup("20260101T000000Z-abcd")
        .with_target("/srv/new.db");
    let script = format!(
        "echo \"$DR_OPERATION $DR_SOURCE $DR_BACKUP_ID $DR_TARGET ${{DR_GROUP:-none}}\" > {}",
        out.display()
    );
    assert!(
        sh(&script)
            .run(HookPhase::BeforeRestore, &env)
            .await
            .error
            .is_none()
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        "restore db 20260101T000000Z-abcd /srv/new.db none"
    );
    // An argument is one argument: `;` reaches the program, no shell runs `touch`.
    let touched = dir.path().join("touched");
    let literal = format!("; touch {}", touched.display());
    let run = HookCommand::new(["echo", literal.as_str()])
        .run(HookPhase::BeforeRestore, &env)
        .await;
    assert!(run.error.is_none());
    assert!(!Path::new(&touched).exists());
    let missing = HookCommand::new(["/nonexistent/dr-hook"])
        .run(HookPhase::BeforeRestore, &env)
        .await;
    assert!(missing.error.unwrap().contains("cannot start"));
}

#[test]
fn hooks_parse_in_both_forms_and_refuse_typos() {
    // The shape dr.toml's `[sources.NAME.hooks]` deserializes from.
    let hooks: Hooks = serde_json::from_value(serde_json::json!({
        "before_restore": [["systemctl", "stop", "app"]],
        "after_restore": [{ "command": ["systemctl", "start", "app"], "timeout": "30s" }],
        "health": { "command": ["curl", "-fs", "http://127.0.0.1:8080/health"], "interval": "2s", "timeout": "1m" }
    }))
    .unwrap();
    assert_eq!(hooks.before_restore[0].argv, ["systemctl", "stop", "app"]);
    assert_eq!(hooks.before_restore[0].timeout, Duration::from_secs(300));
    assert_eq!(hooks.after_restore[0].timeout, Duration::from_secs(30));
    let health = hooks.health.unwrap();
    assert_eq!(health.interval, Duration::from_secs(2));
    assert_eq!(health.timeout, Duration::from_secs(60));
    let typo = serde_json::json!({ "before_restor": [["true"]] });
    assert!(serde_json::from_value::<Hooks>(typo).is_err());
    let empty = serde_json::json!({ "before_restore": [[]] });
    assert!(serde_json::from_value::<Hooks>(empty).is_err());
    let bad_key = serde_json::json!({ "after_restore": [{ "comand": ["true"] }] });
    assert!(serde_json::from_value::<Hooks>(bad_key).is_err());
}
