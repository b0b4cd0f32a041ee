//! Verification in one shape for every kind: the generic checks of a backup's objects, then
//! the kind's structure check or test restore ([`KindVerifier`]), then timing, through
//! [`verify_backup`]. Problems are typed ([`VerifyProblem`], [`ProblemKind`]) so that callers
//! tell damaged data from a failed user check without reading words.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::PartRecord;
use crate::pipeline::{BackupReader, sha256_hex};
use crate::progress::ProgressHandle;
use crate::store::get_object;
use crate::traits::{VerifyLevel, VerifyReport};

/// What kind of problem a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// An object the manifest names is not in the store.
    Missing,
    /// An object has another size than the manifest records (truncated or replaced).
    Size,
    /// An object's bytes do not match their recorded SHA-256.
    StoredHash,
    /// An object's decoded bytes do not match their recorded SHA-256.
    PlainHash,
    /// An object cannot be decrypted or decompressed.
    Undecodable,
    /// No loaded identity can decrypt the backup (or none is loaded where one is needed).
    NoMatchingIdentity,
    /// A user check (`[[sources.NAME.checks]]`) did not hold on the restored data: the
    /// backup itself is intact.
    FailedCheck,
    /// The kind's own structure check failed (a tar without `backup_label`, an RDB that does
    /// not parse, key counts that differ from the recorded ones).
    Structure,
    /// The test restore failed.
    TestRestore,
    /// A backup this one depends on has a problem.
    Dependency,
    /// The continuous archive (PostgreSQL WAL) has a gap or a damaged file.
    Archive,
    /// A manifest or record cannot be read, or a backup has no manifest.
    Unreadable,
    /// The repository's recipients differ from the pinned ones.
    Recipients,
    /// Anything else.
    Other,
}

/// One problem a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VerifyProblem {
    /// The object, file or check involved, when there is one.
    pub object: Option<String>,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The problem in words, with what to do.
    pub message: String,
}

impl VerifyProblem {
    /// A problem of `kind` in words.
    pub fn new(kind: ProblemKind, message: impl Into<String>) -> Self {
        VerifyProblem {
            object: None,
            kind,
            message: message.into(),
        }
    }

    /// Names the object involved.
    pub fn with_object(mut self, object: impl Into<String>) -> Self {
        self.object = Some(object.into());
        self
    }

    /// The problem `error` describes: the kind from the error's variant when it names one
    /// (a missing object, a hash mismatch), `otherwise` when it does not.
    pub fn from_error(error: &Error, otherwise: ProblemKind) -> Self {
        let (kind, object) = match error {
            Error::MissingObject { key } => (ProblemKind::Missing, Some(key)),
            Error::CorruptPart { key, what, .. } if *what == "plain" => {
                (ProblemKind::PlainHash, Some(key))
            }
            Error::CorruptPart { key, .. } => (ProblemKind::StoredHash, Some(key)),
            Error::DamagedPart { key, .. } => (ProblemKind::Undecodable, Some(key)),
            Error::NoMatchingIdentity { .. } | Error::NoIdentity => {
                (ProblemKind::NoMatchingIdentity, None)
            }
            Error::BadManifest { key, .. } | Error::UnreadableManifest { key, .. } => {
                (ProblemKind::Unreadable, Some(key))
            }
            Error::RecipientsChanged { .. } => (ProblemKind::Recipients, None),
            _ => (otherwise, None),
        };
        VerifyProblem {
            object: object.cloned(),
            kind,
            message: error.to_string(),
        }
    }

    /// Whether the message or the object contains `text`.
    pub fn contains(&self, text: &str) -> bool {
        self.message.contains(text) || self.object.as_deref().is_some_and(|o| o.contains(text))
    }
}

impl std::fmt::Display for VerifyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What one kind-specific step found: checks that passed and problems.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Findings {
    /// Checks that passed, in words.
    pub passed: Vec<String>,
    /// Problems.
    pub problems: Vec<VerifyProblem>,
}

impl Findings {
    /// Findings of checks that all passed.
    pub fn passed(lines: impl IntoIterator<Item = String>) -> Self {
        Findings {
            passed: lines.into_iter().collect(),
            problems: Vec::new(),
        }
    }

    /// Adds a problem.
    pub fn with_problem(mut self, problem: VerifyProblem) -> Self {
        self.problems.push(problem);
        self
    }

