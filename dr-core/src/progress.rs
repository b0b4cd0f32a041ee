//! Progress reporting: the library reports, front ends draw.
//!
//! Every event carries its [`Scope`]: the operation, the source, the backup and the artifact
//! it belongs to, so that two backups running at once can be told apart. A phase is
//! [`Event::Started`] (with its total when known), [`Event::Advanced`] any number of times,
//! then [`Event::Finished`] or [`Event::Failed`].

use std::sync::Arc;

use serde::Serialize;

/// The library operation an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Operation {
    /// A backup of one source.
    Backup,
    /// A restore.
    Restore,
    /// A verification.
    Verify,
    /// A restore drill.
    Drill,
    /// A copy to another repository.
    Copy,
    /// Pruning.
    Prune,
    /// A benchmark.
    Bench,
    /// Archiving one WAL file.
    WalPush,
    /// Fetching one WAL file.
    WalFetch,
    /// Listing backups.
    List,
    /// Computing the status.
    Status,
}

impl Operation {
    /// The operation's name in lower case (`backup`, `wal_push`...).
    pub fn name(self) -> &'static str {
        match self {
            Operation::Backup => "backup",
            Operation::Restore => "restore",
            Operation::Verify => "verify",
            Operation::Drill => "drill",
            Operation::Copy => "copy",
            Operation::Prune => "prune",
            Operation::Bench => "bench",
            Operation::WalPush => "wal_push",
            Operation::WalFetch => "wal_fetch",
            Operation::List => "list",
            Operation::Status => "status",
        }
    }
}

/// What an event is about. Fields are filled in as an operation narrows down.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Scope {
    /// The operation.
    pub operation: Option<Operation>,
    /// The source's name.
    pub source: Option<String>,
    /// The backup's id.
    pub backup_id: Option<String>,
    /// The artifact (or object) being read or written.
    pub artifact: Option<String>,
}

impl Scope {
    /// The scope of `operation`.
    pub fn of(operation: Operation) -> Self {
        Scope {
            operation: Some(operation),
            ..Scope::default()
        }
    }

    /// This scope narrowed to `source`.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// This scope narrowed to `backup_id`.
    pub fn with_backup(mut self, backup_id: impl Into<String>) -> Self {
        self.backup_id = Some(backup_id.into());
        self
    }

    /// This scope narrowed to `artifact`.
    pub fn with_artifact(mut self, artifact: impl Into<String>) -> Self {
        self.artifact = Some(artifact.into());
        self
    }
}

/// One progress event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A phase started (`backup`, `restore`, `checksums`, `snapshot`...), with its total
    /// plain bytes when known.
    Started {
        /// The phase, in words.
        phase: String,
        /// Bytes the phase will process, when known.
        total_bytes: Option<u64>,
    },
    /// `bytes` more bytes were processed.
    Advanced {
        /// Bytes since the last event.
        bytes: u64,
    },
    /// The phase finished.
    Finished,
    /// The phase failed.
    Failed {
        /// What went wrong.
        message: String,
    },
}

/// Receives progress. The library never prints; a CLI draws bars from these calls, a service
/// may export them as metrics. Implementations must be cheap: they are called once per part.
pub trait Progress: Send + Sync {
    /// `event` happened in `scope`.
    fn event(&self, scope: &Scope, event: &Event);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _scope: &Scope, _event: &Event) {}
}

/// A progress sink with the scope its events belong to: what operations hand down to the
/// pipeline and to backends.
#[derive(Clone)]
pub struct ProgressHandle {
    sink: Arc<dyn Progress>,
    scope: Scope,
}

impl Default for ProgressHandle {
    fn default() -> Self {
        ProgressHandle::new(Arc::new(NoProgress))
    }
}

impl std::fmt::Debug for ProgressHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressHandle")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ProgressHandle {
    /// Events go to `sink`, with an empty scope.
    pub fn new(sink: Arc<dyn Progress>) -> Self {
        ProgressHandle {
            sink,
            scope: Scope::default(),
        }
    }

    /// The scope of this handle's events.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// A handle whose events carry `scope` changed by `narrow`.
    pub fn narrowed(&self, narrow: impl FnOnce(Scope) -> Scope) -> Self {
        ProgressHandle {
            sink: self.sink.clone(),
            scope: narrow(self.scope.clone()),
        }
    }

    /// A phase started.
    pub fn start(&self, phase: impl Into<String>, total_bytes: Option<u64>) {
        self.send(&Event::Started {
            phase: phase.into(),
            total_bytes,
        });
    }

    /// `bytes` more were processed.
    pub fn advance(&self, bytes: u64) {
        self.send(&Event::Advanced { bytes });
    }

    /// The phase finished.
    pub fn finish(&self) {
        self.send(&Event::Finished);
    }

    /// The phase failed with `message`.
    pub fn fail(&self, message: impl Into<String>) {
        self.send(&Event::Failed {
            message: message.into(),
        });
    }

    fn send(&self, event: &Event) {
        self.sink.event(&self.scope, event);
    }
}
