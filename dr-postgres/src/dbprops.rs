//! The database's own properties, which `pg_dump` without `--create` leaves out: owner, ACL,
//! comment, connection limit, encoding and locale, `ALTER DATABASE ... SET` and `ALTER ROLE
//! ... IN DATABASE ... SET`. Recorded at backup time in the encrypted `database` artifact
//! (settings and comments may hold anything, the manifest is plain) and applied to the
//! restored database in every restore mode, under the name it is restored to.

use std::collections::BTreeMap;

use dr_core::{BackupReader, Error, Result};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::acl::AclItem;
use crate::conn::{PgConnection, quote_ident};

/// The artifact holding [`DatabaseProperties`] as JSON.
pub const DATABASE_ARTIFACT: &str = "database";

/// What `CREATE DATABASE` / `ALTER DATABASE` set on the database itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseProperties {
    /// datname at backup time.
    pub name: String,
    /// The owner's role name.
    pub owner: String,
    /// `coalesce(datacl, acldefault('d', datdba))` as aclitem texts (`grantee=privs/grantor`).
    pub acl: Vec<String>,
    /// `COMMENT ON DATABASE`.
    pub comment: Option<String>,
    /// `CONNECTION LIMIT` (-1: none).
    pub connection_limit: i32,
    /// Server encoding name (`UTF8`).
    pub encoding: String,
    /// LC_COLLATE.
    pub collate: String,
    /// LC_CTYPE.
    pub ctype: String,
    /// `c` (libc) or `i` (ICU).
    pub locale_provider: String,
    /// The ICU locale, for the ICU provider.
    pub icu_locale: Option<String>,
    /// `ALTER DATABASE ... SET` items (`name=value`).
    pub settings: Vec<String>,
    /// `ALTER ROLE r IN DATABASE ... SET` items per role.
    pub role_settings: BTreeMap<String, Vec<String>>,
}

impl DatabaseProperties {
    /// Reads the properties of the database `client` is connected to.
    ///
    /// # Errors
    /// [`Error::Backend`] if the catalogs cannot be read.
    pub async fn read(client: &Client, conn: &PgConnection) -> Result<Self> {
        let explain = |e: tokio_postgres::Error| conn.explain("reading database properties of", &e);
        let row = client
            .query_one(
                "SELECT datname::text, pg_get_userbyid(datdba)::text, \
                 coalesce(datacl, acldefault('d', datdba))::text[], \
                 shobj_description(oid, 'pg_database'), datconnlimit, \
                 pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text, \
                 datlocprovider::text, daticulocale::text, oid \
                 FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .await
            .map_err(explain)?;
        let oid: u32 = row.get(10);
        let mut props = DatabaseProperties {
            name: row.get(0),
            owner: row.get(1),
            acl: row.get(2),
            comment: row.get(3),
            connection_limit: row.get(4),
            encoding: row.get(5),
            collate: row.get(6),
            ctype: row.get(7),
            locale_provider: row.get(8),
            icu_locale: row.get(9),
            settings: Vec::new(),
            role_settings: BTreeMap::new(),
        };
        let rows = client
            .query(
                "SELECT r.rolname::text, s.setconfig::text[] FROM pg_db_role_setting s \
                 LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = $1",
                &[&oid],
            )
            .await
            .map_err(explain)?;
        for row in rows {
            let role: Option<String> = row.get(0);
            let items: Vec<String> = row.get(1);
            match role {
                None => props.settings = items,
                Some(role) => {
                    props.role_settings.insert(role, items);
                }
            }
        }
        Ok(props)
    }

    /// Reads the recorded properties of `backup`; `None` for a backup made before dr
    /// recorded them.
    ///
    /// # Errors
    /// Store and decryption errors; [`Error::Restore`] for an unreadable record.
    pub async fn recorded(backup: &BackupReader) -> Result<Option<Self>> {
        if backup.manifest().artifact(DATABASE_ARTIFACT).is_err() {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        backup.copy_artifact(DATABASE_ARTIFACT, &mut bytes).await?;
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::restore(
                "postgres",
                format!(
                    "the database properties of backup {} are unreadable ({e})",
                    backup.id()
                ),
            )
        })
    }

