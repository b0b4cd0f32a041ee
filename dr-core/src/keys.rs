//! age keys: generating identity files, loading identities and recipients.
//!
//! An identity file has the format `age-keygen` writes, so the stock `age -d -i FILE` reads it.
//! An identity file may itself be encrypted with a passphrase (`age -p`), in which case
//! [`Identities::from_encrypted_file`] decrypts it in memory with scrypt.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use age::secrecy::{ExposeSecret, SecretString};
use age::x25519;

use crate::error::{Error, Result};

/// Public keys that backups are encrypted to.
#[derive(Clone, Default)]
pub struct Recipients {
    keys: Vec<x25519::Recipient>,
}

impl Recipients {
    /// Parses recipients from text: one `age1...` key per line, `#` comments and blank lines
    /// ignored. Lines holding an `AGE-SECRET-KEY-` are turned into their public key, so an
    /// identity file also works as a recipients file.
    ///
    /// # Errors
    /// [`Error::BadKey`] for a line that is not a key, or when there is no key at all.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut keys = Vec::new();
        for line in key_lines(text) {
            let key = if line.starts_with("AGE-SECRET-KEY-") {
                parse_identity(line, origin)?.to_public()
            } else {
                x25519::Recipient::from_str(line).map_err(|e| bad_key(origin, e))?
            };
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(bad_key(origin, "no age recipient (age1...) found"));
        }
        Ok(Recipients { keys })
    }

    /// Reads recipients from a file (see [`Recipients::parse`]).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::BadKey`] when it holds no key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The keys as `age1...` strings, in order.
    pub fn to_strings(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.to_string()).collect()
    }

    /// The parsed keys.
    pub fn keys(&self) -> &[x25519::Recipient] {
        &self.keys
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.to_strings()).finish()
    }
}

/// Secret keys able to decrypt backups. Debug output never shows them.
#[derive(Clone, Default)]
pub struct Identities {
    keys: Arc<Vec<x25519::Identity>>,
}

impl Identities {
    /// Parses identities from text in `age-keygen` format.
    ///
    /// # Errors
    /// [`Error::BadKey`] when a line is not an identity or there is none; the key is never
    /// part of the message.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let keys = key_lines(text)
            .map(|line| parse_identity(line, origin))
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Err(bad_key(origin, "no AGE-SECRET-KEY-1... line found"));
        }
        Ok(Identities {
            keys: Arc::new(keys),
        })
    }

    /// A fresh random identity held only in memory (tests, examples, scratch repositories).
    pub fn generate() -> Self {
        Identities {
            keys: Arc::new(vec![x25519::Identity::generate()]),
        }
    }

    /// Reads an identity file.
    ///
    /// # Errors
    /// [`Error::Io`] when unreadable, [`Error::BadKey`] when it holds no identity (for a
    /// passphrase-protected file, use [`Identities::from_encrypted_file`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if bytes.starts_with(b"age-encryption.org/") {
            return Err(bad_key(
                &path.display().to_string(),
                "this identity file is passphrase-protected; give its passphrase (DR_IDENTITY_PASSPHRASE)",
            ));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| bad_key(&path.display().to_string(), "not UTF-8 text"))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Reads an identity file that was encrypted with a passphrase (`age -p`, or
    /// [`generate_identity_file`] with a passphrase).
    ///
    /// # Errors
    /// [`Error::BadKey`] when the passphrase is wrong or the content is not an identity.
    pub fn from_encrypted_file(path: &Path, passphrase: &str) -> Result<Self> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading {origin}"), e))?;
        let identity = age::scrypt::Identity::new(SecretString::from(passphrase.to_owned()));
        let decryptor =
            age::Decryptor::new_buffered(&bytes[..]).map_err(|e| bad_key(&origin, e))?;
        let mut reader = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|_| {
                bad_key(
                    &origin,
                    "wrong passphrase, or not a passphrase-protected identity file",
                )
            })?;
        let mut text = String::new();
        reader
            .read_to_string(&mut text)
            .map_err(|e| bad_key(&origin, e))?;
        Self::parse(&text, &origin)
    }

    /// The public keys matching these identities.
    pub fn to_recipients(&self) -> Recipients {
        Recipients {
            keys: self.keys.iter().map(|k| k.to_public()).collect(),
        }
    }

    /// The identities as `age` trait objects, for decryption.
    pub fn as_age(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k as &dyn age::Identity)
    }

    /// Whether no identity is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} redacted)", self.keys.len())
    }
}

/// Generates a new X25519 identity and writes it to `path` with mode 0600, in the format
/// `age-keygen` writes; with a passphrase the file is encrypted with scrypt as `age -p` does.
/// Returns the public key (`age1...`).
///
/// # Errors
/// [`Error::IdentityExists`] when `path` exists (it is never overwritten), [`Error::Io`] when
/// it cannot be written.
pub fn generate_identity_file(path: &Path, passphrase: Option<&str>) -> Result<String> {
    let identity = x25519::Identity::generate();
    let public = identity.to_public().to_string();
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = format!(
        "# created: {created}\n# public key: {public}\n{}\n",
        identity.to_string().expose_secret()
    );
    let contents = match passphrase {
        None => text.into_bytes(),
        Some(p) => encrypt_with_passphrase(text.as_bytes(), p)?,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::IdentityExists(path.to_path_buf()),
            _ => Error::io(format!("creating {}", path.display()), e),
        })?;
    file.write_all(&contents)
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(public)
}

fn encrypt_with_passphrase(plain: &[u8], passphrase: &str) -> Result<Vec<u8>> {
    let encryptor = age::Encryptor::with_user_passphrase(SecretString::from(passphrase.to_owned()));
    let mut out = Vec::new();
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| Error::Encrypt(e.to_string()))?;
    writer
        .write_all(plain)
        .and_then(|_| writer.finish().map(|_| ()))
        .map_err(|e| Error::Encrypt(e.to_string()))?;
    Ok(out)
}

fn key_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn parse_identity(line: &str, origin: &str) -> Result<x25519::Identity> {
    x25519::Identity::from_str(line)
        .map_err(|_| bad_key(origin, "a line is not a valid AGE-SECRET-KEY-1... identity"))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

fn bad_key(origin: &str, detail: impl std::fmt::Display) -> Error {
    Error::BadKey {
        origin: origin.to_owned(),
        detail: detail.to_string(),
    }
}
