//! Fidelity fingerprint for directory trees, computed with `lstat(2)`, `llistxattr(2)`,
//! `getfacl` and SHA-256 of the bytes read back, never with dr: what `tar --xattrs --acls`
//! and `rsync -aHAX` keep. Also [`make_corpus`], a tree of the awkward cases.
//!
//! Fields, per path (relative, `.` for the root itself; non-UTF-8 bytes as `\xNN`):
//! `<p> type` (file, dir, symlink, fifo, char, block, socket), `<p> mode` (octal, with the
//! set-id and sticky bits; not for symlinks), `<p> owner` (`uid:gid`), `<p> mtime`
//! (`seconds.nanoseconds` as stored), `<p> size` and `<p> sha256` (files), `<p> sparse`
//! (files: `sparse` when fewer blocks are allocated than the size needs, else `dense`),
//! `<p> target` (symlinks, byte for byte), `<p> device` (`major:minor`), `<p> xattrs`
//! (every extended attribute but the ACL ones, `name=hex`, when there are any),
//! `acl <p>` (`getfacl --skip-base` of each path with an extended or default ACL), and
//! `hard links`: the groups of paths that share an inode.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::Fingerprint;

/// The fingerprint of the tree under `root` (see the module documentation).
pub fn fingerprint_tree(root: &Path) -> Fingerprint {
    let mut fp = Fingerprint::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut paths = vec![PathBuf::new()];
    while let Some(relative) = paths.pop() {
        let path = root.join(&relative);
        let meta = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let name = if relative.as_os_str().is_empty() {
            ".".to_owned()
        } else {
            escape(relative.as_os_str().as_bytes())
        };
        entry_fields(&mut fp, &name, &path, &meta);
        if meta.is_file() && meta.nlink() > 1 {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(name.clone());
        }
        if meta.is_dir() {
            let children = std::fs::read_dir(&path)
                .unwrap_or_else(|e| panic!("listing {}: {e}", path.display()));
            for child in children {
                paths.push(relative.join(child.unwrap().file_name()));
            }
        }
    }
    let mut groups: Vec<String> = inodes
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g.join(" = ")
        })
        .collect();
    groups.sort();
    fp.set("hard links", groups.join("; "));
    acl_fields(&mut fp, root);
    fp
}

/// `fp` without the `owner` fields: for restores documented not to give owners (without
/// `--owners`, every entry belongs to the restoring user).
pub fn without_owners(fp: &Fingerprint) -> Fingerprint {
    let owners: Vec<String> = fp
        .fields()
        .filter(|f| f.ends_with(" owner"))
        .map(str::to_owned)
        .collect();
    let names: Vec<&str> = owners.iter().map(String::as_str).collect();
    fp.without(&names)
}

/// The fields of `fp` whose name ends with one of `suffixes` (` sparse`, ` owner`...), for
/// [`Fingerprint::without`].
pub fn fields_ending(fp: &Fingerprint, suffixes: &[&str]) -> Vec<String> {
    fp.fields()
        .filter(|f| suffixes.iter().any(|s| f.ends_with(s)))
        .map(str::to_owned)
        .collect()
}

/// The fields of the entries at or under `path` (`acl <p>` included), renamed to `to`
/// (the fields of a tree's entry kept under another name).
pub fn fields_under(fp: &Fingerprint, path: &str, to: &str) -> Vec<(String, String)> {
    let rename = |rest: &str| -> Option<String> {
        (rest.starts_with(' ') || rest.starts_with('/')).then(|| format!("{to}{rest}"))
    };
    fp.fields()
        .filter_map(|f| {
            let renamed = match f.strip_prefix("acl ") {
                Some(p) => p
                    .strip_prefix(path)
                    .and_then(|rest| (rest.is_empty() || rest.starts_with('/')).then_some(rest))
                    .map(|rest| format!("acl {to}{rest}")),
                None => f.strip_prefix(path).and_then(rename),
            }?;
            Some((renamed, fp.get(f).unwrap().to_owned()))
        })
        .collect()
}

/// `live` with the entries at or under `paths` as `source` has them (replacing what `live`
/// had there): what a restore of those paths into the live tree must give.
pub fn with_source_entries(
    live: &Fingerprint,
    source: &Fingerprint,
    paths: &[&str],
) -> Fingerprint {
    let mut gone = Vec::new();
    for p in paths {
        gone.extend(fields_under(live, p, p).into_iter().map(|(f, _)| f));
    }
    let names: Vec<&str> = gone.iter().map(String::as_str).collect();
    let mut expected = live.without(&names);
    for p in paths {
        for (field, value) in fields_under(source, p, p) {
            expected.set(field, value);
        }
    }
    expected
}

