//! Small filesystem helpers shared by the backends.

use std::path::{Path, PathBuf};

/// `path` with `suffix` appended to its file name: `app.db` + `-wal`, `dump.rdb` +
/// `.dr-partial`, a directory + `.pre-restore-<time>`.
pub fn sibling_path(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_appended_to_the_name() {
        assert_eq!(
            sibling_path(Path::new("/srv/app.db"), "-wal"),
            Path::new("/srv/app.db-wal")
        );
    }
}