    /// `CREATE DATABASE name` with the recorded encoding and locale, from template0.
    pub fn create_sql(&self, name: &str) -> String {
        let mut sql = format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_ident(name),
            literal(&self.encoding),
            literal(&self.collate),
            literal(&self.ctype)
        );
        match (self.locale_provider.as_str(), &self.icu_locale) {
            ("i", Some(icu)) => {
                sql.push_str(&format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", literal(icu)));
            }
            _ => sql.push_str(" LOCALE_PROVIDER libc"),
        }
        sql
    }

    /// Gives database `name` these properties (but encoding and locale, fixed at creation)
    /// in one transaction: ACL items and role settings of roles the server lacks are left
    /// out and returned as notes.
    ///
    /// # Errors
    /// [`Error::Restore`] naming the statement that failed (nothing is changed then).
    pub async fn apply(
        &self,
        client: &Client,
        conn: &PgConnection,
        name: &str,
    ) -> Result<Vec<String>> {
        let existing = existing_roles(client, conn).await?;
        let mut notes = Vec::new();
        let mut sql = self.basic_sql(name, &existing, &mut notes);
        sql.extend(
            self.acl_sql(client, conn, name, &existing, &mut notes)
                .await?,
        );
        sql.extend(
            self.settings_sql(client, conn, name, &existing, &mut notes)
                .await?,
        );
        run_in_transaction(client, &sql).await.map_err(|e| {
            Error::restore("postgres", format!(
                "giving database {name} the properties of {} failed: {e}; the restored data is in place but its owner, privileges, settings and comment are not (see `dr restore --help`)",
                self.name
            ))
        })?;
        Ok(notes)
    }

    fn basic_sql(&self, name: &str, existing: &[String], notes: &mut Vec<String>) -> Vec<String> {
        let db = quote_ident(name);
        let comment = self.comment.as_deref().map_or("NULL".into(), literal);
        let mut sql = vec![
            format!(
                "ALTER DATABASE {db} CONNECTION LIMIT {}",
                self.connection_limit
            ),
            format!("COMMENT ON DATABASE {db} IS {comment}"),
        ];
        if existing.contains(&self.owner) {
            sql.insert(
                0,
                format!("ALTER DATABASE {db} OWNER TO {}", quote_ident(&self.owner)),
            );
        } else {
            notes.push(format!(
                "role {} does not exist on this server: database {name} keeps its owner (restore the roles first: `dr restore SOURCE --globals`)",
                self.owner
            ));
        }
        sql
    }

    async fn acl_sql(
        &self,
        client: &Client,
        conn: &PgConnection,
        name: &str,
        existing: &[String],
        notes: &mut Vec<String>,
    ) -> Result<Vec<String>> {
        let db = quote_ident(name);
        let current: Vec<String> = client
            .query_one(
                "SELECT coalesce(datacl, acldefault('d', datdba))::text[] FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .await
            .map_err(|e| conn.explain("reading the privileges of a database on", &e))?
            .get(0);
        let mut sql = Vec::new();
        // Revoke what is there now (PUBLIC, the owner and every grantee), then grant exactly
        // the recorded items, each by its own grantor.
        let mut grantees: Vec<String> = current
            .iter()
            .filter_map(|i| AclItem::parse(i))
            .map(|i| i.grantee_sql())
            .collect();
        if existing.contains(&self.owner) {
            grantees.push(quote_ident(&self.owner));
        }
        for grantee in grantees {
            sql.push(format!(
                "REVOKE ALL ON DATABASE {db} FROM {grantee} CASCADE"
            ));
        }
        for item in self.acl.iter().filter_map(|i| AclItem::parse(i)) {
            let missing = [&item.grantee, &item.grantor]
                .into_iter()
                .find(|r| !r.is_empty() && !existing.contains(r));
            if let Some(role) = missing {
                notes.push(format!(
                    "role {role} does not exist on this server: the privileges {} on database {name} were not given (restore the roles first: `dr restore SOURCE --globals`)",
                    item.text
                ));
                continue;
            }
            sql.extend(item.grant_sql(&db, &self.owner));
        }
        Ok(sql)
    }

    async fn settings_sql(
        &self,
        client: &Client,
        conn: &PgConnection,
        name: &str,
        existing: &[String],
        notes: &mut Vec<String>,
    ) -> Result<Vec<String>> {
        let db = quote_ident(name);
        let mut sql = vec![format!("ALTER DATABASE {db} RESET ALL")];
        let current_roles = client
            .query(
                "SELECT r.rolname::text FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
                 JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = $1",
                &[&name],
            )
            .await
            .map_err(|e| conn.explain("reading role settings on", &e))?;
        for row in current_roles {
            let role: String = row.get(0);
            sql.push(format!(
                "ALTER ROLE {} IN DATABASE {db} RESET ALL",
                quote_ident(&role)
            ));
        }
        for item in &self.settings {
            sql.push(format!("ALTER DATABASE {db} {}", set_clause(item)));
        }
        for (role, items) in &self.role_settings {
            if !existing.contains(role) {
                notes.push(format!(
                    "role {role} does not exist on this server: its settings in database {name} ({}) were not applied (restore the roles first: `dr restore SOURCE --globals`)",
                    items.join(", ")
                ));
                continue;
            }
            for item in items {
                sql.push(format!(
                    "ALTER ROLE {} IN DATABASE {db} {}",
                    quote_ident(role),
                    set_clause(item)
                ));
            }
        }
        Ok(sql)
    }
}

/// Runs `statements` in one transaction; the error names the statement that failed.
pub(crate) async fn run_in_transaction(
    client: &Client,
    statements: &[String],
) -> std::result::Result<(), String> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| e.to_string())?;
    for statement in statements {
        if let Err(e) = client.batch_execute(statement).await {
            let _ = client.batch_execute("ROLLBACK").await;
            let detail = e
                .as_db_error()
                .map_or(e.to_string(), |d| d.message().to_owned());
            return Err(format!("`{}`: {detail}", redact(statement)));
        }
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| e.to_string())
}

