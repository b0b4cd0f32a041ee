//! The read half: [`BackupReader`] opens [`ArtifactReader`]s, async readers that fetch and
//! decode several parts at once and hand them out in order, each only after it checked.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::codec::{ExpectedPart, decode_part};
use super::read_ahead::Depth;
use crate::error::{Error, Result};
use crate::keys::Identities;
use crate::manifest::{ArtifactRecord, Manifest, PartRecord};
use crate::progress::ProgressHandle;
use crate::store::get_object;

/// One committed backup opened for reading. Given to [`crate::Restore`] and [`crate::Verify`].
#[derive(Clone)]
pub struct BackupReader {
    shared: Arc<ReadShared>,
}

struct ReadShared {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    manifest: Manifest,
    identities: Identities,
    threads: usize,
    read_ahead_bytes: u64,
    progress: ProgressHandle,
}

impl BackupReader {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        dir: Path,
        manifest: Manifest,
        identities: Identities,
        (threads, read_ahead_bytes): (usize, u64),
    ) -> Self {
        let shared = ReadShared {
            store,
            dir,
            manifest,
            identities,
            threads: threads.max(1),
            read_ahead_bytes,
            progress: ProgressHandle::default(),
        };
        BackupReader {
            shared: Arc::new(shared),
        }
    }

    /// Returns a reader that reports progress to `progress` (each artifact narrows the
    /// handle's scope to the backup and the artifact).
    pub fn with_progress(&self, progress: ProgressHandle) -> Self {
        self.rebuilt(self.shared.threads, self.shared.read_ahead_bytes, progress)
    }

    /// Returns a reader that decodes at most `decoders` parts of an artifact at once and
    /// fetches at most `bytes` ahead (at least what the decoders need): for a small stream
    /// read beside a large one, such as a file index beside its tar, so the two do not hold
    /// twice the parts.
    pub fn with_read_ahead(&self, decoders: usize, bytes: u64) -> Self {
        self.rebuilt(decoders.max(1), bytes, self.shared.progress.clone())
    }

    fn rebuilt(&self, threads: usize, read_ahead_bytes: u64, progress: ProgressHandle) -> Self {
        let s = &self.shared;
        let shared = ReadShared {
            store: s.store.clone(),
            dir: s.dir.clone(),
            manifest: s.manifest.clone(),
            identities: s.identities.clone(),
            threads,
            read_ahead_bytes,
            progress,
        };
        BackupReader {
            shared: Arc::new(shared),
        }
    }

    /// Starts the checksum phase of a verification (`verify_objects`): a handle scoped to
    /// this backup, `Started { phase: "checksums", total_bytes }` already sent; the caller
    /// advances it per part and ends it with [`BackupReader::end_checksums`].
    pub fn start_checksums(&self, total_stored_bytes: u64) -> ProgressHandle {
        let progress = self.shared.progress.clone();
        progress.start("checksums", Some(total_stored_bytes));
        progress
    }

    /// Ends the checksum phase: `Finished` without problems, else `Failed` naming how many.
    pub fn end_checksums(&self, progress: &ProgressHandle, problems: usize) {
        match problems {
            0 => progress.finish(),
            n => progress.fail(format!("{n} damaged or missing objects")),
        }
    }

    /// Where reads of this backup report progress (a restorer reports its own phases here).
    pub fn progress(&self) -> &ProgressHandle {
        &self.shared.progress
    }

    /// A read-ahead depth for this backup's parts: `threads` checked at once and at most the
    /// read-ahead budget fetched ahead (for readers other than [`ArtifactReader`], such as
    /// verification).
    pub(crate) fn depth(&self) -> Depth {
        let largest = self.manifest().parts().map(|p| p.stored_size).max();
        let threads = self.shared.threads;
        Depth::new(threads, self.shared.read_ahead_bytes, largest.unwrap_or(1))
    }

    /// How many parts are decoded (or checked) at once.
    pub(crate) fn decoders(&self) -> usize {
        self.shared.threads.max(1)
    }

    /// The backup's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.shared.manifest
    }

    /// The backup's id.
    pub fn id(&self) -> &str {
        &self.shared.manifest.id
    }

    /// The store and the backup's directory in it (for generic checks).
    pub fn location(&self) -> (&Arc<dyn ObjectStore>, &Path) {
        (&self.shared.store, &self.shared.dir)
    }

    /// Whether an identity is loaded, so that artifacts can be decrypted.
    pub fn can_decrypt(&self) -> bool {
        !self.shared.identities.is_empty()
    }

    /// Decodes one stored part of this backup and checks it against the manifest.
    pub(crate) fn decode_stored(
        &self,
        key: &str,
        part: &PartRecord,
        stored: &[u8],
    ) -> Result<Vec<u8>> {
        let expected = ExpectedPart {
            key,
            plain_size: part.plain_size,
            plain_sha256: &part.plain_sha256,
            stored_sha256: &part.stored_sha256,
            recipients: &self.shared.manifest.recipients,
        };
        decode_part(stored, &self.shared.identities, expected)
    }

    /// Opens an artifact as an async reader of its plain bytes.
    ///
    /// # Errors
    /// [`Error::NoSuchArtifact`], [`Error::NoIdentity`], or [`Error::BadManifest`] when the
    /// parts are not numbered 0..n. Errors while reading come as `io::Error`s carrying a dr
    /// [`Error`]; [`Error::from_io`] recovers it.
    pub fn artifact(&self, name: &str) -> Result<ArtifactReader> {
        let artifact = self.shared.manifest.artifact(name)?.clone();
        if self.shared.identities.is_empty() {
            return Err(Error::NoIdentity);
        }
        check_part_numbers(&self.shared.manifest, &artifact)?;
        let progress = self.shared.progress.narrowed(|s| s.with_artifact(name));
        progress.start("read", Some(artifact.plain_size));
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(produce_parts(
            self.shared.clone(),
            progress,
            artifact.parts,
            tx,
        ));
        Ok(ArtifactReader {
            rx,
            current: Bytes::new(),
            ended: false,
            task,
        })
    }

    /// Copies a whole artifact into `out`; returns the plain bytes written.
    ///
    /// # Errors
    /// Any read error (typed) or [`Error::Io`] from `out`.
    pub async fn copy_artifact<W>(&self, name: &str, out: &mut W) -> Result<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut reader = self.artifact(name)?;
        let mut written = 0u64;
        while let Some(chunk) = reader.next_chunk().await? {
            tokio::io::AsyncWriteExt::write_all(out, &chunk)
                .await
                .map_err(|e| Error::io(format!("writing restored {name}"), e))?;
            written += chunk.len() as u64;
        }
        tokio::io::AsyncWriteExt::flush(out)
            .await
            .map_err(|e| Error::io(format!("writing restored {name}"), e))?;
        Ok(written)
    }
}

