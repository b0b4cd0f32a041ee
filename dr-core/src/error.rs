//! The one error type of dr-core.
//!
//! Policy: every variant says *what* went wrong and carries the object, path or backup
//! involved; its message says what to do next. Messages start with a capital letter and have
//! no trailing period. Secrets never appear in a message: recipients are public keys, store
//! errors come from `object_store`, whose messages hold paths but not credentials.
//! [`Error::is_retryable`] tells whether trying again can help.

use std::path::PathBuf;

/// A boxed error that can travel between threads, the cause carried by some variants.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Result alias used across dr.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to give dr the secret key, in the words every "needs the secret key" message ends
/// with (front ends reuse it).
pub const LOAD_A_KEY: &str = "pass --identity FILE, set DR_IDENTITY, or set `identity` in dr.toml";

/// Everything that can go wrong in dr-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No `dr-repo.json` at the repository location.
    #[error(
        "No dr repository at {location}: check the repository URL (and that its disk or bucket is there); `dr init` creates a new, empty one only when setting up"
    )]
    NotInitialised {
        /// The repository location (credentials redacted).
        location: String,
    },

    /// `init` found a repository already there.
    #[error("A dr repository already exists at {location}; refusing to overwrite it")]
    RepositoryExists {
        /// The repository location (credentials redacted).
        location: String,
    },

    /// The repository or a manifest uses a format this build cannot read.
    #[error(
        "Unsupported {what} format version {found} (this dr reads version {supported}): upgrade dr"
    )]
    UnsupportedFormat {
        /// `repository` or `manifest`.
        what: &'static str,
        /// Version found in the object.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },

    /// None of the loaded identities can decrypt a backup.
    #[error(
        "No identity matches this backup: it was encrypted to {recipients}; load the secret key of one of those ({})",
        LOAD_A_KEY
    )]
    NoMatchingIdentity {
        /// The backup's recipients (public keys), comma-separated.
        recipients: String,
    },

    /// Decryption was asked for but no identity was loaded.
    #[error(
        "No identity loaded: reading backup data needs the secret key; {}",
        LOAD_A_KEY
    )]
    NoIdentity,

    /// A stored object does not match the checksum recorded in its manifest.
    #[error(
        "Corrupt object {key}: {what} SHA-256 is {actual}, {} expects {expected} (the object or that record is damaged); restore from another backup or a copy of the repository",
        record_of(.key)
    )]
    CorruptPart {
        /// Object key inside the repository.
        key: String,
        /// `stored` (the object's bytes) or `plain` (the decoded bytes).
        what: &'static str,
        /// Hash recorded at backup time (hex).
        expected: String,
        /// Hash computed now (hex).
        actual: String,
    },

    /// A stored object has the wrong size or cannot be decoded (truncated, damaged).
    #[error(
        "Damaged object {key}: {detail}; restore from another backup or a copy of the repository"
    )]
    DamagedPart {
        /// Object key inside the repository.
        key: String,
        /// What was found.
        detail: String,
    },

    /// An object the manifest names is not in the store.
    #[error(
        "Missing object {key}: the backup is incomplete; restore from another backup or a copy of the repository"
    )]
    MissingObject {
        /// Object key inside the repository.
        key: String,
    },

    /// No backup matches a selector.
    #[error("No backup found for {selector}: run `dr list` to see what exists")]
    BackupNotFound {
        /// What was asked for (source and id, `latest`, or a time).
        selector: String,
    },

    /// A manifest could not be parsed.
    #[error("Unreadable manifest {key}: {detail}")]
    BadManifest {
        /// Object key of the manifest.
        key: String,
        /// Parser message.
        detail: String,
    },

    /// `dr-repo.json` lists other recipients than the configuration pins.
    #[error(
        "The repository {location} encrypts to {found}, but dr is pinned to {pinned} (`recipients` in dr.toml, else the public key of the loaded identity): either the identity is not this repository's key (check --identity or DR_IDENTITY), or dr-repo.json was rewritten to make new backups readable by another key; refusing to encrypt (check who changed it; if the change is yours, set `recipients` in dr.toml to match)"
    )]
    RecipientsChanged {
        /// The repository location (credentials redacted).
        location: String,
        /// The recipients the configuration pins.
        pinned: String,
        /// The recipients `dr-repo.json` lists.
        found: String,
    },

    /// A committed backup that a selection would have chosen has an unreadable manifest.
    #[error("The backup that matches has an unreadable manifest {key}: {detail}; {instead}")]
    UnreadableManifest {
        /// Object key of the manifest.
        key: String,
        /// Why it could not be read.
        detail: String,
        /// What the user can do instead.
        instead: String,
    },

    /// An artifact name was asked for that the backup does not hold.
    #[error("Backup {backup} has no artifact named {artifact}")]
    NoSuchArtifact {
        /// Backup id.
        backup: String,
        /// Artifact name.
        artifact: String,
    },

    /// A name (source, artifact, label) contains characters dr does not allow.
    #[error(
        "Invalid {what} {name:?}: use 1-100 characters from a-z A-Z 0-9 . _ - (not starting with . or -)"
    )]
    InvalidName {
        /// What kind of name.
        what: &'static str,
        /// The name given.
        name: String,
    },

    /// A key or recipient could not be parsed or loaded.
    #[error("Bad key material in {origin}: {detail}")]
    BadKey {
        /// Where it came from (file path or `string`); never the key itself.
        origin: String,
        /// What is wrong.
        detail: String,
    },

    /// Refused to overwrite an existing identity file.
    #[error(
        "Identity file {0} already exists; refusing to overwrite a secret key (choose another path or move it away)"
    )]
    IdentityExists(PathBuf),

    /// A restored copy failed its checks; the target was not touched.
    #[error("Checks failed on {subject}: {problems}; the target was left as it was")]
    ChecksFailed {
        /// What was checked (a scratch copy, a staged restore).
        subject: String,
        /// The failed checks, `; `-separated.
        problems: String,
    },

    /// The object store failed or is unreachable.
    #[error(
        "Store error during {operation}: {source}; check the repository URL, credentials and network, then retry"
    )]
    Store {
        /// What dr was doing.
        operation: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },

    /// A local I/O error.
    #[error("I/O error during {operation}: {source}")]
    Io {
        /// What dr was doing.
        operation: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A repository URL or path that cannot be used.
    #[error("Cannot use repository location {location}: {detail}")]
    InvalidLocation {
        /// The location (credentials redacted).
        location: String,
        /// What is wrong and what to do.
        detail: String,
    },

    /// A datastore, or the client dr talks to it with, failed: connection refused, a timeout,
    /// an error reply, a malformed protocol reply.
    #[error("{} failed during {operation}: {message}", system_name(.system))]
    Backend {
        /// Which kind of datastore: `postgres`, `redis`, `sqlite`, `files`, `bucket`,
        /// `repository`, or `source` for a custom kind dr-core does not know.
        system: &'static str,
        /// What dr was doing (`backup`, `connect`, `restore`, `verify`...).
        operation: String,
        /// What went wrong and what to do, in words (no secrets).
        message: String,
        /// Whether trying again may succeed (the server was unreachable or timed out).
        retryable: bool,
        /// The underlying error, when there is one.
        #[source]
        cause: Option<BoxError>,
    },

    /// A program dr runs (pg_dump, pg_restore, pg_basebackup, redis-server...) failed.
    #[error("{program} failed ({}): {}", exit_text(*.status), or_no_message(.stderr_tail))]
    Tool {
        /// The program's name.
        program: String,
        /// Its exit code; `None` when a signal ended it.
        status: Option<i32>,
        /// The end of its standard error (bounded), with any hint dr adds after it.
        stderr_tail: String,
    },

    /// A program dr needs is not installed (or cannot be run at all).
    #[error("{program} is not installed: {install}")]
    ToolMissing {
        /// The program's name.
        program: String,
        /// How to install it (the Debian package) and what version it needs.
        install: String,
    },

    /// Data dr reads (a backup's RDB, a record stream, a WAL file, a server's answer about
    /// itself) is not what it should be.
    #[error("Unreadable {what}: {detail}")]
    InvalidData {
        /// What was read.
        what: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The target of a restore is in use; nothing was changed.
    #[error("Refusing to replace {target} while it is in use ({holder}): {hint}")]
    TargetInUse {
        /// What would have been replaced (a path, a database, a server).
        target: String,
        /// The process holding it, when one is known.
        holder_pid: Option<u32>,
        /// Who holds it, in words (`process 42 (sleep) has it open`).
        holder: String,
        /// What to do.
        hint: String,
    },

    /// The target of a restore or copy already holds something dr will not overwrite.
    #[error("Refusing to overwrite {target}: it {found}; {hint}")]
    TargetExists {
        /// Where dr would have written (a path, a repository, a server).
        target: String,
        /// What is there, after "it" (`is not empty`, `already holds 3 keys`...).
        found: String,
        /// Why dr stops and what to do.
        hint: String,
    },

    /// A request that cannot be carried out as asked; the message says why and what to do.
    #[error("Refused ({reason}): {message}")]
    Refused {
        /// Which kind of refusal.
        reason: Refusal,
        /// Why, and what to do instead.
        message: String,
    },

    /// A restore could not complete (the target, or the server recovering it, failed).
    #[error("Restore failed ({}): {message}", system_name(.system))]
    Restore {
        /// The kind of target, as in [`Error::Backend`].
        system: &'static str,
        /// What failed, what state the target is in, and what to do.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        cause: Option<BoxError>,
    },

    /// A hook command failed before the operation touched anything.
    #[error(
        "The {phase} hook {command} failed ({error}): nothing was {undone}; fix the hook or the service it checks and run again"
    )]
    HookFailed {
        /// `before_backup`, `before_restore`...
        phase: &'static str,
        /// The command as shown to people.
        command: String,
        /// How it failed.
        error: String,
        /// What did not happen (`backed up`, `restored`).
        undone: &'static str,
    },

    /// Something inside dr failed that should not (a worker task panicked or was cancelled).
    #[error("Internal failure during {operation}: {message}")]
    Internal {
        /// What dr was doing.
        operation: String,
        /// What happened.
        message: String,
    },

    /// An operation was used wrongly by the calling code (a bug in the caller).
    #[error("Invalid use: {0}")]
    Usage(String),

    /// Encryption failed (bad recipient set).
    #[error("Encryption failed: {0}")]
    Encrypt(String),
}

