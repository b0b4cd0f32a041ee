//! An RDB reader that checks what it reads: the magic and version, every opcode and value
//! encoding (Redis 7.0 and 7.2 types), and the CRC64 trailer; it counts keys and expiries
//! per database and can hand out each entry's serialized value (a DUMP payload's body).
//! Damage is reported with the byte offset where parsing broke.

use std::collections::BTreeMap;
use std::io::Read;

use crc::{CRC_64_REDIS, Crc, Digest, Table};
use dr_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The CRC64 Redis uses for RDB files and DUMP payloads (Jones polynomial, reflected).
pub(crate) static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// The newest RDB version this reader understands (Redis 7.2 writes 11).
pub const MAX_RDB_VERSION: u32 = 11;

/// Keys and keys with a TTL in one database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbCounts {
    /// Keys.
    pub keys: u64,
    /// Keys with an expiry.
    pub expires: u64,
}

/// What a whole RDB holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdbSummary {
    /// RDB format version.
    pub version: u32,
    /// Per database number.
    pub databases: BTreeMap<u32, DbCounts>,
    /// AUX fields (`redis-ver`, `ctime`...).
    pub aux: BTreeMap<String, String>,
    /// The CRC64 trailer, `None` when the writer disabled checksums (0).
    pub checksum: Option<u64>,
    /// Bytes read.
    pub bytes: u64,
    /// Redis Functions libraries (opcode `0xF5`, Redis 7); omitted when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub functions: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl RdbSummary {
    /// Keys in every database.
    pub fn total_keys(&self) -> u64 {
        self.databases.values().map(|d| d.keys).sum()
    }
}

/// One key as read from an RDB.
pub struct RdbEntry<'a> {
    /// Database number.
    pub db: u32,
    /// The key.
    pub key: &'a [u8],
    /// Absolute expiry in Unix milliseconds.
    pub expire_ms: Option<i64>,
    /// The value's type byte and encoding: a DUMP payload without its version and CRC.
    pub serialized: &'a [u8],
}

/// Called with each key of an RDB.
pub type EntryVisitor<'v> = dyn FnMut(RdbEntry<'_>) -> Result<()> + 'v;

/// What an RDB holds besides its AUX fields, in file order: Redis 7 writes its Functions
/// libraries before the first database.
pub enum RdbItem<'a> {
    /// A key.
    Key(RdbEntry<'a>),
    /// A Redis Functions library: its code (`#!lua name=<library>` ...), as `FUNCTION LOAD`
    /// takes it.
    Function(&'a [u8]),
}

/// Called with each key and library of an RDB.
pub type ItemVisitor<'v> = dyn FnMut(RdbItem<'_>) -> Result<()> + 'v;

/// Reads an RDB from `input` to its end, calling `on_entry` for each key when given.
///
/// # Errors
/// [`Error::InvalidData`] naming the byte offset and what was wrong; errors from `on_entry`.
pub fn read_rdb<R: Read>(input: R, on_entry: Option<&mut EntryVisitor<'_>>) -> Result<RdbSummary> {
    match on_entry {
        Some(on_entry) => {
            let mut keys_only = |item: RdbItem<'_>| match item {
                RdbItem::Key(entry) => on_entry(entry),
                RdbItem::Function(_) => Ok(()),
            };
            read_rdb_items(input, Some(&mut keys_only))
        }
        None => read_rdb_items(input, None),
    }
}

