//! The logical mode: the Redis Functions libraries (`FUNCTION LIST WITHCODE`), then every key
//! of every database as `DUMP` payload with its absolute expiry time (`PEXPIRETIME`; before
//! Redis 7, `PTTL` plus the server's `TIME`), read with `SCAN` and pipelined commands, into
//! the record stream below.
//!
//! Consistency: each key is captured atomically (one `DUMP`), but keys are read over time,
//! so the backup is not one point in time: a key written during the backup may or may not
//! be in it, and two keys changed together may be captured on either side of the change.
//! Keys that expire or are deleted between `SCAN` and `DUMP` are skipped.
//!
//! Record stream (artifact `keys`), all integers little-endian:
//!
//! ```text
//! "DRREDISKEYS2\n"                      header, 13 bytes
//! repeated: 0x02 code_len:u32 code      a Functions library, as FUNCTION LOAD takes it
//! repeated: 0x01 db:u32 key_len:u32 key expires_at_ms:i64 payload_len:u32 payload
//!           (expires_at_ms: absolute Unix ms, -1: no expiry; payload: the DUMP reply)
//! 0xFF count:u64                        end marker with the number of records
//! ```
//!
//! Version 1 streams (`DRREDISKEYS1\n`, written before dr recorded absolute expiry times)
//! have no library records and the remaining TTL in place of `expires_at_ms`: a reader
//! counts it from the moment the backup started.

use std::collections::BTreeMap;

use dr_core::{BackupWriter, Error, Result, SourceInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::backup::keyspace;
use crate::client::{RedisClient, array, bytes, int};
use crate::rdb::DbCounts;
use redis::Value;

/// The artifact holding the record stream.
pub const KEYS_ARTIFACT: &str = "keys";
const HEADER: &[u8; 13] = b"DRREDISKEYS2\n";
const HEADER_V1: &[u8; 13] = b"DRREDISKEYS1\n";
const SCAN_COUNT: &[u8] = b"1000";

/// One key of a logical backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Database number.
    pub db: u32,
    /// The key.
    pub key: Vec<u8>,
    /// Absolute expiry time in Unix ms, `None` without expiry.
    pub expires_at_ms: Option<i64>,
    /// The DUMP payload.
    pub payload: Vec<u8>,
}

/// One record of a logical backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A Redis Functions library's code.
    Library(Vec<u8>),
    /// A key.
    Key(KeyRecord),
}

pub(crate) async fn backup(client: &mut RedisClient, out: &mut BackupWriter) -> Result<SourceInfo> {
    let databases: Vec<u32> = keyspace(&client.info("keyspace").await?)
        .into_keys()
        .collect();
    let (libraries, unreadable) = match readable_libraries(client).await? {
        Ok(libraries) => (libraries, None),
        Err(refusal) => (Vec::new(), Some(refusal)),
    };
    let expiry = Expiry::probe(client).await;
    let mut writer = out.artifact(KEYS_ARTIFACT)?;
    let io = |e| Error::from_io("writing the key records", e);
    writer.write_all(HEADER).await.map_err(io)?;
    for code in &libraries {
        writer.write_all(&encode_library(code)).await.map_err(io)?;
    }
    let mut counts: BTreeMap<u32, DbCounts> = BTreeMap::new();
    let mut total = libraries.len() as u64;
    for db in databases {
        client
            .command(&[b"SELECT", db.to_string().as_bytes()])
            .await?;
        let mut cursor = b"0".to_vec();
        loop {
            let reply = client
                .command(&[b"SCAN", &cursor, b"COUNT", SCAN_COUNT])
                .await?;
            let (next, keys) = scan_reply(reply)?;
            let records = dump_keys(client, expiry, db, keys).await?;
            for record in records {
                let entry = counts.entry(db).or_default();
                entry.keys += 1;
                entry.expires += u64::from(record.expires_at_ms.is_some());
                writer.write_all(&encode(&record)).await.map_err(io)?;
                total += 1;
            }
            if next == b"0" {
                break;
            }
            cursor = next;
        }
    }
    let mut end = vec![0xFF];
    end.extend_from_slice(&total.to_le_bytes());
    writer.write_all(&end).await.map_err(io)?;
    writer.finish().await?;
    let mut info = SourceInfo::new();
    info.insert("mode".into(), "logical".into());
    info.insert(
        "databases".into(),
        serde_json::to_value(&counts).unwrap_or_default(),
    );
    if !libraries.is_empty() {
        info.insert("functions".into(), libraries.len().into());
    }
    if let Some(refusal) = unreadable {
        info.insert(
            "functions_not_backed_up".into(),
            format!("the server refused FUNCTION LIST: {refusal}").into(),
        );
    }
    Ok(info)
}

