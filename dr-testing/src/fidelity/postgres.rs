//! Fidelity fingerprint for PostgreSQL, computed with `psql` and `pg_dump` only (over TCP on
//! 127.0.0.1 as the harness superuser), never with dr.
//!
//! [`fingerprint_database`] fields:
//! - `db.name`: datname (a restore into another name is documented not to carry it);
//! - `db.owner`, `db.acl` (`coalesce(datacl, acldefault('d', datdba))`, its items sorted: a
//!   NULL ACL means the default one, and the order of items carries no meaning),
//!   `db.comment` (shobj_description), `db.connlimit`, `db.encoding`, `db.collate`,
//!   `db.ctype`, `db.locprovider`, `db.iculocale`, `db.istemplate`;
//! - `db.settings`: every pg_db_role_setting row of the database (`*` for database-wide,
//!   else the role), its setconfig items sorted;
//! - `schema`: `pg_dump --schema-only`, normalised only where inherently variable: the
//!   `-- Dumped from/by` version lines and the `\restrict`/`\unrestrict` lines (a random key
//!   per run, PostgreSQL 15.14+);
//! - `table.<schema>.<table>`: `count(*)` and md5 of every row's text, sorted, per ordinary
//!   table outside pg_catalog/information_schema (extension members included);
//! - `sequence.<schema>.<name>`: last_value and is_called;
//! - `largeobjects`: per large object its oid, owner, ACL (items sorted) and md5 of content.
//!
//! [`fingerprint_roles`] (a `--server` restore onto an empty server, a physical recovery):
//! - `roles`: per role (`pg_%` built-ins left out) every pg_authid attribute but the
//!   password, with its comment; `roles.passwords`: the roles that have a password;
//! - `roles.settings`: role-wide pg_db_role_setting rows; `memberships`: pg_auth_members
//!   as role, member, admin option, grantor.

use std::process::Command;

use super::Fingerprint;
use crate::postgres::PASSWORD;

/// Runs `sql` with `psql` as the harness superuser on 127.0.0.1:`port`, database `db`;
/// returns the unaligned, tuples-only output. Panics with psql's message on failure.
pub fn psql(port: u16, db: &str, sql: &str) -> String {
    run_psql(port, db, sql, &[]).trim_end().to_owned()
}

/// `psql -X -A -t -q -v ON_ERROR_STOP=1` with `extra` arguments: its stdout.
fn run_psql(port: u16, db: &str, sql: &str, extra: &[&str]) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", db])
        .args(extra)
        .args(["-c", sql])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Quotes a literal for SQL.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The fingerprint of database `db` on the server at 127.0.0.1:`port` (fields above).
pub fn fingerprint_database(port: u16, db: &str) -> Fingerprint {
    let mut fp = Fingerprint::new();
    database_properties(&mut fp, port, db);
    fp.set("schema", schema_dump(port, db));
    contents(&mut fp, port, db);
    fp
}

fn database_properties(fp: &mut Fingerprint, port: u16, db: &str) {
    let sql = format!(
        "SELECT datname, pg_get_userbyid(datdba), \
         (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(coalesce(datacl, acldefault('d', datdba))) a), \
         coalesce(shobj_description(oid, 'pg_database'), '<none>'), datconnlimit, pg_encoding_to_char(encoding), \
         datcollate, datctype, datlocprovider, coalesce(daticulocale, '<none>'), datistemplate \
         FROM pg_database WHERE datname = {}",
        lit(db)
    );
    let fields = [
        "db.name",
        "db.owner",
        "db.acl",
        "db.comment",
        "db.connlimit",
        "db.encoding",
        "db.collate",
        "db.ctype",
        "db.locprovider",
        "db.iculocale",
        "db.istemplate",
    ];
    let values = one_row(port, &sql);
    assert_eq!(
        values.len(),
        fields.len(),
        "database {db} not found on port {port}"
    );
    for (field, value) in fields.iter().zip(values) {
        fp.set(*field, value);
    }
    let settings = psql(
        port,
        "postgres",
        &format!(
            "SELECT coalesce(string_agg(who || ': ' || items, E'\\n' ORDER BY who), '<none>') FROM ( \
             SELECT coalesce(r.rolname, '*') AS who, \
             (SELECT string_agg(c, ', ' ORDER BY c) FROM unnest(s.setconfig) c) AS items \
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = {}) x",
            lit(db)
        ),
    );
    fp.set("db.settings", settings);
}

