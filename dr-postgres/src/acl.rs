//! Database ACL items (`grantee=privs/grantor`, as `datacl::text[]` shows them) and the
//! GRANT statements that give them back, each by its own grantor.

use crate::conn::quote_ident;

/// One aclitem `grantee=privs/grantor` (empty grantee: PUBLIC).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AclItem {
    pub(crate) text: String,
    pub(crate) grantee: String,
    pub(crate) grantor: String,
    privileges: Vec<(char, bool)>,
}

impl AclItem {
    pub(crate) fn parse(text: &str) -> Option<AclItem> {
        let (grantee, rest) = take_name(text, '=')?;
        let slash = rest.rfind('/')?;
        let (privs, grantor) = (&rest[..slash], &rest[slash + 1..]);
        let (grantor, _) = take_name(grantor, '\0')?;
        let mut privileges = Vec::new();
        let mut chars = privs.chars().peekable();
        while let Some(p) = chars.next() {
            let option = chars.peek() == Some(&'*');
            if option {
                chars.next();
            }
            privileges.push((p, option));
        }
        Some(AclItem {
            text: text.to_owned(),
            grantee,
            grantor,
            privileges,
        })
    }

    pub(crate) fn grantee_sql(&self) -> String {
        if self.grantee.is_empty() {
            "PUBLIC".into()
        } else {
            quote_ident(&self.grantee)
        }
    }

    pub(crate) fn grant_sql(&self, db: &str, owner: &str) -> Vec<String> {
        let name = |p: char| match p {
            'C' => Some("CREATE"),
            'T' => Some("TEMPORARY"),
            'c' => Some("CONNECT"),
            _ => None,
        };
        let mut sql = Vec::new();
        for option in [false, true] {
            let privs: Vec<&str> = self
                .privileges
                .iter()
                .filter(|(_, o)| *o == option)
                .filter_map(|(p, _)| name(*p))
                .collect();
            if privs.is_empty() {
                continue;
            }
            let with = if option { " WITH GRANT OPTION" } else { "" };
            sql.push(format!(
                "GRANT {} ON DATABASE {db} TO {}{with}",
                privs.join(", "),
                self.grantee_sql()
            ));
        }
        if self.grantor != owner && !sql.is_empty() {
            sql.insert(0, format!("SET ROLE {}", quote_ident(&self.grantor)));
            sql.push("RESET ROLE".into());
        }
        sql
    }
}

/// A role name as aclitem writes it (double-quoted when needed) up to `end`; the rest.
fn take_name(text: &str, end: char) -> Option<(String, &str)> {
    let mut name = String::new();
    let mut chars = text.char_indices().peekable();
    let mut quoted = false;
    while let Some((i, c)) = chars.next() {
        match c {
            '"' if quoted && chars.peek().map(|p| p.1) == Some('"') => {
                name.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c if c == end && !quoted => return Some((name, &text[i + c.len_utf8()..])),
            c => name.push(c),
        }
    }
    (end == '\0').then_some((name, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_items_parse_public_quoted_names_and_grant_options() {
        let item = AclItem::parse("=Tc/app_owner").unwrap();
        assert_eq!(item.grantee, "");
        assert_eq!(item.grantor, "app_owner");
        assert_eq!(item.privileges, vec![('T', false), ('c', false)]);
        let item = AclItem::parse("\"odd \"\"role\"=C*c/postgres").unwrap();
        assert_eq!(item.grantee, "odd \"role");
        assert_eq!(item.privileges, vec![('C', true), ('c', false)]);
        let sql = item.grant_sql("\"shop\"", "app_owner");
        assert_eq!(
            sql,
            vec![
                "SET ROLE \"postgres\"".to_owned(),
                "GRANT CONNECT ON DATABASE \"shop\" TO \"odd \"\"role\"".to_owned(),
                "GRANT CREATE ON DATABASE \"shop\" TO \"odd \"\"role\" WITH GRANT OPTION"
                    .to_owned(),
                "RESET ROLE".to_owned(),
            ]
        );
    }
}