/// The code of every Functions library (`FUNCTION LIST WITHCODE`); none before Redis 7.
/// A server that refuses the command (an ACL without `FUNCTION`) counts as having none, with
/// a warning; [`readable_libraries`] says which it was.
pub(crate) async fn function_libraries(client: &mut RedisClient) -> Result<Vec<Vec<u8>>> {
    Ok(readable_libraries(client).await?.unwrap_or_default())
}

/// As [`function_libraries`], `Err(refusal)` inside `Ok` when the server refused to list them.
pub(crate) async fn readable_libraries(
    client: &mut RedisClient,
) -> Result<std::result::Result<Vec<Vec<u8>>, String>> {
    let reply = match client.command(&[b"FUNCTION", b"LIST", b"WITHCODE"]).await {
        Ok(reply) => reply,
        Err(Error::Backend { message, .. }) if message.to_ascii_lowercase().contains("unknown") => {
            tracing::debug!(%message, "no Redis Functions on this server");
            return Ok(Ok(Vec::new()));
        }
        Err(Error::Backend { message, .. }) if message.contains("NOPERM") => {
            tracing::warn!(%message, "the server refuses FUNCTION LIST: its Functions libraries, if any, are not handled");
            return Ok(Err(message));
        }
        Err(e) => return Err(e),
    };
    let bad = || Error::backend("redis", "backup", "unexpected FUNCTION LIST reply");
    let Some(libraries) = array(reply) else {
        return Err(bad());
    };
    libraries
        .into_iter()
        .map(|library| {
            let Some(fields) = array(library) else {
                return Err(bad());
            };
            let mut fields = fields.into_iter();
            while let Some(name) = fields.next() {
                let value = fields.next();
                if bytes(name).as_deref() == Some(b"library_code".as_slice()) {
                    return value.and_then(bytes).ok_or_else(bad);
                }
            }
            Err(bad())
        })
        .collect::<Result<Vec<_>>>()
        .map(Ok)
}

/// How the absolute expiry time of a key is read.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    /// `PEXPIRETIME` (Redis 7).
    ExpireTime,
    /// `PTTL` plus the server's `TIME` of the same batch.
    Ttl,
}

impl Expiry {
    async fn probe(client: &mut RedisClient) -> Expiry {
        match client.command(&[b"PEXPIRETIME", b"dr:probe"]).await {
            Ok(_) => Expiry::ExpireTime,
            Err(e) => {
                tracing::debug!(error = %e, "no PEXPIRETIME: expiry times are PTTL + TIME");
                Expiry::Ttl
            }
        }
    }
}

fn scan_reply(reply: Value) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let bad = || Error::backend("redis", "backup", "unexpected SCAN reply");
    let Some(mut parts) = array(reply) else {
        return Err(bad());
    };
    if parts.len() != 2 {
        return Err(bad());
    }
    let keys = match parts.pop().and_then(array) {
        Some(keys) => keys.into_iter().filter_map(bytes).collect(),
        None => return Err(bad()),
    };
    let cursor = parts.pop().and_then(bytes).ok_or_else(bad)?;
    Ok((cursor, keys))
}

