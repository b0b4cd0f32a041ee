//! The file index one entry at a time: written into the `index.json` artifact as the tar is
//! written, and read back as a stream parsed on its own thread, so neither a backup nor a
//! restore holds a million entries at once. The JSON is the same document
//! [`super::FileIndex`] describes (`root` before `entries` when streamed).

use std::io::{BufWriter, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc::{Receiver, Sender, channel};

use dr_core::{ArtifactWriter, BackupReader, Error, Result};
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tokio_util::io::SyncIoBridge;

use super::backup::INDEX_ARTIFACT;
use super::index::FileEntry;

/// Stored bytes of an index fetched ahead of its parser.
const INDEX_READ_AHEAD: u64 = 32 << 20;

/// Entries parsed ahead of the reader.
const AHEAD: usize = 4096;

/// What the parser says when the reader stopped listening (not a failure).
const STOPPED: &str = "the reader of the index stopped";

/// Writes an index document entry by entry into an artifact (from a blocking thread).
pub(crate) struct IndexWriter {
    out: BufWriter<SyncIoBridge<ArtifactWriter>>,
    first: bool,
}

impl IndexWriter {
    /// Starts the document: the version and the root's own entry, then the entries.
    ///
    /// # Errors
    /// The pipeline's errors.
    pub(crate) fn start(out: SyncIoBridge<ArtifactWriter>, root: &FileEntry) -> Result<Self> {
        let mut writer = IndexWriter {
            out: BufWriter::with_capacity(1 << 20, out),
            first: true,
        };
        writer.write_raw(b"{\"version\":1,\"root\":")?;
        serde_json::to_writer(&mut writer.out, root).map_err(json_error)?;
        writer.write_raw(b",\"entries\":[")?;
        Ok(writer)
    }

    /// Adds one entry.
    ///
    /// # Errors
    /// The pipeline's errors.
    pub(crate) fn push(&mut self, entry: &FileEntry) -> Result<()> {
        if !std::mem::take(&mut self.first) {
            self.write_raw(b",")?;
        }
        serde_json::to_writer(&mut self.out, entry).map_err(json_error)
    }

    /// Ends the document; returns the artifact to finish.
    ///
    /// # Errors
    /// The pipeline's errors.
    pub(crate) fn end(mut self) -> Result<ArtifactWriter> {
        self.write_raw(b"]}")?;
        let bridge = self
            .out
            .into_inner()
            .map_err(|e| Error::from_io("writing the index", e.into_error()))?;
        Ok(bridge.into_inner())
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::from_io("writing the index", e))
    }
}

/// Writes an index document entry by entry into an artifact from async code (bucket
/// backups: no root, the vanished keys at the end).
pub(crate) struct AsyncIndexWriter {
    out: ArtifactWriter,
    buf: Vec<u8>,
    first: bool,
}

impl AsyncIndexWriter {
    /// Starts the document.
    pub(crate) fn start(out: ArtifactWriter) -> Self {
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(b"{\"version\":1,\"entries\":[");
        AsyncIndexWriter {
            out,
            buf,
            first: true,
        }
    }

    /// Adds one entry.
    ///
    /// # Errors
    /// The pipeline's errors.
    pub(crate) async fn push(&mut self, entry: &FileEntry) -> Result<()> {
        if !std::mem::take(&mut self.first) {
            self.buf.push(b',');
        }
        serde_json::to_writer(&mut self.buf, entry).map_err(json_error)?;
        if self.buf.len() >= 1 << 20 {
            self.flush().await?;
        }
        Ok(())
    }

    /// Ends the document with the keys that vanished; returns the artifact to finish.
    ///
    /// # Errors
    /// The pipeline's errors.
    pub(crate) async fn end(mut self, vanished: &[String]) -> Result<ArtifactWriter> {
        self.buf.extend_from_slice(b"]");
        if !vanished.is_empty() {
            self.buf.extend_from_slice(b",\"vanished\":");
            serde_json::to_writer(&mut self.buf, vanished).map_err(json_error)?;
        }
        self.buf.extend_from_slice(b"}");
        self.flush().await?;
        Ok(self.out)
    }

    async fn flush(&mut self) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        self.out
            .write_all(&self.buf)
            .await
            .map_err(|e| Error::from_io("writing the index", e))?;
        self.buf.clear();
        Ok(())
    }
}

fn json_error(e: serde_json::Error) -> Error {
    Error::from_io("writing the index", std::io::Error::other(e))
}

/// What an index holds besides its entries.
#[derive(Debug, Default)]
pub(crate) struct IndexTail {
    /// The root directory's own entry (directory backups).
    pub root: Option<FileEntry>,
}

/// A backup's index read entry by entry, in index order, from the blocking pool
/// ([`IndexStream::next_entry`]) or from async code ([`IndexStream::next`]).
pub(crate) struct IndexStream {
    entries: Receiver<FileEntry>,
    /// The parser's outcome, set before it stops sending.
    outcome: Arc<Mutex<Option<Result<IndexTail>>>>,
    tail: Option<IndexTail>,
}

impl IndexStream {
    /// Starts reading `backup`'s index (call from the runtime).
    ///
    /// # Errors
    /// A backup without an index.
    pub(crate) fn open(backup: &BackupReader) -> Result<IndexStream> {
        // One decoder and little read-ahead: the index is read beside a tar, which gets the
        // rest.
        let artifact = backup
            .with_read_ahead(1, INDEX_READ_AHEAD)
            .artifact(INDEX_ARTIFACT)?;
        let key = format!("{} {INDEX_ARTIFACT}", backup.id());
        let handle = tokio::runtime::Handle::current();
        let (send, entries) = channel(AHEAD);
        let outcome = Arc::new(Mutex::new(None));
        let result = outcome.clone();
        std::thread::Builder::new()
            .name("dr-index".into())
            .spawn(move || {
                let bridge = SyncIoBridge::new_with_handle(artifact, handle);
                let parsed = parse(
                    std::io::BufReader::with_capacity(1 << 20, bridge),
                    &send,
                    key,
                );
                *result.lock().unwrap_or_else(PoisonError::into_inner) = Some(parsed);
                drop(send);
            })
            .map_err(|e| Error::internal("starting the index reader", e))?;
        Ok(IndexStream {
            entries,
            outcome,
            tail: None,
        })
    }