    /// Findings from a backend's check outcome in words: a problem naming one of the user
    /// checks `user_checks` (`check NAME...`) is a [`ProblemKind::FailedCheck`], any other
    /// is `otherwise`.
    pub fn from_words(
        passed: Vec<String>,
        problems: Vec<String>,
        user_checks: &[String],
        otherwise: ProblemKind,
    ) -> Self {
        let problems = problems
            .into_iter()
            .map(|p| {
                let check = user_checks.iter().find(|name| {
                    p.strip_prefix("check ")
                        .and_then(|rest| rest.strip_prefix(name.as_str()))
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', ' ']))
                });
                match check {
                    Some(name) => {
                        VerifyProblem::new(ProblemKind::FailedCheck, p.clone()).with_object(name)
                    }
                    None => VerifyProblem::new(otherwise, p),
                }
            })
            .collect();
        Findings { passed, problems }
    }
}

/// What a kind adds to the generic checks; [`verify_backup`] runs it in the one order every
/// kind shares.
///
/// # Contract
/// - Both steps are called only when every object matched its checksums and an identity
///   that decrypts the backup is loaded.
/// - Return `Err` only when the step could not run at all; what it found goes in
///   [`Findings`].
/// - The test restore reads every byte through the kind's own reader, so it must cover
///   what the structure check covers: at `restore` level the structure check is skipped
///   when a test restore exists.
/// - Never write outside a scratch location, and remove it whatever happened.
#[async_trait]
pub trait KindVerifier: Send + Sync {
    /// The kind's structure check on the decoded backup (runs at `checksums` level, and at
    /// `restore` level when there is no test restore); `None`: the kind has none.
    async fn check_structure(&self, backup: &BackupReader) -> Option<Result<Findings>> {
        let _ = backup;
        None
    }

    /// Whether this kind can restore a backup into a scratch target and check it.
    fn can_test_restore(&self) -> bool;

    /// The test restore into a scratch target with the kind's and the user's checks.
    ///
    /// # Errors
    /// When the test restore could not be done (recorded as a [`ProblemKind::TestRestore`]).
    async fn test_restore(&self, backup: &BackupReader) -> Result<Findings> {
        let _ = backup;
        Ok(Findings::default())
    }
}

/// A kind with no checks of its own: checksums only (restore-level verifies say that no
/// test restore exists for the kind).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChecksumsOnly;

#[async_trait]
impl KindVerifier for ChecksumsOnly {
    fn can_test_restore(&self) -> bool {
        false
    }
}

#[async_trait]
impl crate::traits::Verify for ChecksumsOnly {
    async fn verify(&self, backup: &BackupReader, level: VerifyLevel) -> Result<VerifyReport> {
        verify_backup(backup, level, self).await
    }
}

/// The one verification skeleton: the objects at `level` (up to checksums); then, when they
/// all matched and the backup can be decrypted, the kind's structure check (at `checksums`)
/// or test restore (at `restore`); then the time taken. The report says which level was
/// performed: a `restore` request on a kind without a test restore is performed at
/// `checksums`, with a note saying so.
///
/// # Errors
/// Only a store that fails while nothing can be checked; every finding is in the report.
pub async fn verify_backup(
    backup: &BackupReader,
    level: VerifyLevel,
    kind: &dyn KindVerifier,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let mut report = backup
        .verify_objects(level.min(VerifyLevel::Checksums))
        .await?;
    report.level_requested = level;
    if level >= VerifyLevel::Checksums && report.is_ok() {
        kind_steps(backup, level, kind, &mut report).await;
    }
    report.elapsed_ms = elapsed_ms(started);
    Ok(report)
}

async fn kind_steps(
    backup: &BackupReader,
    level: VerifyLevel,
    kind: &dyn KindVerifier,
    report: &mut VerifyReport,
) {
    let kind_name = backup.manifest().kind.clone();
    let restore = level == VerifyLevel::Restore && kind.can_test_restore();
    if level == VerifyLevel::Restore && !kind.can_test_restore() {
        report.notes.push(format!(
            "no test restore for kind {kind_name}: verified at checksums level"
        ));
    }
    if !backup.can_decrypt() {
        if level == VerifyLevel::Restore {
            report.problems.push(VerifyProblem::new(
                ProblemKind::NoMatchingIdentity,
                format!(
                    "a restore-level verify needs the secret key ({}); only the stored checksums were checked",
                    crate::error::LOAD_A_KEY
                ),
            ));
        }
        return;
    }
    if !restore {
        if let Some(found) = kind.check_structure(backup).await {
            report.add(found_or(found, ProblemKind::Structure));
        }
        return;
    }
    let started = Instant::now();
    let found = kind.test_restore(backup).await;
    report.test_restore_ms = Some(elapsed_ms(started));
    report.add(found_or(found, ProblemKind::TestRestore));
    report.level_performed = VerifyLevel::Restore;
}

