//! Checks on a (restored) database: row counts, orphans through every foreign key, user checks.

use std::collections::BTreeMap;

use dr_core::checks::{UserCheck, expectation_holds};
use tokio_postgres::Client;

use crate::conn::quote_ident;

/// Row counts of every user table (`schema.table`), exact or estimated.
///
/// # Errors
/// The query's error.
pub async fn row_counts(
    client: &Client,
    exact: bool,
) -> Result<BTreeMap<String, i64>, tokio_postgres::Error> {
    let tables = client
        .query(
            "SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::int8 FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%' AND NOT c.relispartition ORDER BY 1, 2",
            &[],
        )
        .await?;
    let mut counts = BTreeMap::new();
    for row in tables {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        let count = if exact {
            let sql = format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(&schema),
                quote_ident(&table)
            );
            client.query_one(&sql, &[]).await?.get::<_, i64>(0)
        } else {
            row.get::<_, i64>(2)
        };
        counts.insert(format!("{schema}.{table}"), count);
    }
    Ok(counts)
}

/// `schema.table` -> the timestamp column whose newest value is recorded.
pub type TimestampColumns = BTreeMap<String, String>;
/// `schema.table` -> `max(column)::text` (None for an empty table).
pub type NewestValues = BTreeMap<String, Option<String>>;

/// `max(column)::text` of each `schema.table` -> column.
///
/// # Errors
/// The query's error (e.g. a column that does not exist).
pub async fn newest_timestamps(
    client: &Client,
    columns: &TimestampColumns,
) -> Result<NewestValues, tokio_postgres::Error> {
    let mut newest = BTreeMap::new();
    for (table, column) in columns {
        let qualified: Vec<String> = table.splitn(2, '.').map(quote_ident).collect();
        let sql = format!(
            "SELECT max({})::text FROM {}",
            quote_ident(column),
            qualified.join(".")
        );
        newest.insert(
            table.clone(),
            client
                .query_one(&sql, &[])
                .await?
                .get::<_, Option<String>>(0),
        );
    }
    Ok(newest)
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct CheckOutcome {
    /// Passed checks, in words.
    pub passed: Vec<String>,
    /// Failed checks, in words.
    pub problems: Vec<String>,
}

/// What a restored database is checked against.
#[derive(Debug, Default, Clone, Copy)]
pub struct Expectations<'a> {
    /// Exact row counts recorded at backup time.
    pub row_counts: Option<&'a BTreeMap<String, i64>>,
    /// Newest timestamps recorded at backup time, with their columns.
    pub newest: Option<(&'a TimestampColumns, &'a NewestValues)>,
    /// SQL checks with expectations.
    pub user_checks: &'a [UserCheck],
    /// Tables the backup does not know are fine (an in-place restore leaves them).
    pub extra_tables_ok: bool,
}

/// Compares row counts with `expected`, counts orphaned rows through every foreign key and
/// runs the user checks.
///
/// # Errors
/// A query that cannot run at all.
pub async fn check_restored(
    client: &Client,
    expected: Option<&BTreeMap<String, i64>>,
    user_checks: &[UserCheck],
) -> Result<CheckOutcome, tokio_postgres::Error> {
    let expectations = Expectations {
        row_counts: expected,
        user_checks,
        ..Expectations::default()
    };
    check_restored_with(client, &expectations).await
}

/// Checks a restored database against everything recorded at backup time.
///
/// # Errors
/// A query that cannot run at all.
pub async fn check_restored_with(
    client: &Client,
    expect: &Expectations<'_>,
) -> Result<CheckOutcome, tokio_postgres::Error> {
    let mut outcome = CheckOutcome::default();
    if let Some((columns, recorded)) = expect.newest {
        compare_newest(client, columns, recorded, &mut outcome).await?;
    }
    if let Some(expected) = expect.row_counts {
        let mut actual = row_counts(client, true).await?;
        if expect.extra_tables_ok {
            actual.retain(|table, _| expected.contains_key(table));
        }
        if &actual == expected {
            let rows: i64 = actual.values().sum();
            outcome.passed.push(format!(
                "row counts match the backup ({} tables, {rows} rows)",
                actual.len()
            ));
        } else {
            outcome
                .problems
                .push(describe_difference(expected, &actual));
        }
    }
    orphans(client, &mut outcome).await?;
    for check in expect.user_checks {
        match run_user_check(client, check).await {
            Ok(passed) => outcome.passed.push(passed),
            Err(problem) => outcome.problems.push(problem),
        }
    }
    Ok(outcome)
}

