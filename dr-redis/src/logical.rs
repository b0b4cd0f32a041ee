//! The logical mode: every key of every database as `DUMP` payload with its remaining TTL,
//! read with `SCAN` and pipelined `DUMP` + `PTTL`, into the record stream below.
//!
//! Consistency: each key is captured atomically (one `DUMP`), but keys are read over time,
//! so the backup is not one point in time: a key written during the backup may or may not
//! be in it, and two keys changed together may be captured on either side of the change.
//! Keys that expire or are deleted between `SCAN` and `DUMP` are skipped.
//!
//! Record stream (artifact `keys`), all integers little-endian:
//!
//! ```text
//! "DRREDISKEYS1\n"                      header, 13 bytes
//! repeated: 0x01 db:u32 key_len:u32 key pttl_ms:i64 payload_len:u32 payload
//!           (pttl -1: no expiry; payload: the DUMP reply, RESTORE-able as is)
//! 0xFF count:u64                        end marker with the number of records
//! ```

use std::collections::BTreeMap;

use dr_core::{BackupWriter, Error, Result, SourceInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::backup::keyspace;
use crate::rdb::DbCounts;
use crate::resp::{Reply, RespClient};

/// The artifact holding the record stream.
pub const KEYS_ARTIFACT: &str = "keys";
const HEADER: &[u8; 13] = b"DRREDISKEYS1\n";
const SCAN_COUNT: &[u8] = b"1000";

/// One key of a logical backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Database number.
    pub db: u32,
    /// The key.
    pub key: Vec<u8>,
    /// Remaining time to live in ms when dumped, `None` without expiry.
    pub pttl_ms: Option<i64>,
    /// The DUMP payload.
    pub payload: Vec<u8>,
}

pub(crate) async fn backup(client: &mut RespClient, out: &mut BackupWriter) -> Result<SourceInfo> {
    let databases: Vec<u32> = keyspace(&client.info("keyspace").await?)
        .into_keys()
        .collect();
    let mut writer = out.artifact(KEYS_ARTIFACT)?;
    let io = |e| Error::from_io("writing the key records", e);
    writer.write_all(HEADER).await.map_err(io)?;
    let mut counts: BTreeMap<u32, DbCounts> = BTreeMap::new();
    let mut total = 0u64;
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
            let records = dump_keys(client, db, keys).await?;
            for record in records {
                let entry = counts.entry(db).or_default();
                entry.keys += 1;
                entry.expires += u64::from(record.pttl_ms.is_some());
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
    Ok(info)
}

fn scan_reply(reply: Reply) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let bad = || Error::Source("unexpected SCAN reply".into());
    let Reply::Array(Some(mut parts)) = reply else {
        return Err(bad());
    };
    if parts.len() != 2 {
        return Err(bad());
    }
    let keys = match parts.pop() {
        Some(Reply::Array(Some(keys))) => keys.into_iter().filter_map(Reply::into_bytes).collect(),
        _ => return Err(bad()),
    };
    let cursor = parts.pop().and_then(Reply::into_bytes).ok_or_else(bad)?;
    Ok((cursor, keys))
}

/// `DUMP` and `PTTL` of a batch of keys in one round trip; vanished keys are skipped.
async fn dump_keys(client: &mut RespClient, db: u32, keys: Vec<Vec<u8>>) -> Result<Vec<KeyRecord>> {
    let commands: Vec<Vec<&[u8]>> = keys
        .iter()
        .flat_map(|k| [vec![b"DUMP".as_slice(), k], vec![b"PTTL".as_slice(), k]])
        .collect();
    let replies = client.pipeline(&commands).await?;
    let mut records = Vec::with_capacity(keys.len());
    let mut replies = replies.into_iter();
    for key in keys {
        let (Some(dump), Some(pttl)) = (replies.next(), replies.next()) else {
            break;
        };
        let (Some(payload), Some(pttl)) = (dump?.into_bytes(), pttl?.as_int()) else {
            continue;
        };
        if pttl == -2 {
            continue;
        }
        records.push(KeyRecord {
            db,
            key,
            pttl_ms: (pttl >= 0).then_some(pttl),
            payload,
        });
    }
    Ok(records)
}

fn encode(record: &KeyRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.key.len() + record.payload.len() + 25);
    out.push(0x01);
    out.extend_from_slice(&record.db.to_le_bytes());
    out.extend_from_slice(&(record.key.len() as u32).to_le_bytes());
    out.extend_from_slice(&record.key);
    out.extend_from_slice(&record.pttl_ms.unwrap_or(-1).to_le_bytes());
    out.extend_from_slice(&(record.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&record.payload);
    out
}

/// Reads the record stream back, one record at a time.
pub struct KeyReader<R> {
    input: R,
    read: u64,
    ended: bool,
}

impl<R: AsyncRead + Unpin> KeyReader<R> {
    /// Checks the header.
    ///
    /// # Errors
    /// [`Error::Source`] when this is not a key record stream.
    pub async fn new(mut input: R) -> Result<Self> {
        let mut header = [0u8; 13];
        input
            .read_exact(&mut header)
            .await
            .map_err(|e| Error::from_io("reading the key records", e))?;
        if &header != HEADER {
            return Err(Error::Source("not a dr Redis key record stream".into()));
        }
        Ok(KeyReader {
            input,
            read: 0,
            ended: false,
        })
    }

    /// The next record, `None` after the end marker (whose count must match).
    ///
    /// # Errors
    /// [`Error::Source`] for a truncated or malformed stream.
    pub async fn next(&mut self) -> Result<Option<KeyRecord>> {
        if self.ended {
            return Ok(None);
        }
        let tag = self.u8().await?;
        if tag == 0xFF {
            let count = u64::from_le_bytes(self.array().await?);
            if count != self.read {
                return Err(self.damaged(&format!(
                    "the end marker says {count} records, {} were read",
                    self.read
                )));
            }
            self.ended = true;
            return Ok(None);
        }
        if tag != 0x01 {
            return Err(self.damaged(&format!("unknown record tag {tag:#x}")));
        }
        let db = u32::from_le_bytes(self.array().await?);
        let key = self.bytes().await?;
        let pttl = i64::from_le_bytes(self.array().await?);
        let payload = self.bytes().await?;
        self.read += 1;
        Ok(Some(KeyRecord {
            db,
            key,
            pttl_ms: (pttl >= 0).then_some(pttl),
            payload,
        }))
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
        Error::Source(format!(
            "the key record stream is damaged after record {}: {detail}",
            self.read
        ))
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
                pttl_ms: Some(5000),
                payload: vec![0, 1, 2],
            },
            KeyRecord {
                db: 9,
                key: vec![],
                pttl_ms: None,
                payload: vec![7; 300],
            },
        ];
        let mut stream = HEADER.to_vec();
        for r in &records {
            stream.extend_from_slice(&encode(r));
        }
        stream.push(0xFF);
        stream.extend_from_slice(&2u64.to_le_bytes());
        let mut reader = KeyReader::new(&stream[..]).await.unwrap();
        assert_eq!(reader.next().await.unwrap().as_ref(), Some(&records[0]));
        assert_eq!(reader.next().await.unwrap().as_ref(), Some(&records[1]));
        assert_eq!(reader.next().await.unwrap(), None);
        let cut = &stream[..stream.len() - 9];
        let mut reader = KeyReader::new(cut).await.unwrap();
        reader.next().await.unwrap();
        reader.next().await.unwrap();
        let err = reader.next().await.unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
