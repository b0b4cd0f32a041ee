//! User checks: SQL that returns one number, and what the number must satisfy. Every
//! database backend runs them on a restored copy.

use serde::{Deserialize, Serialize};

/// A user check: SQL returning one number, and what it must satisfy (`>= 1`, `== 0`, `< 5`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserCheck {
    /// Shown in reports.
    pub name: String,
    /// A query returning one number, e.g. `SELECT count(*) FROM jobs WHERE status = 'done'`.
    pub sql: String,
    /// `OP NUMBER` with OP one of `>=`, `>`, `<=`, `<`, `==`, `!=`.
    pub expect: String,
}

/// Evaluates `OP NUMBER` (`>= 1`, `== 0`...) against `value`.
///
/// # Errors
/// A message when the expectation cannot be parsed.
pub fn expectation_holds(expect: &str, value: f64) -> std::result::Result<bool, String> {
    let expect = expect.trim();
    let split = expect
        .find(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        .unwrap_or(expect.len());
    let (op, number) = expect.split_at(split);
    let target: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("bad expectation {expect:?}: use e.g. \">= 1\""))?;
    match op.trim() {
        ">=" => Ok(value >= target),
        ">" => Ok(value > target),
        "<=" => Ok(value <= target),
        "<" => Ok(value < target),
        "==" | "=" => Ok(value == target),
        "!=" => Ok(value != target),
        other => Err(format!(
            "unknown operator {other:?} in {expect:?}: use >=, >, <=, <, == or !="
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::expectation_holds;

    #[test]
    fn expectations() {
        assert_eq!(expectation_holds(">= 1", 1.0), Ok(true));
        assert_eq!(expectation_holds("< 1", 1.0), Ok(false));
        assert_eq!(expectation_holds("== 0", 0.0), Ok(true));
        assert!(expectation_holds("~ 3", 1.0).is_err());
        assert!(expectation_holds(">= x", 1.0).is_err());
    }
}
