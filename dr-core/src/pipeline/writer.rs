//! The write half: [`BackupWriter`] hands out [`ArtifactWriter`]s, async writers that cut the
//! stream into parts and encode and upload several at once.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::BufMut;
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::PipelineOptions;
use super::codec::encode_part;
use crate::error::{Error, Result};
use crate::keys::Recipients;
use crate::manifest::{ArtifactRecord, PartRecord, check_name};
use crate::progress::ProgressHandle;

/// What every part upload of one backup shares.
pub(crate) struct WriteContext {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// `backups/<source>/<id>` inside the repository.
    pub(crate) dir: Path,
    pub(crate) recipients: Recipients,
    pub(crate) options: PipelineOptions,
    pub(crate) progress: ProgressHandle,
    /// Limits CPU-bound encodes to `options.threads` over all artifacts of the backup.
    encode_slots: Arc<Semaphore>,
    /// Part buffers returned after encoding, reused instead of fresh allocations (fewer page
    /// faults, no allocator fragmentation growing the peak memory).
    spare_buffers: Mutex<Vec<Vec<u8>>>,
}

impl WriteContext {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        dir: Path,
        recipients: Recipients,
        options: PipelineOptions,
        progress: ProgressHandle,
    ) -> Self {
        let encode_slots = Arc::new(Semaphore::new(options.threads.max(1)));
        WriteContext {
            store,
            dir,
            recipients,
            options,
            progress,
            encode_slots,
            spare_buffers: Mutex::default(),
        }
    }

    fn take_buffer(&self) -> Vec<u8> {
        lock(&self.spare_buffers)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.options.part_size))
    }

    fn return_buffer(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        let mut spare = lock(&self.spare_buffers);
        if spare.len() <= self.options.threads {
            spare.push(buffer);
        }
    }
}

#[derive(Default)]
struct Registry {
    opened: Vec<String>,
    finished: Vec<ArtifactRecord>,
    /// Part uploads of artifacts dropped unfinished: awaited (not aborted, since an aborted
    /// task can still land its object later) before a failed backup is cleaned up.
    abandoned: Vec<JoinHandle<Result<PartRecord>>>,
}

/// Given to [`crate::Backup::backup`]: opens the artifacts of one backup.
pub struct BackupWriter {
    ctx: Arc<WriteContext>,
    registry: Arc<Mutex<Registry>>,
    id: String,
    source: String,
}

impl BackupWriter {
    /// Where this backup reports progress: a backend reports its own phases here (a
    /// snapshot copy, a scan), narrowed to an artifact name.
    pub fn progress(&self) -> &ProgressHandle {
        &self.ctx.progress
    }

    pub(crate) fn new(ctx: Arc<WriteContext>, id: String, source: String) -> Self {
        BackupWriter {
            ctx,
            registry: Arc::default(),
            id,
            source,
        }
    }

    /// The id of the backup being written.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The source name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The pipeline settings in force (part size, level, threads).
    pub fn options(&self) -> &PipelineOptions {
        &self.ctx.options
    }

    /// Opens a new artifact. Write to it, then call [`ArtifactWriter::finish`]; an artifact
    /// that is not finished makes the whole backup fail.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad or repeated name.
    pub fn artifact(&mut self, name: &str) -> Result<ArtifactWriter> {
        check_name("artifact name", name)?;
        let mut registry = lock(&self.registry);
        if registry.opened.iter().any(|n| n == name) {
            return Err(Error::Usage(format!(
                "artifact {name} opened twice in one backup"
            )));
        }
        registry.opened.push(name.to_owned());
        let progress = self.ctx.progress.narrowed(|s| s.with_artifact(name));
        progress.start("write", None);
        Ok(ArtifactWriter::new(
            self.ctx.clone(),
            self.registry.clone(),
            name.to_owned(),
            progress,
        ))
    }