/// `DUMP` and the expiry time of a batch of keys in one round trip; vanished keys are
/// skipped.
async fn dump_keys(
    client: &mut RedisClient,
    expiry: Expiry,
    db: u32,
    keys: Vec<Vec<u8>>,
) -> Result<Vec<KeyRecord>> {
    let when: &[u8] = match expiry {
        Expiry::ExpireTime => b"PEXPIRETIME",
        Expiry::Ttl => b"PTTL",
    };
    let mut commands: Vec<Vec<&[u8]>> = keys
        .iter()
        .flat_map(|k| [vec![b"DUMP".as_slice(), k], vec![when, k]])
        .collect();
    commands.push(vec![b"TIME"]);
    let mut replies = client.pipeline(&commands).await?;
    let now_ms = replies
        .pop()
        .and_then(|time| time.ok())
        .and_then(|time| server_time_ms(&time))
        .ok_or_else(|| Error::backend("redis", "backup", "unexpected TIME reply"))?;
    let mut records = Vec::with_capacity(keys.len());
    let mut replies = replies.into_iter();
    for key in keys {
        let (Some(dump), Some(at)) = (replies.next(), replies.next()) else {
            break;
        };
        let (Some(payload), Some(at)) = (bytes(dump?), int(&at?)) else {
            continue;
        };
        if at == -2 {
            continue;
        }
        let expires_at_ms = match expiry {
            _ if at < 0 => None,
            Expiry::ExpireTime => Some(at),
            Expiry::Ttl => Some(now_ms + at),
        };
        records.push(KeyRecord {
            db,
            key,
            expires_at_ms,
            payload,
        });
    }
    Ok(records)
}

/// Unix ms from a `TIME` reply (seconds and microseconds).
pub(crate) fn server_time_ms(reply: &Value) -> Option<i64> {
    let parts = array(reply.clone())?;
    let number = |i: usize| -> Option<i64> {
        let bytes = bytes(parts.get(i)?.clone())?;
        std::str::from_utf8(&bytes).ok()?.parse().ok()
    };
    Some(number(0)? * 1000 + number(1)? / 1000)
}

fn encode(record: &KeyRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.key.len() + record.payload.len() + 25);
    out.push(0x01);
    out.extend_from_slice(&record.db.to_le_bytes());
    out.extend_from_slice(&(record.key.len() as u32).to_le_bytes());
    out.extend_from_slice(&record.key);
    out.extend_from_slice(&record.expires_at_ms.unwrap_or(-1).to_le_bytes());
    out.extend_from_slice(&(record.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&record.payload);
    out
}

fn encode_library(code: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(code.len() + 5);
    out.push(0x02);
    out.extend_from_slice(&(code.len() as u32).to_le_bytes());
    out.extend_from_slice(code);
    out
}

/// Reads the record stream back, one record at a time.
pub struct KeyReader<R> {
    input: R,
    read: u64,
    ended: bool,
    /// Version 1 streams: when the backup started (Unix ms), the base of their relative TTLs.
    v1_base_ms: Option<i64>,
}

impl<R: AsyncRead + Unpin> KeyReader<R> {
    /// Checks the header. `backup_started_ms` (Unix ms) is when the backup started: version 1
    /// streams recorded remaining TTLs, counted from then.
    ///
    /// # Errors
    /// [`Error::InvalidData`] when this is not a key record stream.
    pub async fn new(mut input: R, backup_started_ms: i64) -> Result<Self> {
        let mut header = [0u8; 13];
        input
            .read_exact(&mut header)
            .await
            .map_err(|e| Error::from_io("reading the key records", e))?;
        let v1_base_ms = match &header {
            h if h == HEADER => None,
            h if h == HEADER_V1 => Some(backup_started_ms),
            _ => {
                return Err(Error::invalid_data(
                    "key record stream",
                    "not a dr Redis key record stream",
                ));
            }
        };
        Ok(KeyReader {
            input,
            read: 0,
            ended: false,
            v1_base_ms,
        })
    }

    /// The next key, skipping library records; `None` after the end marker.
    ///
    /// # Errors
    /// [`Error::InvalidData`] for a truncated or malformed stream.
    pub async fn next(&mut self) -> Result<Option<KeyRecord>> {
        loop {
            match self.next_record().await? {
                None => return Ok(None),
                Some(Record::Key(key)) => return Ok(Some(key)),
                Some(Record::Library(_)) => {}
            }
        }
    }