    /// The next entry (a blocking call); `None` at the end of a whole, well-formed index.
    ///
    /// # Errors
    /// A damaged index or backup (the read error as it came).
    pub(crate) fn next_entry(&mut self) -> Result<Option<FileEntry>> {
        match self.entries.blocking_recv() {
            Some(entry) => Ok(Some(entry)),
            None => self.ended(),
        }
    }

    /// The next entry, from async code; as [`IndexStream::next_entry`].
    ///
    /// # Errors
    /// As [`IndexStream::next_entry`].
    pub(crate) async fn next(&mut self) -> Result<Option<FileEntry>> {
        match self.entries.recv().await {
            Some(entry) => Ok(Some(entry)),
            None => self.ended(),
        }
    }

    fn ended(&mut self) -> Result<Option<FileEntry>> {
        let outcome = self
            .outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match outcome {
            Some(Ok(tail)) => self.tail = Some(tail),
            Some(Err(e)) => return Err(e),
            None if self.tail.is_some() => {}
            None => {
                return Err(Error::internal(
                    "reading the file index",
                    "the reader stopped without a result",
                ));
            }
        }
        Ok(None)
    }

    /// What the index holds besides its entries, once every entry was read.
    pub(crate) fn tail(&self) -> Option<&IndexTail> {
        self.tail.as_ref()
    }
}

fn parse(reader: impl Read, send: &Sender<FileEntry>, key: String) -> Result<IndexTail> {
    let mut reader = KeepIoError {
        inner: reader,
        error: None,
    };
    let mut de = serde_json::Deserializer::from_reader(&mut reader);
    let parsed = serde::Deserializer::deserialize_map(&mut de, IndexVisitor { send })
        .and_then(|tail| de.end().map(|()| tail));
    match (parsed, reader.error) {
        (Ok(tail), None) => Ok(tail),
        (_, Some(e)) => Err(Error::from_io("reading the file index", e)),
        (Err(e), None) if e.to_string().starts_with(STOPPED) => Ok(IndexTail::default()),
        (Err(e), None) => Err(Error::BadManifest {
            key,
            detail: e.to_string(),
        }),
    }
}

struct IndexVisitor<'a> {
    send: &'a Sender<FileEntry>,
}

impl<'de> Visitor<'de> for IndexVisitor<'_> {
    type Value = IndexTail;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a file index")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<IndexTail, A::Error> {
        let mut tail = IndexTail::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "entries" => map.next_value_seed(Entries { send: self.send })?,
                "root" => tail.root = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(tail)
    }
}

struct Entries<'a> {
    send: &'a Sender<FileEntry>,
}

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the index entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(entry) = seq.next_element::<FileEntry>()? {
            self.send
                .blocking_send(entry)
                .map_err(|_| A::Error::custom(STOPPED))?;
        }
        Ok(())
    }
}

/// A reader that keeps the first I/O error for the caller and hands serde a plain one.
pub(crate) struct KeepIoError<R> {
    pub inner: R,
    pub error: Option<std::io::Error>,
}

impl<R: Read> Read for KeepIoError<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let kind = e.kind();
            self.error.get_or_insert(e);
            std::io::Error::new(kind, "see the kept error")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{EntryKind, FileIndex};

    fn parsed(json: &[u8]) -> (Result<IndexTail>, Vec<FileEntry>) {
        let (send, mut receive) = channel(AHEAD);
        let tail = parse(json, &send, "index".into());
        drop(send);
        let mut entries = Vec::new();
        while let Some(entry) = receive.blocking_recv() {
            entries.push(entry);
        }
        (tail, entries)
    }

    fn index_of(names: &[&str]) -> FileIndex {
        let entry = |name: &str| {
            let mut entry = FileEntry::empty(EntryKind::File);
            entry.set_path(Path::new(name));
            entry
        };
        FileIndex {
            version: 1,
            entries: names.iter().map(|n| entry(n)).collect(),
            vanished: Vec::new(),
            root: Some(entry("")),
        }
    }

    use std::path::Path;

    #[test]
    fn indexes_written_whole_by_older_dr_stream_with_their_root_last() {
        let index = index_of(&["a", "b/c", "d"]);
        let json = serde_json::to_vec(&index).unwrap();
        assert!(json.starts_with(b"{\"version\":1,\"entries\""));
        let (tail, entries) = parsed(&json);
        assert_eq!(entries, index.entries);
        assert_eq!(tail.unwrap().root, index.root);
    }

    #[test]
    fn a_truncated_or_malformed_index_is_an_error_after_the_entries_before_it() {
        let json = serde_json::to_vec(&index_of(&["a", "b"])).unwrap();
        let second = String::from_utf8_lossy(&json)
            .find("{\"path\":\"b\"")
            .unwrap();
        let cut = second + 5;
        let (tail, entries) = parsed(&json[..cut]);
        assert_eq!(entries.len(), 1);
        assert!(matches!(tail, Err(Error::BadManifest { .. })), "{tail:?}");
        let (tail, _) = parsed(b"[1,2]");
        assert!(tail.is_err());
    }
}
