//! Running one hook command: environment, timeout, kill, and the TOML forms.

use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::{DEFAULT_HOOK_TIMEOUT, HookCommand};

/// What a hook is told through its environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookEnv {
    /// `DR_OPERATION`: `backup` or `restore`.
    pub operation: String,
    /// `DR_SOURCE`: the source (unset for group hooks).
    pub source: Option<String>,
    /// `DR_BACKUP_ID`: the backup restored, or the one just made.
    pub backup_id: Option<String>,
    /// `DR_TARGET`: where a restore writes (empty for the source's own place).
    pub target: Option<String>,
    /// `DR_GROUP`: the group backed up or restored.
    pub group: Option<String>,
    /// `DR_POINT`: the recovery point restored, or the one just recorded.
    pub point: Option<String>,
}

impl HookEnv {
    /// The environment of `operation` (`backup`, `restore`).
    pub fn new(operation: impl Into<String>) -> Self {
        HookEnv {
            operation: operation.into(),
            ..HookEnv::default()
        }
    }

    /// With `DR_SOURCE`.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// With `DR_BACKUP_ID`.
    pub fn with_backup(mut self, id: impl Into<String>) -> Self {
        self.backup_id = Some(id.into());
        self
    }

    /// With `DR_TARGET`.
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// With `DR_GROUP`.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// With `DR_POINT`.
    pub fn with_point(mut self, point: impl Into<String>) -> Self {
        self.point = Some(point.into());
        self
    }

    fn vars(&self) -> Vec<(&'static str, &str)> {
        let mut vars = vec![("DR_OPERATION", self.operation.as_str())];
        let optional = [
            ("DR_SOURCE", &self.source),
            ("DR_BACKUP_ID", &self.backup_id),
            ("DR_TARGET", &self.target),
            ("DR_GROUP", &self.group),
            ("DR_POINT", &self.point),
        ];
        vars.extend(
            optional
                .into_iter()
                .filter_map(|(k, v)| v.as_deref().map(|v| (k, v))),
        );
        vars
    }
}

/// Runs `argv` with `env` for at most `timeout`; `Err` says why it failed.
pub(super) async fn run_command(
    argv: &[String],
    timeout: Duration,
    env: &HookEnv,
) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("the command is empty".into());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.vars())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut stderr = child.stderr.take();
    let mut tail = Vec::new();
    let finished = tokio::time::timeout(timeout, async {
        if let Some(stderr) = &mut stderr {
            // Read until the command closes stderr (its exit, mostly), then wait for it.
            let _ = stderr.read_to_end(&mut tail).await;
        }
        child.wait().await
    })
    .await;
    match finished {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{status}{}", stderr_tail(&tail))),
        Ok(Err(e)) => Err(format!("waiting for {program}: {e}")),
        Err(_) => {
            kill_group(&mut child).await;
            Err(format!(
                "still running after {}: killed{}",
                humantime::format_duration(timeout),
                stderr_tail(&tail)
            ))
        }
    }
}

/// Kills the command and everything it started (it leads its own process group).
async fn kill_group(child: &mut tokio::process::Child) {
    let pid = child.id().and_then(|id| i32::try_from(id).ok());
    if let Some(pid) = pid.and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// `: <last line of stderr>`, when it wrote something.
fn stderr_tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let last = text.lines().rev().find(|l| !l.trim().is_empty());
    match last {
        Some(line) => {
            let line: String = line.chars().take(300).collect();
            format!(": {}", line.trim())
        }
        None => String::new(),
    }
}

/// The TOML forms of a hook command.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum CommandForm {
    /// `["program", "arg"]`.
    Argv(Vec<String>),
    /// `{ command = ["program", "arg"], timeout = "30s" }`.
    Table(CommandTable),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommandTable {
    command: Vec<String>,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
}

fn default_timeout() -> Duration {
    DEFAULT_HOOK_TIMEOUT
}

impl TryFrom<CommandForm> for HookCommand {
    type Error = String;
    fn try_from(form: CommandForm) -> Result<Self, String> {
        let (argv, timeout) = match form {
            CommandForm::Argv(argv) => (argv, DEFAULT_HOOK_TIMEOUT),
            CommandForm::Table(t) => (t.command, t.timeout),
        };
        if argv.is_empty() {
            return Err("a hook command needs at least the program".into());
        }
        Ok(HookCommand { argv, timeout })
    }
}

impl From<HookCommand> for CommandForm {
    fn from(c: HookCommand) -> Self {
        CommandForm::Table(CommandTable {
            command: c.argv,
            timeout: c.timeout,
        })
    }
}

/// Serde for durations written as humantime strings (`30s`, `5m`).
pub(super) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}