    /// The next record, `None` after the end marker (whose count must match).
    ///
    /// # Errors
    /// [`Error::InvalidData`] for a truncated or malformed stream.
    pub async fn next_record(&mut self) -> Result<Option<Record>> {
        if self.ended {
            return Ok(None);
        }
        let tag = self.u8().await?;
        match tag {
            0xFF => {
                let count = u64::from_le_bytes(self.array().await?);
                if count != self.read {
                    return Err(self.damaged(&format!(
                        "the end marker says {count} records, {} were read",
                        self.read
                    )));
                }
                self.ended = true;
                Ok(None)
            }
            0x02 if self.v1_base_ms.is_none() => {
                let code = self.bytes().await?;
                self.read += 1;
                Ok(Some(Record::Library(code)))
            }
            0x01 => {
                let db = u32::from_le_bytes(self.array().await?);
                let key = self.bytes().await?;
                let at = i64::from_le_bytes(self.array().await?);
                let payload = self.bytes().await?;
                self.read += 1;
                let expires_at_ms = (at >= 0).then(|| at + self.v1_base_ms.unwrap_or(0));
                Ok(Some(Record::Key(KeyRecord {
                    db,
                    key,
                    expires_at_ms,
                    payload,
                })))
            }
            _ => Err(self.damaged(&format!("unknown record tag {tag:#x}"))),
        }
    }

    async fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>().await?[0])
    }

    async fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.input
            .read_exact(&mut buf)
            .await
            .map_err(|e| self.io(e))?;
        Ok(buf)
    }

    async fn bytes(&mut self) -> Result<Vec<u8>> {
        let len = u32::from_le_bytes(self.array().await?) as usize;
        if len > 512 << 20 {
            return Err(self.damaged(&format!("implausible length {len}")));
        }
        let mut buf = vec![0u8; len];
        self.input
            .read_exact(&mut buf)
            .await
            .map_err(|e| self.io(e))?;
        Ok(buf)
    }

    fn io(&self, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            self.damaged("truncated")
        } else {
            Error::from_io("reading the key records", e)
        }
    }

    fn damaged(&self, detail: &str) -> Error {
        Error::invalid_data(
            "key record stream",
            format!(
                "the key record stream is damaged after record {}: {detail}",
                self.read
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_round_trip_and_truncation_is_caught() {
        let records = [
            KeyRecord {
                db: 0,
                key: b"a\x00b".to_vec(),
                expires_at_ms: Some(1_900_000_005_000),
                payload: vec![0, 1, 2],
            },
            KeyRecord {
                db: 9,
                key: vec![],
                expires_at_ms: None,
                payload: vec![7; 300],
            },
        ];
        let library = b"#!lua name=l\nredis.register_function('f', function() return 1 end)";
        let mut stream = HEADER.to_vec();
        stream.extend_from_slice(&encode_library(library));
        for r in &records {
            stream.extend_from_slice(&encode(r));
        }
        stream.push(0xFF);
        stream.extend_from_slice(&3u64.to_le_bytes());
        let mut reader = KeyReader::new(&stream[..], 0).await.unwrap();
        assert_eq!(
            reader.next_record().await.unwrap(),
            Some(Record::Library(library.to_vec()))
        );
        assert_eq!(reader.next().await.unwrap().as_ref(), Some(&records[0]));
        assert_eq!(reader.next().await.unwrap().as_ref(), Some(&records[1]));
        assert_eq!(reader.next().await.unwrap(), None);
        let cut = &stream[..stream.len() - 9];
        let mut reader = KeyReader::new(cut, 0).await.unwrap();
        reader.next().await.unwrap();
        reader.next().await.unwrap();
        let err = reader.next().await.unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[tokio::test]
    async fn version_1_ttls_count_from_the_start_of_the_backup() {
        let record = KeyRecord {
            db: 1,
            key: b"k".to_vec(),
            expires_at_ms: Some(5000),
            payload: vec![1],
        };
        let mut stream = HEADER_V1.to_vec();
        stream.extend_from_slice(&encode(&record));
        stream.push(0xFF);
        stream.extend_from_slice(&1u64.to_le_bytes());
        let mut reader = KeyReader::new(&stream[..], 1_800_000_000_000)
            .await
            .unwrap();
        let read = reader.next().await.unwrap().unwrap();
        assert_eq!(read.expires_at_ms, Some(1_800_000_005_000));
        assert_eq!(reader.next().await.unwrap(), None);
    }
}