/// A statement as it may be shown: a `PASSWORD '...'` clause is replaced by `PASSWORD ***`.
pub(crate) fn redact(statement: &str) -> String {
    match statement.find(" PASSWORD '") {
        Some(at) => format!("{} PASSWORD *** ...", &statement[..at]),
        None => statement.to_owned(),
    }
}

/// The role names of the server `client` is on.
pub(crate) async fn existing_roles(client: &Client, conn: &PgConnection) -> Result<Vec<String>> {
    Ok(client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .await
        .map_err(|e| conn.explain("listing roles on", &e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// A SQL string literal (standard_conforming_strings is on by default since 9.1).
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `SET name TO value` for a setconfig item `name=value`, as pg_dump writes it: the
/// elements of a list setting (search_path...) each quoted, any other value one literal.
fn set_clause(item: &str) -> String {
    let (name, value) = item.split_once('=').unwrap_or((item, ""));
    let name_sql = if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    {
        name.to_owned()
    } else {
        quote_ident(name)
    };
    const LISTS: [&str; 5] = [
        "search_path",
        "temp_tablespaces",
        "session_preload_libraries",
        "shared_preload_libraries",
        "local_preload_libraries",
    ];
    let value_sql = if LISTS.contains(&name.to_ascii_lowercase().as_str()) {
        split_list(value)
            .iter()
            .map(|v| literal(v))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        literal(value)
    };
    format!("SET {name_sql} TO {value_sql}")
}

/// Splits a flattened list setting (`"$user", public`, `""`) into its elements.
fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut seen) = (false, false);
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                seen = true;
            }
            ',' if !quoted => {
                out.push(std::mem::take(&mut current).trim().to_owned());
                seen = false;
            }
            c if quoted || !c.is_whitespace() || !current.is_empty() => {
                current.push(c);
                seen = true;
            }
            _ => {}
        }
    }
    if seen || !out.is_empty() {
        out.push(current.trim().to_owned());
    }
    if out.is_empty() {
        // An empty list: one empty element, as `SET search_path TO ''` stores it.
        out.push(String::new());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_quoted_like_pg_dump_does() {
        assert_eq!(set_clause("work_mem=8MB"), "SET work_mem TO '8MB'");
        assert_eq!(
            set_clause("search_path=\"$user\", app, \"My Schema\""),
            "SET search_path TO '$user', 'app', 'My Schema'"
        );
        assert_eq!(
            set_clause("TimeZone=Europe/Berlin"),
            "SET \"TimeZone\" TO 'Europe/Berlin'"
        );
        assert_eq!(set_clause("app.note=it's"), "SET app.note TO 'it''s'");
        assert_eq!(set_clause("search_path=\"\""), "SET search_path TO ''");
        assert_eq!(set_clause("search_path="), "SET search_path TO ''");
    }
}