fn entry_fields(fp: &mut Fingerprint, name: &str, path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "char"
    } else if t.is_block_device() {
        "block"
    } else {
        "socket"
    };
    fp.set(format!("{name} type"), kind);
    if !t.is_symlink() {
        fp.set(
            format!("{name} mode"),
            format!("{:04o}", meta.mode() & 0o7777),
        );
    }
    fp.set(
        format!("{name} owner"),
        format!("{}:{}", meta.uid(), meta.gid()),
    );
    fp.set(
        format!("{name} mtime"),
        format!("{}.{:09}", meta.mtime(), meta.mtime_nsec()),
    );
    if t.is_file() {
        fp.set(format!("{name} size"), meta.len());
        let bytes =
            std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        fp.set(
            format!("{name} sha256"),
            hex::encode(Sha256::digest(&bytes)),
        );
        let sparse = meta.blocks() * 512 < meta.len();
        fp.set(
            format!("{name} sparse"),
            if sparse { "sparse" } else { "dense" },
        );
    }
    if t.is_symlink() {
        let target = std::fs::read_link(path).unwrap();
        fp.set(
            format!("{name} target"),
            escape(target.as_os_str().as_bytes()),
        );
    }
    if t.is_char_device() || t.is_block_device() {
        let rdev = meta.rdev();
        let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
        let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
        fp.set(format!("{name} device"), format!("{major}:{minor}"));
    }
    let mut xattrs: Vec<String> = xattr::list(path)
        .map(|names| names.collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| !n.as_bytes().starts_with(b"system.posix_acl_"))
        .map(|n| {
            let value = xattr::get(path, &n).ok().flatten().unwrap_or_default();
            format!("{}={}", escape(n.as_bytes()), hex::encode(value))
        })
        .collect();
    xattrs.sort();
    if !xattrs.is_empty() {
        fp.set(format!("{name} xattrs"), xattrs.join(" "));
    }
}

/// One `acl <path>` field per path with an extended ACL, from `getfacl -R --skip-base
/// --physical .` run in `root` (its own escaping of names).
fn acl_fields(fp: &mut Fingerprint, root: &Path) {
    let out = Command::new("getfacl")
        .args(["-R", "--skip-base", "--physical", "--numeric", "."])
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("running getfacl (Debian package acl): {e}"));
    assert!(
        out.status.success(),
        "getfacl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for block in String::from_utf8_lossy(&out.stdout).split("\n\n") {
        let mut lines = block.lines().filter(|l| !l.is_empty());
        let Some(first) = lines.next() else { continue };
        let name = first.strip_prefix("# file: ").unwrap_or(first);
        let name = name.strip_prefix("./").unwrap_or(name);
        let rest: Vec<&str> = lines
            .filter(|l| !l.starts_with("# owner:") && !l.starts_with("# group:"))
            .collect();
        fp.set(format!("acl {name}"), rest.join(","));
    }
}