impl Error {
    /// Whether retrying the same operation may succeed (transient store or I/O trouble).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store { source, .. } => !crate::store::is_definite(source),
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
            ),
            Error::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Builds a non-retryable [`Error::Backend`]; chain [`Error::retryable`] and
    /// [`Error::caused_by`] to say more.
    pub fn backend(
        system: &'static str,
        operation: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Backend {
            system,
            operation: operation.into(),
            message: message.into(),
            retryable: false,
            cause: None,
        }
    }

    /// Marks an [`Error::Backend`] as retryable (other variants are returned unchanged).
    #[must_use]
    pub fn retryable(self) -> Self {
        self.retryable_if(true)
    }

    /// Sets whether an [`Error::Backend`] is retryable (other variants are returned unchanged).
    #[must_use]
    pub fn retryable_if(mut self, yes: bool) -> Self {
        if let Error::Backend { retryable, .. } = &mut self {
            *retryable = yes;
        }
        self
    }

    /// Attaches the underlying error to an [`Error::Backend`] or [`Error::Restore`] (other
    /// variants are returned unchanged).
    #[must_use]
    pub fn caused_by(mut self, error: impl Into<BoxError>) -> Self {
        if let Error::Backend { cause, .. } | Error::Restore { cause, .. } = &mut self {
            *cause = Some(error.into());
        }
        self
    }

    /// Builds a [`Error::Restore`] without a cause.
    pub fn restore(system: &'static str, message: impl Into<String>) -> Self {
        Error::Restore {
            system,
            message: message.into(),
            cause: None,
        }
    }

    /// Builds a [`Error::Refused`].
    pub fn refused(reason: Refusal, message: impl Into<String>) -> Self {
        Error::Refused {
            reason,
            message: message.into(),
        }
    }

    /// Builds a [`Error::Tool`] from a child's exit status and its collected stderr.
    pub fn tool(
        program: impl Into<String>,
        status: std::process::ExitStatus,
        stderr: impl Into<String>,
    ) -> Self {
        Error::Tool {
            program: program.into(),
            status: status.code(),
            stderr_tail: tail(&stderr.into(), TOOL_STDERR_LINES),
        }
    }

    /// Builds a [`Error::InvalidData`].
    pub fn invalid_data(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::InvalidData {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// Builds a [`Error::Internal`].
    pub fn internal(operation: impl Into<String>, message: impl ToString) -> Self {
        Error::Internal {
            operation: operation.into(),
            message: message.to_string(),
        }
    }

    /// This error with `text` appended to the part of its message that explains it (the
    /// message, the hint, the problems); the variant, and so the exit code, is kept. Variants
    /// without free text are returned unchanged.
    #[must_use]
    pub fn with_hint(mut self, text: &str) -> Self {
        match &mut self {
            Error::Backend { message, .. }
            | Error::Restore { message, .. }
            | Error::Refused { message, .. }
            | Error::Usage(message)
            | Error::Encrypt(message)
            | Error::InvalidData {
                detail: message, ..
            }
            | Error::Internal { message, .. }
            | Error::ChecksFailed {
                problems: message, ..
            }
            | Error::Tool {
                stderr_tail: message,
                ..
            }
            | Error::TargetInUse { hint: message, .. }
            | Error::TargetExists { hint: message, .. } => message.push_str(text),
            _ => {}
        }
        self
    }

    /// The free-text part of the message ([`Error::Backend`]'s message, [`Error::Restore`]'s
    /// ...) without the words the variant adds around it; the whole Display for variants
    /// without one.
    pub fn detail(&self) -> String {
        match self {
            Error::Backend { message, .. }
            | Error::Restore { message, .. }
            | Error::Refused { message, .. }
            | Error::Internal { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Builds a [`Error::Store`] with a description of the operation.
    pub fn store(operation: impl Into<String>, source: object_store::Error) -> Self {
        Error::Store {
            operation: operation.into(),
            source,
        }
    }

    /// Builds a [`Error::Io`] with a description of the operation.
    pub fn io(operation: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            operation: operation.into(),
            source,
        }
    }

    /// Recovers a dr error carried inside an `io::Error` (as the async reader and writer
    /// report them), or wraps a plain I/O error.
    pub fn from_io(operation: &str, err: std::io::Error) -> Self {
        if !err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::io(operation, err);
        }
        match err.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(dr)) => *dr,
            _ => Error::Usage("lost an error while unwrapping it".into()),
        }
    }

    /// Wraps this error in an `io::Error` for the `AsyncRead`/`AsyncWrite` interfaces.
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

/// Why a request was refused (the kind of [`Error::Refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// An argument or name that is not what it should be (not a WAL position, matches nothing).
    InvalidInput,
    /// The backup is of another kind than the operation needs.
    WrongKind,
    /// The backup or recovery point is incomplete.
    Incomplete,
    /// What the backups hold does not cover the request (a recovery target, roles).
    Unavailable,
    /// Two things that must stay apart would be mixed (two clusters in one WAL archive).
    Conflict,
    /// This operation or option is not supported here.
    Unsupported,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::InvalidInput => "invalid input",
            Refusal::WrongKind => "wrong kind of backup",
            Refusal::Incomplete => "incomplete",
            Refusal::Unavailable => "not in the backups",
            Refusal::Conflict => "conflict",
            Refusal::Unsupported => "not supported",
        })
    }
}