    /// Copies `reader` to its end into a new artifact and finishes it.
    ///
    /// # Errors
    /// The reader's error (as [`Error::Backend`]) or any pipeline error.
    pub async fn put_artifact<R>(&mut self, name: &str, reader: &mut R) -> Result<ArtifactRecord>
    where
        R: AsyncRead + Unpin + Send + ?Sized,
    {
        let mut writer = self.artifact(name)?;
        if let Err(e) = writer.fill_from(reader).await {
            let error = writer
                .failure
                .take()
                .unwrap_or_else(|| match Error::from_io("copy", e) {
                    Error::Io { source, .. } => {
                        let retryable = matches!(
                            source.kind(),
                            std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
                        );
                        Error::backend("source", format!("reading {name}"), source.to_string())
                            .retryable_if(retryable)
                            .caused_by(source)
                    }
                    other => other,
                });
            writer.report_end(Some(&error));
            return Err(error);
        }
        writer.finish().await
    }

    /// Waits for the part uploads of artifacts that were dropped unfinished, so that nothing
    /// lands in the store after a failed backup was cleaned up.
    pub(crate) async fn settle(&self) {
        let abandoned = std::mem::take(&mut lock(&self.registry).abandoned);
        for task in abandoned {
            let _ = task.await;
        }
    }

    /// The finished artifacts in the order they were opened.
    ///
    /// # Errors
    /// [`Error::Usage`] when an artifact was opened but not finished.
    pub(crate) fn into_artifacts(self) -> Result<Vec<ArtifactRecord>> {
        let mut registry = lock(&self.registry);
        let mut records = Vec::with_capacity(registry.opened.len());
        for name in std::mem::take(&mut registry.opened) {
            let position = registry.finished.iter().position(|r| r.name == name);
            let record = position
                .map(|i| registry.finished.swap_remove(i))
                .ok_or_else(|| {
                    Error::Usage(format!("artifact {name} was opened but never finished"))
                })?;
            records.push(record);
        }
        Ok(records)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An async writer into the pipeline for one artifact. Call [`ArtifactWriter::finish`] at the
/// end: `shutdown` alone does not commit the artifact. Dropping it unfinished fails the
/// backup (its pending uploads are awaited and then removed).
pub struct ArtifactWriter {
    ctx: Arc<WriteContext>,
    registry: Arc<Mutex<Registry>>,
    name: String,
    buf: Vec<u8>,
    next_index: u32,
    inflight: VecDeque<JoinHandle<Result<PartRecord>>>,
    done: Vec<PartRecord>,
    failure: Option<Error>,
    failed: bool,
    /// This artifact's progress (scope narrowed to it).
    progress: ProgressHandle,
    /// `Finished` or `Failed` was sent.
    reported: bool,
}

impl ArtifactWriter {
    fn new(
        ctx: Arc<WriteContext>,
        registry: Arc<Mutex<Registry>>,
        name: String,
        progress: ProgressHandle,
    ) -> Self {
        let buf = Vec::with_capacity(ctx.options.part_size);
        ArtifactWriter {
            ctx,
            registry,
            name,
            buf,
            next_index: 0,
            inflight: VecDeque::new(),
            done: Vec::new(),
            failure: None,
            failed: false,
            progress,
            reported: false,
        }
    }

    /// Sends this artifact's `Finished` (no error) or `Failed`, once.
    fn report_end(&mut self, error: Option<&Error>) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        match error {
            None => self.progress.finish(),
            Some(e) => self.progress.fail(e.to_string()),
        }
    }

    /// Where this artifact reports progress (scope narrowed to the artifact).
    pub fn progress(&self) -> &ProgressHandle {
        &self.progress
    }

    /// Reads `reader` to its end straight into part buffers (no intermediate copy).
    ///
    /// # Errors
    /// The reader's `io::Error`, or one carrying the pipeline's error.
    pub async fn fill_from<R>(&mut self, reader: &mut R) -> std::io::Result<u64>
    where
        R: AsyncRead + Unpin + Send + ?Sized,
    {
        let mut total = 0u64;
        loop {
            if self.buf.len() >= self.ctx.options.part_size {
                poll_fn(|cx| self.poll_dispatch(cx)).await?;
            }
            let room = self.ctx.options.part_size - self.buf.len();
            let n = reader.read_buf(&mut (&mut self.buf).limit(room)).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    }

    /// Uploads what is buffered, waits for every part and records the artifact.
    ///
    /// # Errors
    /// The first error of any part (encoding or upload).
    pub async fn finish(mut self) -> Result<ArtifactRecord> {
        let outcome = self.complete().await;
        self.report_end(outcome.as_ref().err());
        outcome
    }

    async fn complete(&mut self) -> Result<ArtifactRecord> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        if !self.buf.is_empty() || self.next_index == 0 {
            poll_fn(|cx| self.poll_dispatch(cx))
                .await
                .map_err(|e| self.take_failure(e))?;
        }
        while !self.inflight.is_empty() {
            poll_fn(|cx| self.poll_oldest(cx))
                .await
                .map_err(|e| self.take_failure(e))?;
        }
        let record = self.record();
        lock(&self.registry).finished.push(record.clone());
        Ok(record)
    }

    fn take_failure(&mut self, io: std::io::Error) -> Error {
        self.failure
            .take()
            .unwrap_or_else(|| Error::from_io("writing artifact", io))
    }

    fn record(&mut self) -> ArtifactRecord {
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.index);
        ArtifactRecord {
            name: self.name.clone(),
            plain_size: parts.iter().map(|p| p.plain_size).sum(),
            stored_size: parts.iter().map(|p| p.stored_size).sum(),
            parts,
        }
    }

