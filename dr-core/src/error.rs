//! The one error type of dr-core.
//!
//! Policy: every variant says *what* went wrong and carries the object, path or backup
//! involved; its message says what to do next. Messages start with a capital letter and have
//! no trailing period. Secrets never appear in a message: recipients are public keys, store
//! errors come from `object_store`, whose messages hold paths but not credentials.
//! [`Error::is_retryable`] tells whether trying again can help.

use std::path::PathBuf;

/// Result alias used across dr.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in dr-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No `dr-repo.json` at the repository location.
    #[error(
        "No dr repository at {location}: run `dr init` there first, or check the repository URL"
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
        "No identity matches this backup: it was encrypted to {recipients}; load the identity file holding one of those keys (--identity or DR_IDENTITY)"
    )]
    NoMatchingIdentity {
        /// The backup's recipients (public keys), comma-separated.
        recipients: String,
    },

    /// Decryption was asked for but no identity was loaded.
    #[error(
        "No identity loaded: reading backup data needs the secret key; pass --identity FILE or set DR_IDENTITY"
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
        "The repository {location} encrypts to {found}, but the configuration pins {pinned}: dr-repo.json may have been rewritten to make new backups readable by another key; refusing to encrypt (check who changed it; if the change is yours, set `recipients` in dr.toml to match)"
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

    /// The datastore (a backup source or a restore target) failed.
    #[error("The datastore failed: {0}")]
    Source(String),

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

    /// A restore could not complete (the target, or the server recovering it, failed).
    #[error("Restore failed: {0}")]
    Restore(String),

    /// A request that cannot be carried out as asked; the message says why and what to do.
    #[error("{0}")]
    Refused(String),

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
            _ => false,
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
