//! Exit codes and the errors the CLI prints.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | operational error: the store, a source, a key, a file failed |
//! | 2 | usage error: bad flags, configuration or arguments |
//! | 3 | verification failed: a backup is damaged or a check did not pass |
//! | 255 | `wal-fetch` could not tell whether the file exists (store unreachable, damaged file): above 125, so PostgreSQL aborts recovery instead of ending it early |

use std::process::ExitCode;

/// What went wrong, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Exit code 1.
    Operational,
    /// Exit code 2.
    Usage,
    /// Exit code 3.
    Verification,
    /// Exit code 1 without the word "error": `wal-fetch` was asked for a file the archive
    /// does not have, which is how every recovery learns where the archive ends.
    NotArchived,
    /// Exit code 255: stop PostgreSQL's recovery (restore_command failures that are not
    /// "the file is not archived").
    AbortRecovery,
}

/// An error with its exit code and an optional "while ..." context.
#[derive(Debug)]
pub struct CliError {
    /// Which exit code.
    pub failure: Failure,
    /// The message, worded for a person.
    pub message: String,
}

/// Result of a command.
pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            failure: Failure::Usage,
            message: message.into(),
        }
    }

    /// A verification failure (exit 3).
    pub fn verification(message: impl Into<String>) -> Self {
        CliError {
            failure: Failure::Verification,
            message: message.into(),
        }
    }

    /// An operational failure (exit 1).
    pub fn operational(message: impl Into<String>) -> Self {
        CliError {
            failure: Failure::Operational,
            message: message.into(),
        }
    }

    /// Adds what dr was doing, e.g. `backing up source app`.
    pub fn context(mut self, doing: &str) -> Self {
        self.message = format!("{doing}: {}", self.message);
        self
    }

    /// How the message is introduced on stderr.
    pub fn prefix(&self) -> &'static str {
        match self.failure {
            Failure::NotArchived => "dr: ",
            _ => "error: ",
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self.failure {
            Failure::Operational | Failure::NotArchived => 1,
            Failure::Usage => 2,
            Failure::Verification => 3,
            Failure::AbortRecovery => 255,
        })
    }
}

impl From<dr_core::Error> for CliError {
    fn from(e: dr_core::Error) -> Self {
        CliError::from(&e)
    }
}

impl From<&dr_core::Error> for CliError {
    fn from(e: &dr_core::Error) -> Self {
        use dr_core::Error as E;
        let failure = match e {
            E::CorruptPart { .. }
            | E::DamagedPart { .. }
            | E::MissingObject { .. }
            | E::ChecksFailed { .. }
            | E::BadManifest { .. }
            | E::UnreadableManifest { .. }
            | E::NoSuchArtifact { .. } => Failure::Verification,
            E::InvalidName { .. }
            | E::InvalidLocation { .. }
            | E::BackupNotFound { .. }
            | E::Usage(_)
            | E::Refused { .. }
            | E::TargetExists { .. }
            | E::TargetInUse { .. } => Failure::Usage,
            _ => Failure::Operational,
        };
        CliError {
            failure,
            message: e.to_string(),
        }
    }
}

/// Extension to add context to dr-core results.
pub trait Context<T> {
    /// Converts the error and prefixes what dr was doing.
    fn doing(self, what: impl FnOnce() -> String) -> CliResult<T>;
}

impl<T> Context<T> for Result<T, dr_core::Error> {
    fn doing(self, what: impl FnOnce() -> String) -> CliResult<T> {
        self.map_err(|e| CliError::from(e).context(&what()))
    }
}
