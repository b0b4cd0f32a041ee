//! Small filesystem helpers shared by the backends.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// `path` with `suffix` appended to its file name: `app.db` + `-wal`, `dump.rdb` +
/// `.dr-partial`, a directory + `.pre-restore-<time>`.
pub fn sibling_path(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A restored file written chunk by chunk, leaving a hole where a whole chunk is zero (as
/// `tar -S` and restic's sparse restore do): a sparse 1 GiB image restores as the few blocks
/// it holds instead of 1 GiB of zeros, and a mostly empty file costs no disk it did not cost
/// before. The bytes read back are the same either way.
pub struct SparseFile {
    file: File,
    len: u64,
    ends_in_hole: bool,
}

impl SparseFile {
    /// Writes into `file`, which must be new (empty) and positioned at its start.
    pub fn new(file: File) -> Self {
        SparseFile {
            file,
            len: 0,
            ends_in_hole: false,
        }
    }

    /// Appends `chunk`: written, or skipped over when every byte is zero.
    ///
    /// # Errors
    /// The file's write or seek error.
    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        // Runs of whole zero blocks become holes; each run of other blocks is one write.
        let mut rest = chunk;
        while !rest.is_empty() {
            let zeros = zero_prefix(rest);
            if zeros > 0 {
                let skip = i64::try_from(zeros).map_err(std::io::Error::other)?;
                self.file.seek(SeekFrom::Current(skip))?;
                self.ends_in_hole = true;
            } else {
                let data = data_prefix(rest);
                self.file.write_all(&rest[..data])?;
                self.ends_in_hole = false;
                rest = &rest[data..];
                self.len += data as u64;
                continue;
            }
            rest = &rest[zeros..];
            self.len += zeros as u64;
        }
        Ok(())
    }

    /// Gives the file its full length (a trailing hole is not written) and returns it.
    ///
    /// # Errors
    /// The file's `set_len` error.
    pub fn finish(self) -> std::io::Result<File> {
        if self.ends_in_hole {
            self.file.set_len(self.len)?;
        }
        Ok(self.file)
    }
}

/// Zeros to compare against: slice equality is a `memcmp`, fast in any build profile.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The granularity of holes: a filesystem block.
const BLOCK: usize = 4096;

/// The length of the leading run of all-zero blocks (a short last block counts when zero).
fn zero_prefix(bytes: &[u8]) -> usize {
    bytes
        .chunks(BLOCK)
        .take_while(|block| is_zero(block))
        .map(<[u8]>::len)
        .sum()
}

/// The length of the leading run of blocks that are not all zero.
fn data_prefix(bytes: &[u8]) -> usize {
    bytes
        .chunks(BLOCK)
        .take_while(|block| !is_zero(block))
        .map(<[u8]>::len)
        .sum()
}

fn is_zero(chunk: &[u8]) -> bool {
    chunk
        .chunks(ZEROS.len())
        .all(|piece| piece == &ZEROS[..piece.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_chunks_become_holes_and_read_back_as_zeros() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image");
        let mut file = SparseFile::new(File::create(&path).unwrap());
        file.write(b"start").unwrap();
        for _ in 0..64 {
            file.write(&[0; 1 << 20]).unwrap();
        }
        file.write(b"middle").unwrap();
        file.write(&[0; 1 << 20]).unwrap();
        file.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 5 + (65 << 20) + 6);
        assert_eq!(&bytes[..5], b"start");
        assert_eq!(&bytes[5 + (64 << 20)..5 + (64 << 20) + 6], b"middle");
        assert_eq!(bytes.iter().filter(|&&b| b != 0).count(), 11);
        // 512-byte blocks allocated: a few pages, not 65 MiB.
        assert!(std::fs::metadata(&path).unwrap().blocks() < 1024);
    }

    #[test]
    fn zeros_inside_a_chunk_become_holes_too() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image");
        let mut chunk = vec![0u8; 1 << 20];
        chunk[..4].copy_from_slice(b"head");
        chunk[(1 << 20) - 3..].copy_from_slice(b"end");
        chunk[300_000] = 7;
        let mut file = SparseFile::new(File::create(&path).unwrap());
        file.write(&chunk).unwrap();
        file.write(&chunk[..5000]).unwrap();
        file.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), (1 << 20) + 5000);
        assert_eq!(&bytes[..1 << 20], &chunk[..]);
        assert_eq!(&bytes[1 << 20..], &chunk[..5000]);
        // Four data blocks of 4 KiB (8 sectors each), not a whole MiB (2048 sectors).
        let blocks = std::fs::metadata(&path).unwrap().blocks();
        assert!(blocks <= 64, "{blocks} sectors allocated");
    }

    #[test]
    fn a_non_zero_byte_anywhere_is_written() {
        let mut chunk = vec![0u8; 1000];
        assert!(is_zero(&chunk));
        chunk[999] = 1;
        assert!(!is_zero(&chunk));
        chunk[999] = 0;
        chunk[17] = 1;
        assert!(!is_zero(&chunk));
    }

    #[test]
    fn suffixes_are_appended_to_the_name() {
        assert_eq!(
            sibling_path(Path::new("/srv/app.db"), "-wal"),
            Path::new("/srv/app.db-wal")
        );
    }
}