    /// Starts encoding and uploading the buffered part, waiting first while too many parts
    /// are in flight.
    fn poll_dispatch(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let max_inflight = self.ctx.options.threads + 1;
        while self.inflight.len() >= max_inflight {
            ready!(self.poll_oldest(cx))?;
        }
        let plain = std::mem::replace(&mut self.buf, self.ctx.take_buffer());
        let task = encode_and_upload(
            self.ctx.clone(),
            self.progress.clone(),
            self.name.clone(),
            self.next_index,
            plain,
        );
        self.inflight.push_back(tokio::spawn(task));
        self.next_index += 1;
        Poll::Ready(Ok(()))
    }

    fn poll_oldest(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(oldest) = self.inflight.front_mut() else {
            return Poll::Ready(Ok(()));
        };
        let outcome = ready!(Pin::new(oldest).poll(cx));
        self.inflight.pop_front();
        let result =
            outcome.unwrap_or_else(|join| Err(Error::Usage(format!("part task failed: {join}"))));
        Poll::Ready(match result {
            Ok(part) => {
                self.done.push(part);
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        })
    }

    /// Remembers the first error (returned typed by `finish`) and gives the caller an
    /// `io::Error` carrying its message.
    fn fail(&mut self, error: Error) -> std::io::Error {
        self.failed = true;
        let io = std::io::Error::other(error.to_string());
        self.failure.get_or_insert(error);
        io
    }
}

impl AsyncWrite for ArtifactWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(Err(std::io::Error::other(format!(
                "artifact {} failed earlier",
                this.name
            ))));
        }
        if this.buf.len() >= this.ctx.options.part_size {
            ready!(this.poll_dispatch(cx))?;
        }
        let n = data.len().min(this.ctx.options.part_size - this.buf.len());
        this.buf.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        let pending = std::mem::take(&mut self.inflight);
        lock(&self.registry).abandoned.extend(pending);
        if !self.reported {
            let error = self.failure.take().unwrap_or_else(|| {
                Error::Usage(format!("artifact {} was dropped unfinished", self.name))
            });
            self.report_end(Some(&error));
        }
    }
}

async fn encode_and_upload(
    ctx: Arc<WriteContext>,
    progress: ProgressHandle,
    name: String,
    index: u32,
    plain: Vec<u8>,
) -> Result<PartRecord> {
    let permit = ctx
        .encode_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::Usage("encoder pool closed".into()))?;
    let plain_size = plain.len() as u64;
    let encoder = ctx.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let encoded = encode_part(&plain, &encoder.recipients, encoder.options.zstd_level);
        encoder.return_buffer(plain);
        drop(permit);
        encoded
    })
    .await
    .map_err(|e| Error::Usage(format!("encoder task failed: {e}")))??;
    let object = format!("{name}.{index:06}.zst.age");
    let path = ctx.dir.clone().join(object.as_str());
    let stored_size = encoded.stored.len() as u64;
    crate::store::create_object(ctx.store.as_ref(), &path, encoded.stored).await?;
    progress.advance(plain_size);
    Ok(PartRecord {
        index,
        object,
        plain_size,
        plain_sha256: encoded.plain_sha256,
        stored_size,
        stored_sha256: encoded.stored_sha256,
    })
}
