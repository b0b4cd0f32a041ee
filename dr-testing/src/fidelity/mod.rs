//! The fidelity suite: per kind, a fingerprint of what the kind's users would notice after a
//! restore, computed with the datastore's own tools where they can (`sqlite3 .sha3sum`,
//! `pg_dump --schema-only`, `DEBUG DIGEST`, `stat`), never with dr. A restore is faithful when
//! the restored target's fingerprint equals the source's at backup time, field by field.
//!
//! Every backend's tests build a [`Fingerprint`] of the source before the backup and of the
//! target after each restore mode, and call [`assert_faithful`].

use std::collections::BTreeMap;

pub mod buckets;
pub mod files;
pub mod postgres;
pub mod redis;
pub mod sqlite;

/// Named fields of what a user would notice, each rendered as text (a digest, a mode, an
/// owner, a sorted list). Ordered, so two fingerprints diff field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    fields: BTreeMap<String, String>,
}

impl Fingerprint {
    /// An empty fingerprint.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `field` (replacing an earlier value of the same name).
    pub fn set(&mut self, field: impl Into<String>, value: impl std::fmt::Display) {
        self.fields.insert(field.into(), value.to_string());
    }

    /// The value of `field`, if recorded.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// The recorded field names, sorted.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// This fingerprint without the named fields (what a restore mode is documented not to
    /// carry, e.g. owners without `--owners`): the caller must say which, and why, in its test.
    pub fn without(&self, fields: &[&str]) -> Fingerprint {
        let mut copy = self.clone();
        copy.fields.retain(|k, _| !fields.contains(&k.as_str()));
        copy
    }

    /// Every difference from `other`: `field: expected X, found Y`, missing fields included.
    pub fn differences(&self, other: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        for (field, expected) in &self.fields {
            match other.fields.get(field) {
                Some(found) if found == expected => {}
                Some(found) => out.push(format!(
                    "{field}:\n    expected {}\n    found    {}",
                    shorten(expected),
                    shorten(found)
                )),
                None => out.push(format!("{field}: missing from the restored target")),
            }
        }
        for field in other.fields.keys() {
            if !self.fields.contains_key(field) {
                out.push(format!(
                    "{field}: only in the restored target: {}",
                    shorten(&other.fields[field])
                ));
            }
        }
        out
    }
}

/// Panics with every field that differs between the source at backup time and the restored
/// target, naming the restore mode.
pub fn assert_faithful(mode: &str, source: &Fingerprint, restored: &Fingerprint) {
    assert!(
        !source.fields.is_empty(),
        "{mode}: the source fingerprint is empty: nothing would be compared"
    );
    let differences = source.differences(restored);
    assert!(
        differences.is_empty(),
        "{mode}: the restored target differs from the source at backup time in {} field(s):\n  {}",
        differences.len(),
        differences.join("\n  ")
    );
}

fn shorten(value: &str) -> String {
    const MAX: usize = 2000;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &value[..end], value.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_changed_missing_and_extra_fields() {
        let mut a = Fingerprint::new();
        a.set("mode", "0640");
        a.set("owner", "65534:65534");
        let mut b = Fingerprint::new();
        b.set("mode", "0600");
        b.set("stray", "app.db-wal");
        let d = a.differences(&b);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].starts_with("mode:"));
        assert!(d[1].starts_with("owner: missing"));
        assert!(d[2].starts_with("stray: only in the restored target"));
        assert!(
            a.without(&["mode", "owner"])
                .differences(&Fingerprint::new())
                .is_empty()
        );
    }
}
