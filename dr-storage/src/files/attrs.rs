//! Giving restored entries what the backup recorded: owner (with `--owners`), mode,
//! extended attributes (POSIX ACLs included), mtime to the nanosecond (symbolic links
//! included, not following them); recreating FIFOs and device nodes.

use std::path::Path;

use dr_core::{Error, Result};

use super::index::{EntryKind, FileEntry};

/// Gives `path` the recorded attributes of `entry`: the owner first (`lchown` clears set-id
/// bits), then the mode, the extended attributes, and the mtime last.
///
/// # Errors
/// [`Error::Restore`] naming the path and what could not be set.
pub(crate) fn apply(path: &Path, entry: &FileEntry, owners: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if owners {
        std::os::unix::fs::lchown(path, entry.uid, entry.gid).map_err(|e| {
            Error::restore(
                "files",
                format!(
                    "cannot give {} its owner {}:{} ({e}): --owners needs root",
                    path.display(),
                    entry.uid.map_or("-".into(), |u| u.to_string()),
                    entry.gid.map_or("-".into(), |g| g.to_string()),
                ),
            )
        })?;
    }
    if entry.kind != EntryKind::Symlink {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(entry.mode))
            .map_err(|e| Error::io(format!("setting the mode of {}", path.display()), e))?;
    }
    for (name, value) in &entry.xattrs {
        let value = hex::decode(value).map_err(|_| {
            Error::restore(
                "files",
                format!(
                    "the index holds a damaged value of the extended attribute {name} of {}",
                    path.display()
                ),
            )
        })?;
        xattr::set(path, name, &value).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                "trusted.* and security.* attributes (and another user's files) need root: \
                 restore as root"
            } else {
                "does the target's filesystem support extended attributes (and ACLs)?"
            };
            Error::restore(
                "files",
                format!(
                    "cannot set the extended attribute {name} on {} ({e}): {hint}",
                    path.display()
                ),
            )
        })?;
    }
    set_mtime(path, entry.mtime_ns)
}

/// Sets the mtime (and the atime, to the same instant) of `path`, not following a symbolic
/// link.
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn set_mtime(path: &Path, mtime_ns: i128) -> Result<()> {
    let secs = i64::try_from(mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0);
    let nanos = u32::try_from(mtime_ns.rem_euclid(1_000_000_000)).unwrap_or(0);
    let time = filetime::FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, time, time)
        .map_err(|e| Error::io(format!("setting the mtime of {}", path.display()), e))
}

/// Recreates a FIFO or device node. `Ok(Some(reason))` when it cannot be here (a device
/// node needs root): the caller reports it.
///
/// # Errors
/// Other I/O errors.
pub(crate) fn make_special(path: &Path, entry: &FileEntry) -> Result<Option<String>> {
    use rustix::fs::{FileType, Mode};
    let (file_type, what) = match entry.kind {
        EntryKind::Fifo => (FileType::Fifo, "FIFO".to_owned()),
        EntryKind::CharDevice | EntryKind::BlockDevice => {
            let [major, minor] = entry.device.unwrap_or_default();
            let block = entry.kind == EntryKind::BlockDevice;
            (
                if block {
                    FileType::BlockDevice
                } else {
                    FileType::CharacterDevice
                },
                format!(
                    "{} device {major}:{minor}",
                    if block { "block" } else { "character" }
                ),
            )
        }
        _ => return Ok(None),
    };
    let dev = entry
        .device
        .map_or(0, |[major, minor]| rustix::fs::makedev(major, minor));
    match rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        file_type,
        Mode::from_raw_mode(0o600),
        dev,
    ) {
        Ok(()) => Ok(None),
        Err(e) if e == rustix::io::Errno::PERM || e == rustix::io::Errno::ACCESS => {
            Ok(Some(format!("{what}: creating it needs root (mknod: {e})")))
        }
        Err(e) => Err(Error::io(
            format!("creating the {what} {}", path.display()),
            e.into(),
        )),
    }
}