/// The outcome of checking one part.
type PartCheck = std::result::Result<(), VerifyProblem>;

fn found_or(found: Result<Findings>, kind: ProblemKind) -> Findings {
    found.unwrap_or_else(|e| {
        let mut problem = VerifyProblem::from_error(&e, kind);
        if kind == ProblemKind::TestRestore && !problem.message.starts_with("test restore") {
            problem.message = format!("test restore failed: {}", problem.message);
        }
        Findings::default().with_problem(problem)
    })
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// How long a part's fetch and its check took.
struct Took {
    fetch: Duration,
    check: Duration,
}

impl BackupReader {
    /// Checks every object of the backup and reports each problem with the object's name.
    ///
    /// - `Quick`: every part and `SHA256SUMS` exist with the recorded size.
    /// - `Checksums` and `Restore`: every part is read and its stored SHA-256 compared (no key
    ///   needed); with an identity loaded, every part is also decrypted, decompressed and its
    ///   plain SHA-256 compared. The kind's steps are [`verify_backup`]'s.
    ///
    /// # Errors
    /// Never for a damaged backup (those are problems in the report); only for a store that
    /// fails while listing nothing can be checked.
    pub async fn verify_objects(&self, level: VerifyLevel) -> Result<VerifyReport> {
        let started = Instant::now();
        let level = level.min(VerifyLevel::Checksums);
        let parts: Vec<PartRecord> = self.manifest().parts().cloned().collect();
        let progress = self.start_checksums(parts.iter().map(|p| p.stored_size).sum());
        let (outcomes, sums) = futures::join!(
            self.check_parts(parts, level, &progress),
            self.check_sums_object()
        );
        let mut report = VerifyReport::new(self.id(), level);
        report.decoded = level >= VerifyLevel::Checksums && self.can_decrypt();
        for (size, outcome) in outcomes {
            report.checked_objects += 1;
            match outcome {
                Ok(()) if level >= VerifyLevel::Checksums => report.checked_bytes += size,
                Ok(()) => {}
                Err(problem) => report.problems.push(problem),
            }
        }
        if let Err(e) = sums {
            report.problems.push(e);
        }
        report.checked_objects += 1;
        self.end_checksums(&progress, report.problems.len());
        if report.problems.is_empty() {
            report.passed.push(format!(
                "{} objects {}",
                report.checked_objects,
                level_words(level, report.decoded)
            ));
        }
        if level >= VerifyLevel::Checksums && !report.decoded {
            report.notes.push(format!(
                "no identity loaded: stored checksums only (to decrypt and check every part: {})",
                crate::error::LOAD_A_KEY
            ));
        }
        report.elapsed_ms = elapsed_ms(started);
        Ok(report)
    }

    /// Checks `parts`, as many at once as the read-ahead depth says: the checkers' share,
    /// plus enough fetches to cover a far store's round trip (measured as it goes), within
    /// the read-ahead budget. At most `threads` parts are checked at once, as a restore
    /// decodes them.
    async fn check_parts(
        &self,
        parts: Vec<PartRecord>,
        level: VerifyLevel,
        progress: &ProgressHandle,
    ) -> Vec<(u64, PartCheck)> {
        let mut depth = self.depth();
        let checkers = tokio::sync::Semaphore::new(self.decoders());
        let mut parts = parts.into_iter().enumerate();
        let mut flight = FuturesUnordered::new();
        let mut outcomes = Vec::new();
        loop {
            while flight.len() < depth.parts() {
                let Some((index, part)) = parts.next() else {
                    break;
                };
                let checkers = &checkers;
                flight.push(async move {
                    let (checked, took) = self.check_part(&part, level, checkers).await;
                    (index, part.stored_size, checked, took)
                });
            }
            let Some((index, size, checked, took)) = flight.next().await else {
                break;
            };
            progress.advance(size);
            if let Some(took) = took {
                depth.fetched(took.fetch);
                depth.decoded(took.check);
            }
            outcomes.push((index, size, checked));
        }
        // In the manifest's order, whichever finished first.
        outcomes.sort_by_key(|(index, ..)| *index);
        outcomes
            .into_iter()
            .map(|(_, size, checked)| (size, checked))
            .collect()
    }

    /// Checks one part (its check waits for one of the `checkers`); also returns how long
    /// its fetch and its check took (when it was fetched).
    async fn check_part(
        &self,
        part: &PartRecord,
        level: VerifyLevel,
        checkers: &tokio::sync::Semaphore,
    ) -> (PartCheck, Option<Took>) {
        let fetching = Instant::now();
        let fetched = self.fetch_part(part, level).await;
        let fetch = fetching.elapsed();
        match fetched {
            Err(problem) => (Err(problem), None),
            Ok(None) => (
                Ok(()),
                Some(Took {
                    fetch,
                    check: Duration::ZERO,
                }),
            ),
            Ok(Some((key, stored))) => {
                let _checker = checkers.acquire().await.ok();
                let checking = Instant::now();
                let checked = self.check_stored(key, part, stored).await;
                let check = checking.elapsed();
                (checked, Some(Took { fetch, check }))
            }
        }
    }

    /// The part's stored bytes (`None` at the quick level, which only checks their size).
    async fn fetch_part(
        &self,
        part: &PartRecord,
        level: VerifyLevel,
    ) -> std::result::Result<Option<(String, bytes::Bytes)>, VerifyProblem> {
        let (store, dir) = self.location();
        let path = dir.clone().join(part.object.as_str());
        let key = path.to_string();
        if level == VerifyLevel::Quick {
            let meta = store.head(&path).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => missing(&key),
                other => VerifyProblem::from_error(
                    &Error::store(format!("checking {path}"), other),
                    ProblemKind::Unreadable,
                )
                .with_object(&key),
            })?;
            return check_size(&key, meta.size, part.stored_size).map(|()| None);
        }
        let stored = get_object(store.as_ref(), &path).await.map_err(|e| {
            VerifyProblem::from_error(&e, ProblemKind::Unreadable).with_object(&key)
        })?;
        check_size(&key, stored.len() as u64, part.stored_size)?;
        Ok(Some((key, stored)))
    }

    /// Compares the stored and (with a key) the plain SHA-256 of a fetched part.
    async fn check_stored(
        &self,
        key: String,
        part: &PartRecord,
        stored: bytes::Bytes,
    ) -> PartCheck {
        let reader = self.clone();
        let part = part.clone();
        tokio::task::spawn_blocking(move || {
            let actual = sha256_hex(&stored);
            if actual != part.stored_sha256 {
                let e = Error::CorruptPart {
                    key: key.clone(),
                    what: "stored",
                    expected: part.stored_sha256.clone(),
                    actual,
                };
                return Err(VerifyProblem::from_error(&e, ProblemKind::StoredHash));
            }
            if reader.can_decrypt() {
                reader
                    .decode_stored(&key, &part, &stored)
                    .map_err(|e| VerifyProblem::from_error(&e, ProblemKind::Undecodable))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| VerifyProblem::new(ProblemKind::Other, format!("check task failed: {e}")))?
    }

    async fn check_sums_object(&self) -> std::result::Result<(), VerifyProblem> {
        let (store, dir) = self.location();
        let path = dir.clone().join("SHA256SUMS");
        let key = path.to_string();
        let sums = get_object(store.as_ref(), &path).await.map_err(|e| {
            VerifyProblem::from_error(&e, ProblemKind::Unreadable).with_object(&key)
        })?;
        if sums.as_ref() != self.manifest().sha256sums().as_bytes() {
            let e = Error::DamagedPart {
                key: key.clone(),
                detail: "it differs from the checksums in the manifest".into(),
            };
            return Err(VerifyProblem::new(ProblemKind::StoredHash, e.to_string()).with_object(key));
        }
        Ok(())
    }

    /// Reads every artifact through the full decode path (decrypt, decompress, plain hash),
    /// discarding the bytes; the strongest check short of a restore.
    ///
    /// # Errors
    /// The first decoding or checksum error.
    pub async fn decode_all(&self) -> Result<u64> {
        let mut total = 0;
        for artifact in &self.manifest().artifacts {
            total += self
                .copy_artifact(&artifact.name, &mut tokio::io::sink())
                .await?;
        }
        Ok(total)
    }
}

fn missing(key: &str) -> VerifyProblem {
    let e = Error::MissingObject {
        key: key.to_owned(),
    };
    VerifyProblem::from_error(&e, ProblemKind::Missing)
}

fn check_size(key: &str, actual: u64, expected: u64) -> std::result::Result<(), VerifyProblem> {
    if actual == expected {
        return Ok(());
    }
    let e = Error::DamagedPart {
        key: key.to_owned(),
        detail: format!(
            "it is {actual} bytes, the manifest expects {expected} (truncated or replaced)"
        ),
    };
    Err(VerifyProblem::new(ProblemKind::Size, e.to_string()).with_object(key))
}

fn level_words(level: VerifyLevel, decoded: bool) -> &'static str {
    match (level, decoded) {
        (VerifyLevel::Quick, _) => "present with the recorded sizes",
        (_, false) => "match their stored SHA-256 (no identity: not decrypted)",
        (_, true) => "match their stored and plain SHA-256",
    }
}

