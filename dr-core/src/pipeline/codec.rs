//! One part: plain bytes <-> one zstd frame inside one age file.
//!
//! These are plain synchronous functions over whole buffers; the async writer and reader run
//! them on the blocking pool, several parts at once.

use std::io::{Read, Write};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::keys::{Identities, Recipients};

/// A part after encoding: the stored bytes and the hashes the manifest records.
#[derive(Debug)]
pub struct EncodedPart {
    /// The age file (zstd frame inside), as stored.
    pub stored: Vec<u8>,
    /// SHA-256 of the plain bytes (hex).
    pub plain_sha256: String,
    /// SHA-256 of the stored bytes (hex).
    pub stored_sha256: String,
}

/// Compresses `plain` as one zstd frame at `level` and encrypts it to `recipients`.
///
/// # Errors
/// [`Error::Encrypt`] when the recipient set is unusable or compression fails.
pub fn encode_part(plain: &[u8], recipients: &Recipients, level: i32) -> Result<EncodedPart> {
    let plain_sha256 = sha256_hex(plain);
    let encryptor =
        age::Encryptor::with_recipients(recipients.keys().iter().map(|k| k as &dyn age::Recipient))
            .map_err(|e| Error::Encrypt(e.to_string()))?;
    // Room for incompressible input plus framing: never reallocated; untouched pages of a
    // large allocation are never resident.
    let mut stored = Vec::with_capacity(plain.len() + plain.len() / 64 + 4096);
    let encrypt_err = |e: std::io::Error| Error::Encrypt(e.to_string());
    let age_writer = encryptor.wrap_output(&mut stored).map_err(encrypt_err)?;
    let mut zstd_writer = zstd::stream::Encoder::new(age_writer, level).map_err(encrypt_err)?;
    zstd_writer
        .set_pledged_src_size(Some(plain.len() as u64))
        .map_err(encrypt_err)?;
    zstd_writer.include_contentsize(true).map_err(encrypt_err)?;
    zstd_writer.write_all(plain).map_err(encrypt_err)?;
    let age_writer = zstd_writer.finish().map_err(encrypt_err)?;
    age_writer.finish().map_err(encrypt_err)?;
    let stored_sha256 = sha256_hex(&stored);
    Ok(EncodedPart {
        stored,
        plain_sha256,
        stored_sha256,
    })
}

/// What the manifest says a part must decode to.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedPart<'a> {
    /// Object key, for error messages.
    pub key: &'a str,
    /// Plain size in bytes.
    pub plain_size: u64,
    /// Plain SHA-256 (hex).
    pub plain_sha256: &'a str,
    /// Stored SHA-256 (hex), used to explain a decoding failure.
    pub stored_sha256: &'a str,
    /// The backup's recipients, named when no identity matches.
    pub recipients: &'a [String],
}

/// Decrypts and decompresses one stored part and checks its plain size and SHA-256.
///
/// The stored hash is not computed on success: age authenticates every chunk of the
/// ciphertext and the plain hash pins the content, so a restore only pays for one hash.
///
/// # Errors
/// [`Error::NoMatchingIdentity`], [`Error::CorruptPart`] or [`Error::DamagedPart`].
pub fn decode_part(
    stored: &[u8],
    identities: &Identities,
    expected: ExpectedPart<'_>,
) -> Result<Vec<u8>> {
    let plain = decrypt_and_decompress(stored, identities, expected)?;
    if plain.len() as u64 != expected.plain_size {
        return Err(Error::DamagedPart {
            key: expected.key.to_owned(),
            detail: format!(
                "decodes to {} bytes, the manifest expects {}",
                plain.len(),
                expected.plain_size
            ),
        });
    }
    let actual = sha256_hex(&plain);
    if actual != expected.plain_sha256 {
        return Err(Error::CorruptPart {
            key: expected.key.to_owned(),
            what: "plain",
            expected: expected.plain_sha256.to_owned(),
            actual,
        });
    }
    Ok(plain)
}

fn decrypt_and_decompress(
    stored: &[u8],
    identities: &Identities,
    expected: ExpectedPart<'_>,
) -> Result<Vec<u8>> {
    if identities.is_empty() {
        return Err(Error::NoIdentity);
    }
    let damaged = |detail: String| explain_damage(stored, expected, detail);
    let decryptor = age::Decryptor::new_buffered(stored)
        .map_err(|e| damaged(format!("not an age file: {e}")))?;
    let reader = decryptor
        .decrypt(identities.as_age())
        .map_err(|e| match e {
            // A damaged header matches no identity either: blame the key only if the
            // object is intact.
            age::DecryptError::NoMatchingKeys => {
                match explain_damage(stored, expected, String::new()) {
                    corrupt @ Error::CorruptPart { .. } => corrupt,
                    _ => Error::NoMatchingIdentity {
                        recipients: expected.recipients.join(", "),
                    },
                }
            }
            other => damaged(format!("age header: {other}")),
        })?;
    let mut plain = Vec::with_capacity(usize::try_from(expected.plain_size).unwrap_or(0));
    zstd::stream::read::Decoder::new(reader)
        .and_then(|mut decoder| decoder.read_to_end(&mut plain))
        .map_err(|e| damaged(format!("decrypting or decompressing: {e}")))?;
    Ok(plain)
}

/// A decoding failure: if the stored bytes differ from what was written, say so with both
/// hashes; otherwise pass the decoder's message on.
fn explain_damage(stored: &[u8], expected: ExpectedPart<'_>, detail: String) -> Error {
    let actual = sha256_hex(stored);
    if actual != expected.stored_sha256 {
        Error::CorruptPart {
            key: expected.key.to_owned(),
            what: "stored",
            expected: expected.stored_sha256.to_owned(),
            actual,
        }
    } else {
        Error::DamagedPart {
            key: expected.key.to_owned(),
            detail,
        }
    }
}

/// SHA-256 of `data` as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