async fn compare_newest(
    client: &Client,
    columns: &TimestampColumns,
    recorded: &NewestValues,
    outcome: &mut CheckOutcome,
) -> Result<(), tokio_postgres::Error> {
    let actual = newest_timestamps(client, columns).await?;
    for (table, value) in &actual {
        let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
        match recorded.get(table) {
            Some(r) if r == value => outcome.passed.push(format!(
                "newest {table}.{}: {}",
                columns[table],
                shown(value)
            )),
            Some(r) => outcome.problems.push(format!(
                "newest {table}: {} restored, backup recorded {}",
                shown(value),
                shown(r)
            )),
            None => {}
        }
    }
    Ok(())
}

async fn run_user_check(client: &Client, check: &UserCheck) -> Result<String, String> {
    let value = match client.query_one(&check.sql, &[]).await {
        Ok(row) => number(&row)
            .ok_or_else(|| format!("check {}: the query must return one number", check.name))?,
        Err(e) => return Err(format!("check {} could not run: {e}", check.name)),
    };
    let ok = expectation_holds(&check.expect, value)
        .map_err(|e| format!("check {}: {e}", check.name))?;
    let shown = format!("check {}: {value} {}", check.name, check.expect);
    if ok {
        Ok(format!("{shown} ok"))
    } else {
        Err(format!("{shown} failed"))
    }
}

fn number(row: &tokio_postgres::Row) -> Option<f64> {
    row.try_get::<_, i64>(0)
        .map(|v| v as f64)
        .or_else(|_| row.try_get::<_, i32>(0).map(f64::from))
        .or_else(|_| row.try_get::<_, f64>(0))
        .ok()
}

fn describe_difference(expected: &BTreeMap<String, i64>, actual: &BTreeMap<String, i64>) -> String {
    let mut differences: Vec<String> = expected
        .iter()
        .filter(|(t, n)| actual.get(*t) != Some(n))
        .map(|(t, n)| {
            format!(
                "{t}: {} rows, backup recorded {n}",
                actual.get(t).map_or("missing".into(), |a| a.to_string())
            )
        })
        .collect();
    differences.extend(
        actual
            .keys()
            .filter(|t| !expected.contains_key(*t))
            .map(|t| format!("{t}: not in the backup")),
    );
    format!("row counts differ: {}", differences.join("; "))
}

/// One query per foreign key, generated from `pg_constraint`: rows whose key columns are all
/// set but match no parent row.
async fn orphans(client: &Client, outcome: &mut CheckOutcome) -> Result<(), tokio_postgres::Error> {
    let keys = client
        .query(
            "SELECT con.conname::text, cn.nspname::text, cc.relname::text, pn.nspname::text, pc.relname::text, \
             array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i) \
                   JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i), \
             array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, i) \
                   JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i) \
             FROM pg_constraint con \
             JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace \
             JOIN pg_class pc ON pc.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
             WHERE con.contype = 'f' ORDER BY 2, 3, 1",
            &[],
        )
        .await?;
    let mut checked = 0;
    let problems_before = outcome.problems.len();
    for key in keys {
        let (name, child, parent): (String, String, String) = (
            key.get(0),
            format!(
                "{}.{}",
                quote_ident(&key.get::<_, String>(1)),
                quote_ident(&key.get::<_, String>(2))
            ),
            format!(
                "{}.{}",
                quote_ident(&key.get::<_, String>(3)),
                quote_ident(&key.get::<_, String>(4))
            ),
        );
        let (columns, referenced): (Vec<String>, Vec<String>) = (key.get(5), key.get(6));
        let set: Vec<String> = columns
            .iter()
            .map(|c| format!("c.{} IS NOT NULL", quote_ident(c)))
            .collect();
        let join: Vec<String> = columns
            .iter()
            .zip(&referenced)
            .map(|(c, p)| format!("p.{} = c.{}", quote_ident(p), quote_ident(c)))
            .collect();
        let sql = format!(
            "SELECT count(*) FROM {child} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {})",
            set.join(" AND "),
            join.join(" AND ")
        );
        let count: i64 = client.query_one(&sql, &[]).await?.get(0);
        checked += 1;
        if count > 0 {
            outcome.problems.push(format!(
                "foreign key {name}: {count} orphaned rows in {child}"
            ));
        }
    }
    if outcome.problems.len() == problems_before {
        outcome
            .passed
            .push(format!("no orphaned rows through {checked} foreign keys"));
    }
    Ok(())
}
