//! Object metadata a user set (Content-Type, Content-Encoding, Cache-Control,
//! Content-Disposition, Content-Language, user metadata `x-amz-meta-*`) as index text and
//! back: what object_store reads on a get and writes on a put.

use std::collections::BTreeMap;

use dr_core::object_store::{Attribute, AttributeValue, Attributes};

const META: &str = "meta:";

/// The index form of `attributes`: `content-type`, ..., `meta:<name>`.
pub(crate) fn to_index(attributes: &Attributes) -> BTreeMap<String, String> {
    attributes
        .iter()
        .filter_map(|(key, value)| {
            let name = match key {
                Attribute::ContentType => "content-type".to_owned(),
                Attribute::ContentEncoding => "content-encoding".to_owned(),
                Attribute::CacheControl => "cache-control".to_owned(),
                Attribute::ContentDisposition => "content-disposition".to_owned(),
                Attribute::ContentLanguage => "content-language".to_owned(),
                Attribute::StorageClass => "storage-class".to_owned(),
                Attribute::Metadata(name) => format!("{META}{name}"),
                _ => return None,
            };
            Some((name, value.to_string()))
        })
        .collect()
}

/// The attributes to put for an index entry's `attributes`.
pub(crate) fn from_index(recorded: &BTreeMap<String, String>) -> Attributes {
    let mut attributes = Attributes::new();
    for (name, value) in recorded {
        let key = match name.as_str() {
            "content-type" => Attribute::ContentType,
            "content-encoding" => Attribute::ContentEncoding,
            "cache-control" => Attribute::CacheControl,
            "content-disposition" => Attribute::ContentDisposition,
            "content-language" => Attribute::ContentLanguage,
            "storage-class" => Attribute::StorageClass,
            other => match other.strip_prefix(META) {
                Some(meta) => Attribute::Metadata(meta.to_owned().into()),
                None => {
                    tracing::warn!(
                        attribute = other,
                        "an unknown object attribute in the index is not restored"
                    );
                    continue;
                }
            },
        };
        attributes.insert(key, AttributeValue::from(value.clone()));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_through_the_index() {
        let mut a = Attributes::new();
        a.insert(Attribute::ContentType, "text/html; charset=utf-8".into());
        a.insert(Attribute::CacheControl, "max-age=60".into());
        a.insert(Attribute::Metadata("owner-team".into()), "infra".into());
        let index = to_index(&a);
        assert_eq!(index["meta:owner-team"], "infra");
        assert_eq!(from_index(&index), a);
    }
}
