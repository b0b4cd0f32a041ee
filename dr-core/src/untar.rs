//! Unpacking tar streams safely (base backups, file trees): regular files written with large buffers (the bulk of the
//! bytes), everything else through the `tar` crate; no entry may land outside the target,
//! through `..`, an absolute path or a symbolic link planted by an earlier entry.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs::SparseFile;

const BUFFER: usize = 1 << 20;

/// Unpacks entries into one directory.
pub struct Unpacker {
    dir: PathBuf,
    safe_dirs: HashSet<PathBuf>,
    buffer: Vec<u8>,
}

impl Unpacker {
    /// Unpacks into `dir`, which must exist.
    pub fn new(dir: &Path) -> Self {
        Unpacker {
            dir: dir.to_owned(),
            safe_dirs: HashSet::from([dir.to_owned()]),
            buffer: vec![0; BUFFER],
        }
    }

    /// Unpacks one entry.
    ///
    /// # Errors
    /// [`Error::InvalidData`] for an entry that would land outside the directory; I/O errors.
    pub fn unpack<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let path = entry.path().map_err(|e| io("reading an entry name", e))?;
        let relative = inside(&path)?;
        if !entry.header().entry_type().is_file() {
            return match entry.unpack_in(&self.dir) {
                Ok(true) => Ok(()),
                Ok(false) => Err(outside(&relative)),
                Err(e) => Err(io(&format!("unpacking {}", relative.display()), e)),
            };
        }
        let target = self.dir.join(&relative);
        if let Some(parent) = target.parent() {
            self.ensure_dir(parent, &relative)?;
        }
        let mode = entry.header().mode().unwrap_or(0o600) & 0o7777;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&target)
            .map_err(|e| io(&format!("creating {}", target.display()), e))?;
        let mut file = SparseFile::new(file);
        let writing = |e| io(&format!("writing {}", target.display()), e);
        loop {
            let n = entry
                .read(&mut self.buffer)
                .map_err(|e| Error::from_io("reading the archive", e))?;
            if n == 0 {
                return file.finish().map(drop).map_err(writing);
            }
            file.write(&self.buffer[..n]).map_err(writing)?;
        }
    }

    /// Creates `parent` and checks that none of its components under the target is a
    /// symbolic link (an earlier entry could have planted one to redirect this file).
    pub fn ensure_dir(&mut self, parent: &Path, entry: &Path) -> Result<()> {
        if self.safe_dirs.contains(parent) {
            return Ok(());
        }
        std::fs::create_dir_all(parent)
            .map_err(|e| io(&format!("creating {}", parent.display()), e))?;
        let mut current = self.dir.clone();
        let below = parent.strip_prefix(&self.dir).unwrap_or(parent);
        for component in below.components() {
            current.push(component);
            if self.safe_dirs.contains(&current) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&current)
                .map_err(|e| io(&format!("checking {}", current.display()), e))?;
            if !meta.is_dir() {
                return Err(outside(entry));
            }
            self.safe_dirs.insert(current.clone());
        }
        Ok(())
    }
}

/// The entry's path made relative, refusing absolute paths and `..`.
pub fn inside(path: &Path) -> Result<PathBuf> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            _ => return Err(outside(path)),
        }
    }
    Ok(relative)
}

fn outside(path: &Path) -> Error {
    Error::invalid_data(
        "archive",
        format!(
            "it holds an entry that would land outside the target directory ({}): refusing it",
            path.display()
        ),
    )
}

fn io(doing: &str, e: std::io::Error) -> Error {
    Error::io(doing, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        builder.into_inner().unwrap()
    }

    fn file(builder: &mut tar::Builder<Vec<u8>>, name: &str, body: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses `..`; write the raw name as a hostile archive would.
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, body).unwrap();
    }

    fn unpack_all(bytes: &[u8], dir: &Path) -> Result<()> {
        let mut archive = tar::Archive::new(bytes);
        let mut unpacker = Unpacker::new(dir);
        for entry in archive.entries().unwrap() {
            unpacker.unpack(&mut entry.unwrap())?;
        }
        Ok(())
    }

    #[test]
    fn files_land_inside_with_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tar_of(|b| {
            file(b, "./base/1/1259", &[7u8; 3 << 20]);
            file(b, "PG_VERSION", b"15\n");
        });
        unpack_all(&bytes, dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("base/1/1259")).unwrap().len(),
            3 << 20
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("PG_VERSION"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn traversal_and_planted_links_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let dotdot = tar_of(|b| file(b, "../escaped", b"x"));
        let err = unpack_all(&dotdot, &dir).unwrap_err().to_string();
        assert!(err.contains("outside the target directory"), "{err}");
        let absolute = tar_of(|b| file(b, "/tmp/escaped", b"x"));
        assert!(unpack_all(&absolute, &dir).is_err());
        let planted = tar_of(|b| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            b.append_link(&mut header, "pg_wal", outer.path()).unwrap();
            file(b, "pg_wal/escaped", b"x");
        });
        let err = unpack_all(&planted, &dir).unwrap_err().to_string();
        assert!(err.contains("outside the target directory"), "{err}");
        assert!(!outer.path().join("escaped").exists());
    }
}
