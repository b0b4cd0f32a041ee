//! PostgreSQL as a registry source type (`kind = "postgres"`): the settings of dr.toml's
//! `[sources.NAME]`, the factory, and the two sources it builds: [`LogicalSource`]
//! (`method = "logical"`, pg_dump of one database) and [`PhysicalSource`]
//! (`method = "physical"`, base backups plus the WAL archive, restored by point in time).
//!
//! Each source runs the whole restore flow of its method from [`dr_core::RestoreOptions`]
//! and refuses the options it does not support with [`Error::Usage`] naming them.

mod archive;
mod logical;
mod physical;
mod settings;
mod summary;

use std::sync::Arc;

use dr_core::registry::{SourceFactory, SourceSettings};
use dr_core::{Error, Result, Source};

pub use archive::{BaseKindSupport, LogicalKindSupport, WalArchiveSupport};
pub use logical::{GlobalsDetails, LogicalDetails, LogicalSource};
pub use physical::{PhysicalSource, PitrDetails};
pub use settings::{PgMethod, PostgresSettings};

/// The source type of dr.toml: `kind = "postgres"`.
pub const SOURCE_TYPE: &str = "postgres";

/// Builds PostgreSQL sources from their settings ([`PostgresSettings`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct PostgresSourceFactory;

impl SourceFactory for PostgresSourceFactory {
    fn source_type(&self) -> &str {
        SOURCE_TYPE
    }

    fn build(&self, settings: &SourceSettings) -> Result<Arc<dyn Source>> {
        let parsed: PostgresSettings = settings.parse(SOURCE_TYPE)?;
        parsed.check()?;
        Ok(match parsed.method {
            PgMethod::Logical => Arc::new(LogicalSource::new(parsed, settings.checks.clone())),
            PgMethod::Physical => Arc::new(PhysicalSource::new(
                parsed,
                settings.checks.clone(),
                settings.self_command.clone(),
            )),
        })
    }
}

/// Refuses `option` (a [`dr_core::RestoreOptions`] field) with why and what to use instead.
fn refuse(option: &str, why: &str) -> Error {
    Error::Usage(format!("restore option `{option}` {why}"))
}

/// `error` with `text` appended to its message, keeping its kind (and so its exit code).
pub(crate) fn append(error: Error, text: &str) -> Error {
    error.with_hint(text)
}

/// Quotes `word` for `sh` (PostgreSQL runs `restore_command` through the shell).
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@=+,".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The `restore_command` a recovering server runs to fetch WAL of `source`: the front end's
/// argv (`self_command`) followed by `wal-fetch --source NAME %f %p`, each word shell-quoted.
///
/// # Errors
/// [`Error::Usage`] when `self_command` is empty (the front end cannot be called back).
pub fn restore_command(self_command: &[String], source: &str) -> Result<String> {
    if self_command.is_empty() {
        return Err(Error::Usage(format!(
            "a physical restore of {source} needs a command that fetches WAL (restore_command), and this front end gave none: set SourceSettings::self_command to the argv that runs `dr` with its configuration"
        )));
    }
    let mut words: Vec<String> = self_command.iter().map(|w| shell_quote(w)).collect();
    words.extend([
        "wal-fetch".into(),
        "--source".into(),
        shell_quote(source),
        "%f".into(),
        "%p".into(),
    ]);
    Ok(words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_spaces_and_quotes() {
        assert_eq!(shell_quote("/usr/bin/dr"), "/usr/bin/dr");
        assert_eq!(shell_quote("/srv/my dr/dr.toml"), "'/srv/my dr/dr.toml'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn restore_command_appends_wal_fetch() {
        let argv = vec![
            "/usr/bin/dr".into(),
            "--config".into(),
            "/etc/my dr.toml".into(),
        ];
        assert_eq!(
            restore_command(&argv, "db").unwrap(),
            "/usr/bin/dr --config '/etc/my dr.toml' wal-fetch --source db %f %p"
        );
        let err = restore_command(&[], "db").unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(err.to_string().contains("self_command"), "{err}");
    }
}
