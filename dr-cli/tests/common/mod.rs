//! Running the `dr` binary from the integration tests.
#![allow(dead_code)] // each test binary uses its part

pub mod pitr;
pub mod sweep;

use std::path::Path;
use std::process::Command;

/// Runs `dr --config CONFIG ARGS` with extra environment variables; returns the exit code
/// and stdout followed by stderr.
pub fn dr_with(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dr"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied());
    output_of(command)
}

/// Runs `command`; returns its exit code and stdout followed by stderr.
pub fn output_of(mut command: Command) -> (i32, String) {
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Starts `dr --config CONFIG ARGS` in the background, its output discarded.
pub fn spawn_quiet(config: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_dr"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs `dr --config CONFIG ARGS`.
pub fn dr(config: &Path, args: &[&str]) -> (i32, String) {
    dr_with(config, args, &[])
}

/// Runs `dr --config CONFIG ARGS` and asserts it succeeded; returns its output.
pub fn ok(config: &Path, args: &[&str]) -> String {
    let (code, out) = dr(config, args);
    assert_eq!(code, 0, "dr {args:?}: {out}");
    out
}

/// The ids `dr list --json [SOURCE]` shows, newest first.
pub fn listed_ids(config: &Path, source: Option<&str>) -> Vec<String> {
    let mut args = vec!["list", "--json"];
    args.extend(source);
    let listed: serde_json::Value = serde_json::from_str(&ok(config, &args)).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}