/// As [`read_rdb`], calling `on_item` for each key and each Functions library.
///
/// # Errors
/// [`Error::InvalidData`] naming the byte offset and what was wrong; errors from `on_item`.
pub fn read_rdb_items<R: Read>(
    input: R,
    mut on_entry: Option<&mut ItemVisitor<'_>>,
) -> Result<RdbSummary> {
    let mut r = Tracked {
        input,
        offset: 0,
        digest: CRC64.digest(),
        capture: None,
        scratch: Vec::new(),
    };
    let mut summary = RdbSummary::default();
    let magic = r.bytes(9)?;
    if &magic[..5] != b"REDIS" {
        return Err(r.damaged_at(0, "not an RDB file (no REDIS magic)"));
    }
    summary.version = std::str::from_utf8(&magic[5..])
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| r.damaged_at(5, "unreadable RDB version"))?;
    if summary.version == 0 || summary.version > MAX_RDB_VERSION {
        return Err(r.damaged_at(
            5,
            &format!(
                "RDB version {} is not supported (1 to {MAX_RDB_VERSION})",
                summary.version
            ),
        ));
    }
    let mut db = 0u32;
    let mut expire_ms: Option<i64> = None;
    loop {
        let at = r.offset;
        let opcode = r.u8()?;
        match opcode {
            0xFF => break,
            0xFE => {
                db = u32::try_from(r.length()?).map_err(|_| r.damaged_at(at, "database number"))?;
            }
            0xFD => expire_ms = Some(i64::from(u32::from_le_bytes(r.array()?)) * 1000),
            0xFC => expire_ms = Some(i64::from_le_bytes(r.array()?)),
            0xFB => {
                r.length()?;
                r.length()?;
            }
            0xFA => {
                let key = r.string()?;
                let value = r.string()?;
                summary.aux.insert(
                    String::from_utf8_lossy(&key).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                );
            }
            0xF9 => {
                r.u8()?;
            }
            0xF8 => {
                r.length()?;
            }
            0xF5 => {
                summary.functions += 1;
                match on_entry.as_mut() {
                    Some(callback) => callback(RdbItem::Function(&r.string()?))?,
                    None => r.skip_string()?,
                }
            }
            0xF6 | 0xF7 => {
                return Err(r.damaged_at(
                    at,
                    "module data and pre-release functions are not supported",
                ));
            }
            value_type => {
                let key = r.string()?;
                r.capture = on_entry.as_ref().map(|_| vec![value_type]);
                skip_value(&mut r, value_type, at)?;
                let serialized = r.capture.take().unwrap_or_default();
                let counts = summary.databases.entry(db).or_default();
                counts.keys += 1;
                counts.expires += u64::from(expire_ms.is_some());
                if let Some(callback) = on_entry.as_mut() {
                    callback(RdbItem::Key(RdbEntry {
                        db,
                        key: &key,
                        expire_ms,
                        serialized: &serialized,
                    }))?;
                }
                expire_ms = None;
            }
        }
    }
    let computed = r.digest.clone().finalize();
    summary.bytes = r.offset;
    if summary.version >= 5 {
        let at = r.offset;
        let stored = u64::from_le_bytes(r.array()?);
        summary.bytes = r.offset;
        if stored != 0 && stored != computed {
            return Err(r.damaged_at(
                at,
                &format!("CRC64 mismatch: the trailer says {stored:016x}, the content hashes to {computed:016x}"),
            ));
        }
        summary.checksum = (stored != 0).then_some(stored);
    }
    let mut extra = [0u8; 1];
    if r.input.read(&mut extra).map_err(|e| r.io(e))? != 0 {
        return Err(r.damaged_at(summary.bytes, "data after the end of the RDB"));
    }
    Ok(summary)
}

/// Skips (and, when capturing, records) one value of `value_type`.
fn skip_value<R: Read>(r: &mut Tracked<R>, value_type: u8, at: u64) -> Result<()> {
    match value_type {
        // String; and the single-blob encodings (zipmap, ziplist, intset, listpack).
        0 | 9 | 10 | 11 | 12 | 13 | 16 | 17 | 20 => r.skip_string(),
        // List, set: n strings. Quicklist: n ziplists.
        1 | 2 | 14 => r.repeat(|r| r.skip_string()),
        // Hash: n field/value pairs.
        4 => r.repeat(|r| {
            r.skip_string()?;
            r.skip_string()
        }),
        // Sorted set with scores as strings, and as binary doubles.
        3 => r.repeat(|r| {
            r.skip_string()?;
            match r.u8()? {
                253..=255 => Ok(()),
                n => r.skip(u64::from(n)),
            }
        }),
        5 => r.repeat(|r| {
            r.skip_string()?;
            r.skip(8)
        }),
        // Quicklist 2: n (container, listpack) pairs.
        18 => r.repeat(|r| {
            r.length()?;
            r.skip_string()
        }),
        15 | 19 | 21 => skip_stream(r, value_type),
        other => Err(r.damaged_at(at, &format!("unknown value type {other}"))),
    }
}

