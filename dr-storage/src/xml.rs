//! The little XML that S3's control-plane answers need: a tree of elements by local name,
//! read with `quick-xml`'s event reader (listings interleave `<Version>` and `<DeleteMarker>`,
//! which a serde mapping reads only with extra features).

use quick_xml::Reader;
use quick_xml::events::Event;

/// One element: its local name, its text, its children in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (namespace prefix dropped).
    pub name: String,
    /// Text directly inside it, trimmed.
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first descendant named `name` (depth first).
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.name == name {
                Some(c)
            } else {
                c.find(name)
            }
        })
    }

    /// The text of the first direct child named `name`, else of the first descendant.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.children
            .iter()
            .find(|c| c.name == name)
            .or_else(|| self.find(name))
            .map(|c| c.text.as_str())
    }
}

/// Parses `xml` and returns its root element.
///
/// # Errors
/// The reader's message for malformed XML.
pub fn parse(xml: &[u8]) -> Result<Element, String> {
    let mut reader = Reader::from_reader(xml);
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => stack.push(Element {
                name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                ..Element::default()
            }),
            Ok(Event::Empty(start)) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(Element {
                        name,
                        ..Element::default()
                    });
                }
            }
            Ok(Event::Text(text)) => {
                let decoded = text.decode().map_err(|e| e.to_string())?;
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(decoded.trim());
                }
            }
            Ok(Event::GeneralRef(reference)) => {
                let name = String::from_utf8_lossy(reference.as_ref()).into_owned();
                let entity = match name.as_str() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                };
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(entity);
                }
            }
            Ok(Event::End(_)) => {
                let done = stack.pop().unwrap_or_default();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Err("unbalanced XML".into()),
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "malformed XML at byte {}: {e}",
                    reader.error_position()
                ));
            }
        }
    }
    let document = stack.pop().unwrap_or_default();
    document
        .children
        .into_iter()
        .next()
        .ok_or_else(|| "empty XML document".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_versions_and_markers_keep_their_order() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <IsTruncated>false</IsTruncated>
  <Version><Key>a&amp;b</Key><VersionId>1</VersionId></Version>
  <DeleteMarker><Key>a&amp;b</Key><VersionId>2</VersionId></DeleteMarker>
  <Version><Key>c</Key><VersionId>3</VersionId><Owner/></Version>
</ListVersionsResult>"#;
        let root = parse(xml).unwrap();
        assert_eq!(root.name, "ListVersionsResult");
        assert_eq!(root.text("IsTruncated"), Some("false"));
        let names: Vec<(&str, &str)> = root
            .children
            .iter()
            .filter(|c| c.name != "IsTruncated")
            .map(|c| (c.name.as_str(), c.text("Key").unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("Version", "a&b"),
                ("DeleteMarker", "a&b"),
                ("Version", "c")
            ]
        );
    }

    #[test]
    fn malformed_xml_is_an_error() {
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"").is_err());
    }
}