/// Lines of a tool's stderr kept in [`Error::Tool`].
const TOOL_STDERR_LINES: usize = 50;

/// The last `lines` lines of `text`, trimmed.
fn tail(text: &str, lines: usize) -> String {
    let text = text.trim();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A system's name in a sentence.
fn system_name(system: &str) -> &str {
    match system {
        "postgres" => "PostgreSQL",
        "redis" => "Redis",
        "sqlite" => "SQLite",
        "files" => "The file tree",
        "bucket" => "The bucket",
        "repository" => "The repository",
        "source" => "The datastore",
        other => other,
    }
}

/// An exit code in words.
fn exit_text(status: Option<i32>) -> String {
    match status {
        Some(code) => format!("exit status {code}"),
        None => "ended by a signal".into(),
    }
}

fn or_no_message(text: &str) -> &str {
    if text.is_empty() { "no message" } else { text }
}

/// The record that holds an object's checksums, in words: a backup part's manifest, a WAL
/// file's `.json` record.
fn record_of(key: &str) -> String {
    if let (Some(wal), true) = (key.strip_suffix(".zst.age"), key.starts_with("wal/")) {
        return format!("its record {wal}.json");
    }
    match key.rsplit_once('/') {
        Some((dir, _)) if key.starts_with("backups/") => {
            format!("its manifest {dir}/manifest.json")
        }
        _ => "the manifest".into(),
    }
}