/// Streams: listpacks, metadata, consumer groups with their pending entries and consumers.
fn skip_stream<R: Read>(r: &mut Tracked<R>, value_type: u8) -> Result<()> {
    let v2 = value_type >= 19;
    r.repeat(|r| {
        r.skip_string()?;
        r.skip_string()
    })?;
    // Length, last id; v2: first id, max deleted id, entries added.
    for _ in 0..if v2 { 8 } else { 3 } {
        r.length()?;
    }
    r.repeat(|r| {
        r.skip_string()?;
        r.length()?;
        r.length()?;
        if v2 {
            r.length()?;
        }
        // Pending entries: raw id, delivery time, delivery count.
        r.repeat(|r| {
            r.skip(16 + 8)?;
            r.length().map(drop)
        })?;
        r.repeat(|r| {
            r.skip_string()?;
            r.skip(if value_type >= 21 { 16 } else { 8 })?;
            r.repeat(|r| r.skip(16))
        })
    })
}

/// Bytes skipped at a time (the buffer is allocated once and reused).
const SCRATCH: usize = 64 * 1024;

/// The input with its offset, running CRC64 and optional capture of the bytes read.
struct Tracked<R> {
    input: R,
    offset: u64,
    digest: Digest<'static, u64, Table<16>>,
    capture: Option<Vec<u8>>,
    scratch: Vec<u8>,
}

impl<R: Read> Tracked<R> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        self.input.read_exact(buf).map_err(|e| self.io(e))?;
        self.digest.update(buf);
        if let Some(capture) = &mut self.capture {
            capture.extend_from_slice(buf);
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn bytes(&mut self, n: u64) -> Result<Vec<u8>> {
        let len = usize::try_from(n).map_err(|_| self.damaged_at(self.offset, "length"))?;
        if len > 1 << 30 {
            return Err(self.damaged_at(self.offset, &format!("implausible length {n}")));
        }
        // Grow as the bytes arrive: a damaged length must not allocate what the input does
        // not hold (found by fuzzing: 40 bytes asked for 4 GiB).
        const CHUNK: usize = 1 << 16;
        let mut buf = Vec::with_capacity(len.min(CHUNK));
        while buf.len() < len {
            let start = buf.len();
            buf.resize(start + (len - start).min(CHUNK), 0);
            self.fill(&mut buf[start..])?;
        }
        Ok(buf)
    }

    fn skip(&mut self, mut n: u64) -> Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(SCRATCH, 0);
        let mut result = Ok(());
        while n > 0 && result.is_ok() {
            let chunk = n.min(SCRATCH as u64) as usize;
            result = self.fill(&mut scratch[..chunk]);
            n -= chunk as u64;
        }
        self.scratch = scratch;
        result
    }

    /// A length; special encodings (integers, LZF) are `Err(kind)` inside `Ok`.
    fn length_or_special(&mut self) -> Result<std::result::Result<u64, u8>> {
        let first = self.u8()?;
        Ok(match first >> 6 {
            0 => Ok(u64::from(first & 0x3F)),
            1 => Ok(u64::from(first & 0x3F) << 8 | u64::from(self.u8()?)),
            2 => match first {
                0x80 => Ok(u64::from(u32::from_be_bytes(self.array()?))),
                0x81 => Ok(u64::from_be_bytes(self.array()?)),
                _ => return Err(self.damaged_at(self.offset - 1, "bad length encoding")),
            },
            _ => Err(first & 0x3F),
        })
    }

    fn length(&mut self) -> Result<u64> {
        let at = self.offset;
        self.length_or_special()?
            .map_err(|_| self.damaged_at(at, "a length was expected"))
    }

    fn repeat(&mut self, mut each: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        for _ in 0..self.length()? {
            each(self)?;
        }
        Ok(())
    }

    fn skip_string(&mut self) -> Result<()> {
        let at = self.offset;
        match self.length_or_special()? {
            Ok(len) => self.skip(len),
            Err(0) => self.skip(1),
            Err(1) => self.skip(2),
            Err(2) => self.skip(4),
            Err(3) => {
                let compressed = self.length()?;
                self.length()?;
                self.skip(compressed)
            }
            Err(_) => Err(self.damaged_at(at, "bad string encoding")),
        }
    }

    /// A string's bytes (integers as decimal text, LZF decompressed).
    fn string(&mut self) -> Result<Vec<u8>> {
        let at = self.offset;
        match self.length_or_special()? {
            Ok(len) => self.bytes(len),
            Err(0) => Ok(i8::from_le_bytes(self.array()?).to_string().into_bytes()),
            Err(1) => Ok(i16::from_le_bytes(self.array()?).to_string().into_bytes()),
            Err(2) => Ok(i32::from_le_bytes(self.array()?).to_string().into_bytes()),
            Err(3) => {
                let compressed = self.length()?;
                let plain = self.length()?;
                let data = self.bytes(compressed)?;
                lzf_decompress(&data, plain).ok_or_else(|| self.damaged_at(at, "bad LZF data"))
            }
            Err(_) => Err(self.damaged_at(at, "bad string encoding")),
        }
    }

    fn io(&self, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            self.damaged_at(
                self.offset,
                "truncated: the data ends in the middle of the RDB",
            )
        } else {
            Error::from_io("reading the RDB", e)
        }
    }

    fn damaged_at(&self, offset: u64, detail: &str) -> Error {
        Error::invalid_data(
            "RDB",
            format!("the RDB is damaged at byte {offset}: {detail}"),
        )
    }
}

