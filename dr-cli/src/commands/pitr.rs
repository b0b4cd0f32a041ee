//! Physical PostgreSQL sources: the `restore_command` of a drill, and the recoverable
//! windows `dr list` and `dr verify` show.

use std::path::Path;

use dr_core::Repository;

use dr_postgres::{ArchiveCheck, check_archive};

use crate::app::App;
use crate::exit::{CliError, CliResult, Context};

/// The `restore_command` recovery runs: this very binary with this configuration.
pub(super) fn restore_command(app: &App, source: &str) -> CliResult<String> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::usage(format!("cannot find the dr binary: {e}")))?;
    let mut words = vec![
        shell_quote(&exe.display().to_string()),
        "--config".into(),
        shell_quote(&absolute(&app.global.config)?.display().to_string()),
    ];
    if let Some(repository) = &app.global.repository {
        words.extend(["--repository".into(), shell_quote(repository)]);
    }
    if let Some(identity) = &app.global.identity {
        words.extend([
            "--identity".into(),
            shell_quote(&absolute(identity)?.display().to_string()),
        ]);
    }
    words.extend([
        "wal-fetch".into(),
        "--source".into(),
        shell_quote(source),
        "%f".into(),
        "%p".into(),
    ]);
    Ok(words.join(" "))
}

fn shell_quote(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:@=+,".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn absolute(path: &Path) -> CliResult<std::path::PathBuf> {
    std::path::absolute(path)
        .map_err(|e| CliError::usage(format!("cannot resolve {}: {e}", path.display())))
}

/// The archive checks of every source with base backups (for `dr list` and `dr verify`).
pub async fn archive_checks(repo: &Repository, sources: &[&str]) -> CliResult<Vec<ArchiveCheck>> {
    let mut checks = Vec::new();
    for source in sources {
        let check = check_archive(repo, source)
            .await
            .doing(|| format!("checking the WAL archive of {source}"))?;
        if !check.runs.is_empty() || !check.problems.is_empty() {
            checks.push(check);
        }
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_spaces_and_quotes() {
        assert_eq!(shell_quote("/usr/bin/dr"), "/usr/bin/dr");
        assert_eq!(shell_quote("/srv/my dr/dr.toml"), "'/srv/my dr/dr.toml'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