impl crate::Repository {
    /// Checks the objects of every backup `manifest` depends on, transitively (incremental
    /// parents), at `level` up to checksums: a backup is only as good as its base. Returns the
    /// problems, each of kind [`ProblemKind::Dependency`] naming the base backup and its
    /// object; a base that is gone or has an unreadable manifest is a problem too.
    ///
    /// # Errors
    /// Only store failures that prevent checking anything.
    pub async fn verify_dependencies(
        &self,
        manifest: &crate::Manifest,
        level: VerifyLevel,
    ) -> Result<Vec<VerifyProblem>> {
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut pending: Vec<String> = manifest.depends_on.clone();
        while let Some(id) = pending.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let needed = |message: String| {
                VerifyProblem::new(
                    ProblemKind::Dependency,
                    format!("base backup {id} this backup needs: {message}"),
                )
            };
            let selector = crate::BackupSelector::Id(id.clone());
            let base = match self.find(&manifest.source, &selector).await {
                Ok(base) => base,
                Err(e) => {
                    problems.push(needed(e.to_string()).with_object(&id));
                    continue;
                }
            };
            pending.extend(base.depends_on.iter().cloned());
            let report = self.reader(base).verify_objects(level).await?;
            problems.extend(report.problems.into_iter().map(|p| VerifyProblem {
                object: p.object.or_else(|| Some(id.clone())),
                ..needed(p.message)
            }));
        }
        Ok(problems)
    }

    /// Fails before anything is changed when no loaded identity is a recipient of the
    /// backup `manifest` was encrypted to (a restore would stop at its first part, after
    /// its hooks had stopped the service).
    ///
    /// # Errors
    /// [`Error::NoIdentity`] without identities; [`Error::NoMatchingIdentity`] naming the
    /// backup's recipients.
    pub fn check_identities_for(&self, manifest: &crate::Manifest) -> Result<()> {
        let loaded = self.identities();
        if loaded.is_empty() {
            return Err(Error::NoIdentity);
        }
        let mine: std::collections::HashSet<String> =
            loaded.to_recipients().to_strings().into_iter().collect();
        let theirs = &manifest.recipients;
        if theirs.is_empty() || theirs.iter().any(|r| mine.contains(r)) {
            return Ok(());
        }
        Err(Error::NoMatchingIdentity {
            recipients: theirs.join(", "),
        })
    }

    /// Fails fast when identities are loaded but none of them is a recipient of the
    /// repository: every decrypting check would fail, one object at a time.
    ///
    /// # Errors
    /// [`Error::NoMatchingIdentity`] naming the repository's recipients.
    pub fn check_identities(&self) -> Result<()> {
        let loaded = self.identities();
        if loaded.is_empty() {
            return Ok(());
        }
        let mine: std::collections::HashSet<String> =
            loaded.to_recipients().to_strings().into_iter().collect();
        let theirs = &self.config().recipients;
        if theirs.is_empty() || theirs.iter().any(|r| mine.contains(r)) {
            return Ok(());
        }
        Err(Error::NoMatchingIdentity {
            recipients: theirs.join(", "),
        })
    }
}