/// Printable ASCII as is, other valid UTF-8 escaped as Rust does, other bytes as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.escape_debug().to_string(),
        Err(_) => bytes
            .iter()
            .map(|b| match b {
                0x20..=0x7e if *b != b'\\' => (*b as char).to_string(),
                _ => format!("\\x{b:02x}"),
            })
            .collect(),
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, t, t)
        .unwrap_or_else(|e| panic!("setting the mtime of {}: {e}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether this process runs as root (device nodes and other owners need it).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Builds under `root` (created, mode 0750, with an xattr) a tree of the awkward cases:
/// hard links (also across directories), a FIFO, a character device 1:3 (a copy of
/// `/dev/null`'s number, when root), symlinks dangling, absolute, relative, non-UTF-8 and
/// longer than 100 bytes, files with `user.*` xattrs and POSIX ACLs (`setfacl`), a default
/// ACL on a directory, a sparse file, an empty file, empty directories, directories of mode
/// 0555, 1777 and 2750, a setuid file, mtimes with nanoseconds and in 1970 and 2100, names
/// with unicode, a newline and non-UTF-8 bytes, a name longer than 100 bytes, and (when
/// root) entries owned by nobody:nogroup (65534:65534). Every mtime is set last, directories
/// deepest first.
pub fn make_corpus(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let p = |rel: &str| root.join(rel);
    let write = |rel: &str, bytes: &[u8]| {
        let path = p(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    };
    let mut random = vec![0u8; 200_000];
    for (i, b) in random.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1;
    }
    write("plain.txt", b"hello, world\n");
    write("empty", b"");
    write("data/random.bin", &random);
    write("links/a", b"one inode, three names\n");
    std::fs::hard_link(p("links/a"), p("links/b")).unwrap();
    std::fs::create_dir_all(p("elsewhere")).unwrap();
    std::fs::hard_link(p("links/a"), p("elsewhere/c")).unwrap();
    {
        let f = std::fs::File::create(p("sparse.img")).unwrap();
        f.set_len(32 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"island of data", 16 << 20).unwrap();
    }
    run(Command::new("mkfifo").arg(p("pipe")));
    if is_root() {
        run(Command::new("mknod").arg(p("null")).args(["c", "1", "3"]));
    }
    let link = |target: &[u8], rel: &str| {
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), p(rel)).unwrap();
    };
    link(b"does/not/exist", "dangling");
    link(b"/etc/hostname", "absolute");
    link(b"plain.txt", "relative");
    link(b"caf\xe9/\xff", "non-utf8-target");
    let long_target = format!("{}/end", "a-long-segment".repeat(12));
    link(long_target.as_bytes(), "long-target");
    write("xattr.txt", b"with extended attributes\n");
    xattr::set(p("xattr.txt"), "user.comment", b"hello").unwrap();
    xattr::set(p("xattr.txt"), "user.binary", &[0, 255, 1, 10]).unwrap();
    write("acl.txt", b"with an ACL\n");
    run(Command::new("setfacl")
        .args(["-m", "u:65534:r,g:65534:rw"])
        .arg(p("acl.txt")));
    std::fs::create_dir_all(p("acl-dir")).unwrap();
    run(Command::new("setfacl")
        .args(["-d", "-m", "u:65534:rwx"])
        .arg(p("acl-dir")));
    run(Command::new("setfacl")
        .args(["-m", "u:65534:rx"])
        .arg(p("acl-dir")));
    std::fs::create_dir_all(p("empty-dir")).unwrap();
    std::fs::create_dir_all(p("nested/empty/deeper")).unwrap();
    write("read-only/inside.txt", b"in a 0555 directory\n");
    std::fs::create_dir_all(p("sticky")).unwrap();
    write("setgid/file", b"in a setgid directory\n");
    write("setuid", b"#!/bin/sh\n");
    write("日本語/ファイル.txt", "ユニコード\n".as_bytes());
    write("new\nline", b"a newline in the name\n");
    let odd = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(&odd, b"latin-1 name\n").unwrap();
    write(
        &format!("deep/{}", "long-name-".repeat(12)),
        b"a name over 100 bytes\n",
    );
    write("owned/by-nobody", b"nobody's\n");
    if is_root() {
        let nobody =
            |rel: &str| std::os::unix::fs::lchown(p(rel), Some(65534), Some(65534)).unwrap();
        nobody("owned/by-nobody");
        nobody("owned");
        nobody("relative");
        nobody("setgid");
    }
    chmod(&p("setuid"), 0o4755);
    chmod(&p("sticky"), 0o1777);
    chmod(&p("setgid"), 0o2750);
    chmod(&p("read-only"), 0o555);
    chmod(root, 0o750);
    xattr::set(root, "user.root-note", b"the root's own").unwrap();
    set_times(root);
}

/// Mtimes: nanoseconds everywhere, 1960, 1970 and 2100 for three files, directories deepest
/// first.
fn set_times(root: &Path) {
    let mut all = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for child in std::fs::read_dir(&dir).unwrap() {
            let child = child.unwrap().path();
            if child.symlink_metadata().unwrap().is_dir() {
                stack.push(child.clone());
            }
            all.push(child);
        }
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, path) in all.iter().enumerate() {
        let nanos = 123_456_789 + i as u32;
        set_mtime(path, 1_700_000_000 + i as i64, nanos);
    }
    set_mtime(&root.join("plain.txt"), 1, 1);
    set_mtime(&root.join("empty"), 4_102_444_800, 999_999_999);
    // 1960-05-05 01:02:03.5: before 1970, with a fraction (a PAX time counts back).
    set_mtime(&root.join("data/random.bin"), -304_815_477, 500_000_000);
    set_mtime(root, 1_650_000_000, 42);
}

/// Changes of every kind to a [`make_corpus`] tree, as between two backups: a deleted file
/// and directory, a new file, new bytes, a new mode, an xattr removed, a hard link broken
/// into a file of its own, a retargeted symlink.
pub fn modify_corpus(root: &Path) {
    std::fs::remove_file(root.join("plain.txt")).unwrap();
    std::fs::remove_dir_all(root.join("nested")).unwrap();
    std::fs::write(root.join("added.txt"), b"new in the second backup\n").unwrap();
    std::fs::write(root.join("data/random.bin"), b"rewritten\n").unwrap();
    std::fs::remove_file(root.join("elsewhere/c")).unwrap();
    std::fs::write(root.join("elsewhere/c"), b"no longer a link\n").unwrap();
    xattr::remove(root.join("xattr.txt"), "user.binary").unwrap();
    std::fs::remove_file(root.join("relative")).unwrap();
    std::os::unix::fs::symlink("added.txt", root.join("relative")).unwrap();
    chmod(&root.join("setuid"), 0o700);
}
