//! An awkward PostgreSQL system to back up: roles with memberships, INHERIT/NOINHERIT,
//! settings and comments; a database owned by another role, closed to PUBLIC, with its own
//! settings, per-role settings, a quoted unicode comment, a connection limit and an ICU
//! collation; schemas owned by other roles, default privileges, identity columns, sequences
//! mid-way, row-level security, a large object with an ACL, an extension, awkward text.

use super::psql;

/// The roles (cluster-wide), created on the server at 127.0.0.1:`port`.
pub const ROLES: &str = "
CREATE ROLE app_owner LOGIN PASSWORD 'owner-secret';
CREATE ROLE app_rw NOLOGIN NOINHERIT;
CREATE ROLE app_ro LOGIN PASSWORD 'ro-secret' CONNECTION LIMIT 3 VALID UNTIL '2031-01-01 00:00:00+00';
CREATE ROLE reporting NOLOGIN INHERIT CREATEDB;
GRANT app_rw TO app_ro;
GRANT app_ro TO reporting WITH ADMIN OPTION;
ALTER ROLE app_ro SET search_path = app, public;
ALTER ROLE reporting SET work_mem = '16MB';
COMMENT ON ROLE app_owner IS 'owns ''shop'' — Ünïcødé';
";

/// `CREATE DATABASE` with a non-default encoding, locale and ICU collation.
pub fn create_database_sql(db: &str) -> String {
    format!(
        "CREATE DATABASE {db} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8' \
         LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' OWNER app_owner CONNECTION LIMIT 7"
    )
}

/// The database's own properties (run on database postgres).
pub fn database_sql(db: &str) -> String {
    format!(
        "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;
         GRANT CONNECT ON DATABASE {db} TO app_ro;
         GRANT CREATE ON DATABASE {db} TO app_rw WITH GRANT OPTION;
         ALTER DATABASE {db} SET work_mem = '8MB';
         ALTER DATABASE {db} SET search_path = app, \"$user\", public;
         ALTER DATABASE {db} SET timezone = 'Pacific/Chatham';
         ALTER ROLE app_ro IN DATABASE {db} SET statement_timeout = '5s';
         COMMENT ON DATABASE {db} IS 'Shop''s \"main\" DB — Ünïcødé ✓ ; DROP';"
    )
}

/// The content of the database (run in it).
pub const CONTENT: &str = r#"
CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA app AUTHORIZATION app_owner;
CREATE SCHEMA reports AUTHORIZATION app_rw;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app GRANT SELECT ON TABLES TO app_ro;
SET ROLE app_owner;
CREATE TABLE app.items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text COLLATE "C",
  email citext, price numeric(12, 3), tags text[], doc jsonb, at timestamptz);
INSERT INTO app.items (name, email, price, tags, doc, at)
  SELECT CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN E'tab\there' WHEN 2 THEN E'line\nbreak "q" ''s' ELSE 'Zoë ✓ ' || i END,
         'User' || i || '@Example.com', i * 1.125, ARRAY['a', NULL, 'c,d'], jsonb_build_object('n', i, 'k', repeat('x', i % 7)),
         '2026-01-01 00:00:00+00'::timestamptz + i * interval '1 hour'
  FROM generate_series(1, 300) i;
CREATE SEQUENCE app.invoice START 1000 INCREMENT 3;
SELECT nextval('app.invoice') FROM generate_series(1, 7);
CREATE SEQUENCE app.unused;
CREATE TABLE app.accounts (id int PRIMARY KEY, tenant text NOT NULL, balance numeric);
INSERT INTO app.accounts SELECT i, CASE WHEN i % 2 = 0 THEN 'app_ro' ELSE 'other' END, i FROM generate_series(1, 20) i;
ALTER TABLE app.accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.accounts FOR SELECT TO app_ro USING (tenant = current_user);
GRANT SELECT ON app.accounts TO app_ro;
RESET ROLE;
SET ROLE app_rw;
CREATE TABLE reports.daily (day date PRIMARY KEY, total numeric);
INSERT INTO reports.daily SELECT d::date, 1 FROM generate_series('2026-01-01'::date, '2026-02-01', '1 day') d;
RESET ROLE;
SELECT lo_from_bytea(424242, '\x00ff00fe4c4f'::bytea);
ALTER LARGE OBJECT 424242 OWNER TO app_owner;
GRANT SELECT ON LARGE OBJECT 424242 TO app_ro;
SELECT lo_from_bytea(424243, convert_to(repeat('large ', 5000), 'UTF8'));
"#;

/// Creates the roles, the database `db` and its content on the server at 127.0.0.1:`port`.
pub fn create(port: u16, db: &str) {
    psql(port, "postgres", ROLES);
    psql(port, "postgres", &create_database_sql(db));
    psql(port, "postgres", &database_sql(db));
    psql(port, db, CONTENT);
}