/// LZF (liblzf) decompression of a string Redis compressed.
fn lzf_decompress(input: &[u8], expected: u64) -> Option<Vec<u8>> {
    let expected_len = usize::try_from(expected).ok()?;
    // One input byte expands to at most 132 output bytes (a 3-byte back reference copies 264).
    if expected_len > input.len().saturating_mul(132) {
        return None;
    }
    let mut out: Vec<u8> = Vec::with_capacity(expected_len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            let literal = input.get(i..i + ctrl + 1)?;
            if out.len() + literal.len() > expected_len {
                return None;
            }
            out.extend_from_slice(literal);
            i += ctrl + 1;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(i)?);
                i += 1;
            }
            let back = ((ctrl & 0x1F) << 8) + usize::from(*input.get(i)?) + 1;
            i += 1;
            let start = out.len().checked_sub(back)?;
            if out.len() + len + 2 > expected_len {
                return None;
            }
            for k in 0..len + 2 {
                let byte = out[start + k];
                out.push(byte);
            }
        }
    }
    (out.len() as u64 == expected).then_some(out)
}

/// A DUMP payload for `RESTORE`: the serialized value, the RDB version, the CRC64.
pub fn dump_payload(serialized: &[u8], rdb_version: u16) -> Vec<u8> {
    let mut payload = Vec::with_capacity(serialized.len() + 10);
    payload.extend_from_slice(serialized);
    payload.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = CRC64.checksum(&payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_length_is_refused_without_allocating_it() {
        // Found by fuzzing: an LZF string claiming 4 GiB, then a 4 GiB plain string, in 36 bytes.
        // (fuzz/seeds/rdb/regression-lzf-4gib.rdb)
        let input: [u8; 36] = [
            0x52, 0x45, 0x44, 0x49, 0x53, 0x30, 0x30, 0x30, 0x31, 0xfa, 0x0d, 0xae, 0x65, 0x64,
            0x40, 0x73, 0x2d, 0x76, 0x65, 0x72, 0x06, 0x37, 0x2e, 0x30, 0xc3, 0x01, 0x80, 0xff,
            0xff, 0xff, 0x00, 0x45, 0x52, 0x00, 0x00, 0x00,
        ];
        let err = read_rdb(&input[..], None).unwrap_err().to_string();
        assert!(err.contains("damaged at byte"), "{err}");
        assert_eq!(lzf_decompress(&[0, b'a'], 1 << 40), None);
        assert_eq!(lzf_decompress(&[0, b'a'], 1), Some(b"a".to_vec()));
    }

    #[test]
    fn crc64_is_the_redis_one() {
        assert_eq!(CRC64.checksum(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    fn tiny_rdb() -> Vec<u8> {
        let mut rdb = b"REDIS0010".to_vec();
        rdb.extend_from_slice(&[0xFA, 9]);
        rdb.extend_from_slice(b"redis-ver");
        rdb.extend_from_slice(&[6]);
        rdb.extend_from_slice(b"7.0.15");
        rdb.extend_from_slice(&[0xFE, 0, 0xFB, 2, 1]);
        rdb.extend_from_slice(&[0, 1, b'a', 1, b'1']);
        rdb.extend_from_slice(&[0xFC]);
        rdb.extend_from_slice(&1_900_000_000_000i64.to_le_bytes());
        rdb.extend_from_slice(&[0, 1, b'b', 0xC0, 42]);
        rdb.extend_from_slice(&[0xFE, 3, 1, 1, b'l', 2, 1, b'x', 1, b'y']);
        rdb.push(0xFF);
        let crc = CRC64.checksum(&rdb);
        rdb.extend_from_slice(&crc.to_le_bytes());
        rdb
    }

    #[test]
    fn counts_keys_and_expiries_and_hands_out_entries() {
        let rdb = tiny_rdb();
        let mut keys = Vec::new();
        let mut collect = |e: RdbEntry<'_>| {
            keys.push((e.db, e.key.to_vec(), e.expire_ms, e.serialized.to_vec()));
            Ok(())
        };
        let summary = read_rdb(&rdb[..], Some(&mut collect)).unwrap();
        assert_eq!(summary.version, 10);
        assert_eq!(summary.aux["redis-ver"], "7.0.15");
        assert_eq!(
            summary.databases[&0],
            DbCounts {
                keys: 2,
                expires: 1
            }
        );
        assert_eq!(
            summary.databases[&3],
            DbCounts {
                keys: 1,
                expires: 0
            }
        );
        assert_eq!(summary.bytes, rdb.len() as u64);
        assert_eq!(keys[1].2, Some(1_900_000_000_000));
        assert_eq!(keys[1].3, vec![0, 0xC0, 42]);
        assert_eq!(keys[2].3, vec![1, 2, 1, b'x', 1, b'y']);
    }

    #[test]
    fn damage_is_reported_with_its_offset() {
        let rdb = tiny_rdb();
        let err = read_rdb(&rdb[..rdb.len() - 20], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated") && err.contains("byte"), "{err}");
        let mut flipped = rdb.clone();
        flipped[30] ^= 0x01;
        let err = read_rdb(&flipped[..], None).unwrap_err().to_string();
        assert!(err.contains("damaged at byte"), "{err}");
        let mut trailer = rdb.clone();
        let last = trailer.len() - 1;
        trailer[last] ^= 0xFF;
        let err = read_rdb(&trailer[..], None).unwrap_err().to_string();
        assert!(err.contains("CRC64 mismatch"), "{err}");
        assert!(read_rdb(&b"RADIS0010"[..], None).is_err());
    }

    #[test]
    fn functions_libraries_are_handed_out_before_the_keys() {
        let code = b"#!lua name=l\nredis.register_function('f', function() return 1 end)";
        let mut rdb = b"REDIS0010".to_vec();
        rdb.extend_from_slice(&[0xF5, 0x40, code.len() as u8]);
        rdb.extend_from_slice(code);
        rdb.extend_from_slice(&[0xFE, 0, 0, 1, b'a', 1, b'1', 0xFF]);
        let crc = CRC64.checksum(&rdb);
        rdb.extend_from_slice(&crc.to_le_bytes());
        let mut seen = Vec::new();
        let mut visit = |item: RdbItem<'_>| {
            seen.push(match item {
                RdbItem::Function(code) => code.to_vec(),
                RdbItem::Key(entry) => entry.key.to_vec(),
            });
            Ok(())
        };
        let summary = read_rdb_items(&rdb[..], Some(&mut visit)).unwrap();
        assert_eq!(summary.functions, 1);
        assert_eq!(seen, vec![code.to_vec(), b"a".to_vec()]);
        assert_eq!(read_rdb(&rdb[..], None).unwrap().total_keys(), 1);
    }

    #[test]
    fn lzf_round_trips_a_back_reference() {
        // "abcabcabc": literal "abc", then a back reference of length 6 at distance 3.
        let compressed = [2, b'a', b'b', b'c', (4 << 5), 2];
        assert_eq!(lzf_decompress(&compressed, 9).unwrap(), b"abcabcabc");
        assert!(lzf_decompress(&compressed, 10).is_none());
    }
}