fn check_part_numbers(manifest: &Manifest, artifact: &ArtifactRecord) -> Result<()> {
    let in_order = artifact
        .parts
        .iter()
        .enumerate()
        .all(|(i, p)| p.index as usize == i);
    let sized = artifact.parts.iter().map(|p| p.plain_size).sum::<u64>() == artifact.plain_size;
    if in_order && sized && !artifact.parts.is_empty() {
        return Ok(());
    }
    Err(Error::BadManifest {
        key: format!("{}/{}", manifest.source, manifest.id),
        detail: format!(
            "artifact {} has missing, misnumbered or missized parts",
            artifact.name
        ),
    })
}

enum Message {
    Data(Bytes),
    Failed(Error),
    End,
}

/// Parts in flight: fetches (in order) and the decodes started from them.
struct InFlight {
    fetching: VecDeque<JoinHandle<Result<Fetched>>>,
    /// Decoded bytes, and how long decoding them took.
    decoding: VecDeque<JoinHandle<Result<(Bytes, Duration)>>>,
}

impl InFlight {
    fn len(&self) -> usize {
        self.fetching.len() + self.decoding.len()
    }

    fn abort(&self) {
        self.fetching.iter().for_each(JoinHandle::abort);
        self.decoding.iter().for_each(JoinHandle::abort);
    }
}

/// A part's stored bytes, and how long the store took to give them.
struct Fetched {
    part: PartRecord,
    path: Path,
    stored: Bytes,
    took: std::time::Duration,
}