/// One row of `sql` on database postgres, its fields split (psql's field separator \x1f).
fn one_row(port: u16, sql: &str) -> Vec<String> {
    let out = run_psql(port, "postgres", sql, &["-F", "\x1f"]);
    let text = out.strip_suffix('\n').unwrap_or(&out);
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\x1f').map(str::to_owned).collect()
}

/// `pg_dump --schema-only` of `db`, without the lines that differ between two runs on the
/// same content (versions, the per-run `\restrict` key).
pub fn schema_dump(port: u16, db: &str) -> String {
    let out = Command::new("pg_dump")
        .args(["--schema-only", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", db])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump --schema-only {db}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.starts_with("-- Dumped from database version")
                && !l.starts_with("-- Dumped by pg_dump version")
                && !l.starts_with("\\restrict ")
                && !l.starts_with("\\unrestrict ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn contents(fp: &mut Fingerprint, port: u16, db: &str) {
    let relations = psql(
        port,
        db,
        "SELECT c.relkind::text || ' ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
    );
    for line in relations.lines() {
        let (kind, name) = line.split_once(' ').expect("kind and name");
        if kind == "r" {
            let digest = psql(
                port,
                db,
                &format!(
                    "SELECT count(*) || ' rows, md5 ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '-') FROM {name} t"
                ),
            );
            fp.set(format!("table.{name}"), digest);
        } else {
            let value = psql(
                port,
                db,
                &format!("SELECT last_value || ' called=' || is_called FROM {name}"),
            );
            fp.set(format!("sequence.{name}"), value);
        }
    }
    let objects = psql(
        port,
        db,
        "SELECT coalesce(string_agg(m.oid || ' owner=' || pg_get_userbyid(m.lomowner) || ' acl=' || \
         coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(m.lomacl) a), '<default>') || \
         ' md5=' || md5(lo_get(m.oid)), E'\\n' ORDER BY m.oid), '<none>') FROM pg_largeobject_metadata m",
    );
    fp.set("largeobjects", objects);
}

/// The roles and memberships of the server at 127.0.0.1:`port` (fields above).
pub fn fingerprint_roles(port: u16) -> Fingerprint {
    let mut fp = Fingerprint::new();
    fp.set(
        "roles",
        psql(
            port,
            "postgres",
            "SELECT string_agg(concat_ws(' ', quote_ident(rolname), 'super=' || rolsuper, 'inherit=' || rolinherit, \
             'createrole=' || rolcreaterole, 'createdb=' || rolcreatedb, 'login=' || rolcanlogin, \
             'replication=' || rolreplication, 'bypassrls=' || rolbypassrls, 'connlimit=' || rolconnlimit, \
             'validuntil=' || coalesce(rolvaliduntil::text, '-'), \
             'comment=' || coalesce(shobj_description(oid, 'pg_authid'), '-')), E'\\n' ORDER BY rolname) \
             FROM pg_authid WHERE rolname NOT LIKE 'pg\\_%'",
        ),
    );
    fp.set(
        "roles.passwords",
        psql(
            port,
            "postgres",
            "SELECT coalesce(string_agg(rolname, ',' ORDER BY rolname), '<none>') FROM pg_authid \
             WHERE rolpassword IS NOT NULL AND rolname NOT LIKE 'pg\\_%'",
        ),
    );
    fp.set(
        "roles.settings",
        psql(
            port,
            "postgres",
            "SELECT coalesce(string_agg(r.rolname || ': ' || array_to_string(s.setconfig, ', '), E'\\n' ORDER BY r.rolname), '<none>') \
             FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = 0",
        ),
    );
    fp.set(
        "memberships",
        psql(
            port,
            "postgres",
            "SELECT coalesce(string_agg(pg_get_userbyid(roleid) || ' > ' || pg_get_userbyid(member) || \
             ' admin=' || admin_option || ' by ' || pg_get_userbyid(grantor), E'\\n' \
             ORDER BY pg_get_userbyid(roleid), pg_get_userbyid(member)), '<none>') FROM pg_auth_members",
        ),
    );
    fp
}

/// The names of the databases on the server (templates and `postgres` included), one a line.
pub fn database_names(port: u16) -> String {
    psql(
        port,
        "postgres",
        "SELECT string_agg(datname, E'\\n' ORDER BY datname) FROM pg_database",
    )
}

pub mod corpus;
