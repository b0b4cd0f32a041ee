//! Text sealed to the repository's recipients inside plain JSON records (failure records,
//! recovery points, drill records): error messages and check results can name files, tables
//! or keys, and plaintext objects hold no names (FORMAT.md). A sealed string is
//! `age:<plain size>:<plain sha256>:<hex of an age file holding one zstd frame>`, readable
//! with an identity (`xxd -r -p | age -d | zstd -d` by hand).

use crate::pipeline::{ExpectedPart, decode_part, encode_part, sha256_hex};
use crate::repository::Repository;

const PREFIX: &str = "age:";

impl Repository {
    /// `text` encrypted to the repository's recipients, as `age:<hex>`; when it cannot be
    /// encrypted (recipients refused), a placeholder that holds nothing of it.
    pub fn seal_text(&self, text: &str) -> String {
        let sealed = self
            .recipients()
            .and_then(|recipients| encode_part(text.as_bytes(), &recipients, 3));
        match sealed {
            Ok(part) => format!(
                "{PREFIX}{}:{}:{}",
                text.len(),
                part.plain_sha256,
                hex::encode(part.stored)
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not seal a record's text; it is left out");
                "(left out: it could not be encrypted)".into()
            }
        }
    }

    /// The text of a sealed string with the loaded identities; a note saying it is
    /// encrypted when no identity can read it; plain strings unchanged (older records).
    pub fn unseal_text(&self, text: &str) -> String {
        let Some(sealed) = text.strip_prefix(PREFIX) else {
            return text.to_owned();
        };
        let mut fields = sealed.splitn(3, ':');
        let (Some(size), Some(sha), Some(hex_text)) = (fields.next(), fields.next(), fields.next())
        else {
            return "(damaged sealed text)".into();
        };
        let (Ok(plain_size), Ok(stored)) = (size.parse::<u64>(), hex::decode(hex_text)) else {
            return "(damaged sealed text)".into();
        };
        if self.identities().is_empty() {
            return "(encrypted: load the identity to read it)".into();
        }
        let expected = ExpectedPart {
            key: "a sealed record",
            plain_size,
            plain_sha256: sha,
            stored_sha256: &sha256_hex(&stored),
            recipients: &self.config().recipients,
        };
        match decode_part(&stored, self.identities(), expected) {
            Ok(plain) => String::from_utf8_lossy(&plain).into_owned(),
            Err(e) => format!("(sealed text unreadable: {e})"),
        }
    }
}