/// Fetches parts ahead (as many as [`Depth`] says: the decoders' share, plus enough to cover
/// the store's measured round trip, within the read-ahead budget), decodes up to `threads`
/// at once, sends them in order; reports each checked part as it is sent, then `Finished`
/// after the last or `Failed` at the first error (nothing after it).
async fn produce_parts(
    shared: Arc<ReadShared>,
    progress: ProgressHandle,
    parts: Vec<PartRecord>,
    tx: mpsc::Sender<Message>,
) {
    let largest = parts.iter().map(|p| p.stored_size).max().unwrap_or(1);
    let mut depth = Depth::new(shared.threads, shared.read_ahead_bytes, largest);
    let mut flight = InFlight {
        fetching: VecDeque::new(),
        decoding: VecDeque::new(),
    };
    let mut parts = parts.into_iter();
    loop {
        while flight.len() < depth.parts() {
            let Some(part) = parts.next() else { break };
            flight
                .fetching
                .push_back(tokio::spawn(fetch(shared.clone(), part)));
        }
        let message = match start_decodes(&shared, &mut flight, &mut depth).await {
            Err(e) => Message::Failed(e),
            Ok(()) => match flight.decoding.pop_front() {
                None => break,
                Some(next) => match joined(next.await) {
                    Ok((bytes, took)) => {
                        // Counted here, in order: no part task can advance after `Failed`.
                        progress.advance(bytes.len() as u64);
                        depth.decoded(took);
                        Message::Data(bytes)
                    }
                    Err(e) => Message::Failed(e),
                },
            },
        };
        let failed = matches!(message, Message::Failed(_));
        if let Message::Failed(e) = &message {
            progress.fail(e.to_string());
        }
        if tx.send(message).await.is_err() || failed {
            flight.abort();
            return;
        }
    }
    progress.finish();
    let _ = tx.send(Message::End).await;
}

/// Starts decoding fetched parts, in order, while a decoder is free: a fetch still running
/// is waited for only when nothing is being decoded (a decoded part is never held back for
/// a later fetch).
async fn start_decodes(
    shared: &Arc<ReadShared>,
    flight: &mut InFlight,
    depth: &mut Depth,
) -> Result<()> {
    while flight.decoding.len() < shared.threads {
        let ready = flight
            .fetching
            .front()
            .is_some_and(|f| f.is_finished() || flight.decoding.is_empty());
        if !ready {
            break;
        }
        let Some(next) = flight.fetching.pop_front() else {
            break;
        };
        let fetched = joined(next.await)?;
        depth.fetched(fetched.took);
        let reader = BackupReader {
            shared: shared.clone(),
        };
        flight
            .decoding
            .push_back(tokio::task::spawn_blocking(move || {
                let Fetched {
                    part, path, stored, ..
                } = fetched;
                let started = Instant::now();
                reader
                    .decode_stored(path.as_ref(), &part, &stored)
                    .map(|plain| (Bytes::from(plain), started.elapsed()))
            }));
    }
    Ok(())
}

fn joined<T>(result: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    result.map_err(|e| Error::Usage(format!("part task failed: {e}")))?
}

async fn fetch(shared: Arc<ReadShared>, part: PartRecord) -> Result<Fetched> {
    let started = Instant::now();
    let path = shared.dir.clone().join(part.object.as_str());
    let stored = get_object(shared.store.as_ref(), &path).await?;
    if stored.len() as u64 != part.stored_size {
        return Err(Error::DamagedPart {
            key: path.to_string(),
            detail: format!(
                "it is {} bytes, the manifest expects {} (truncated or replaced)",
                stored.len(),
                part.stored_size
            ),
        });
    }
    Ok(Fetched {
        part,
        path,
        stored,
        took: started.elapsed(),
    })
}

/// An async reader of one artifact's plain bytes. A part's bytes are only returned after its
/// SHA-256 matched the manifest; EOF is only returned after the last part matched.
pub struct ArtifactReader {
    rx: mpsc::Receiver<Message>,
    current: Bytes,
    ended: bool,
    task: JoinHandle<()>,
}

impl ArtifactReader {
    /// The next checked chunk (one part's bytes), or `None` at the verified end.
    ///
    /// # Errors
    /// The typed error of the first part that failed.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if !self.current.is_empty() {
            return Ok(Some(std::mem::take(&mut self.current)));
        }
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
        if self.ended {
            return Poll::Ready(Ok(None));
        }
        Poll::Ready(match ready!(self.rx.poll_recv(cx)) {
            Some(Message::Data(bytes)) => Ok(Some(bytes)),
            Some(Message::End) => {
                self.ended = true;
                Ok(None)
            }
            Some(Message::Failed(e)) => Err(e),
            None => Err(Error::Usage(
                "the part reader stopped before the artifact was complete".into(),
            )),
        })
    }
}

impl AsyncRead for ArtifactReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        while this.current.is_empty() {
            match ready!(this.poll_chunk(cx)) {
                Ok(Some(bytes)) => this.current = bytes,
                Ok(None) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e.into_io())),
            }
        }
        let n = this.current.len().min(buf.remaining());
        buf.put_slice(&this.current.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl Drop for ArtifactReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}
