//! Removing secrets from URLs before they are shown.

/// Query parameter names whose values are secret.
const SECRET_PARAMS: [&str; 7] = [
    "secret",
    "key",
    "token",
    "password",
    "signature",
    "sig",
    "credential",
];

/// Returns `url` with the password of its user info and the values of secret-looking
/// parameters (`password=`, `secret_access_key=`, ...) replaced by `***`. Works on strings
/// that are not valid URLs too (a typo in the port, a libpq `key=value` string): those are
/// redacted by text, erring on the side of hiding more. Plain paths are returned unchanged.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        // A password with `/` or `?` in it, unencoded, can parse as a port and a path.
        Ok(parsed) if parsed.password().is_some() || redact_userinfo(url) == url => {
            redact_text(&redact_parsed(parsed))
        }
        _ => redact_text(&redact_userinfo(url)),
    }
}

fn redact_parsed(mut parsed: url::Url) -> String {
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let value = if is_secret_name(&k) {
                "***".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), value)
        })
        .collect();
    if !pairs.is_empty() {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| lower.contains(s))
}

/// `scheme://user:SECRET@host...` with everything between the first `:` of the user info
/// and the last `@` hidden, for strings the URL parser refuses.
fn redact_userinfo(text: &str) -> String {
    let Some(scheme_end) = text.find("://").map(|i| i + 3) else {
        return text.to_owned();
    };
    let rest = &text[scheme_end..];
    let Some(at) = rest.rfind('@') else {
        return text.to_owned();
    };
    let Some(colon) = rest[..at].find(':') else {
        return text.to_owned();
    };
    format!(
        "{}{}:***{}",
        &text[..scheme_end],
        &rest[..colon],
        &rest[at..]
    )
}

/// Every `NAME=VALUE` whose name looks secret gets `***` as its value; a value ends at `&`,
/// `;`, whitespace or a quote (a quoted value at its closing quote).
fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (before, after) = rest.split_at(eq);
        let name_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(0, |i| i + 1);
        out.push_str(before);
        out.push('=');
        let value = &after[1..];
        if !is_secret_name(&before[name_start..]) {
            rest = value;
            continue;
        }
        let end = secret_value_end(value);
        out.push_str("***");
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

fn secret_value_end(value: &str) -> usize {
    match value.chars().next() {
        Some(quote @ ('\'' | '"')) => value[1..].find(quote).map_or(value.len(), |i| i + 2),
        _ => value
            .find(|c: char| matches!(c, '&' | ';' | '\'' | '"') || c.is_whitespace())
            .unwrap_or(value.len()),
    }
}

/// `%XX` sequences decoded (user names, passwords and database names in URLs).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::redact_url;
    use proptest::prelude::*;

    #[test]
    fn password_and_secret_params_are_hidden() {
        let shown = redact_url("s3://AKIA:hunter2@bucket/prefix?region=eu&secret_access_key=abc");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("abc"), "{shown}");
        assert!(shown.contains("region=eu"), "{shown}");
    }

    #[test]
    fn plain_paths_are_unchanged() {
        assert_eq!(redact_url("/var/backups/dr"), "/var/backups/dr");
    }

    #[test]
    fn urls_that_do_not_parse_are_redacted() {
        for url in [
            "postgres://app:hunter2@db.example:54x32/shop",
            "redis://:hunter2@[::1:6379",
            "postgres://app:hun@ter2@host/db",
            "host=db user=app password=hunter2 dbname=shop",
            "host=db password='hunter2 x' dbname=shop",
            "postgres://app:123/hunter2@host/db",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains("hunter2"), "{url} -> {shown}");
        }
        assert_eq!(
            redact_url("postgres://app:hunter2@db:54x32/shop"),
            "postgres://app:***@db:54x32/shop"
        );
    }

    /// Passwords of any bytes a URL can carry (percent-encoded or raw), in user info or
    /// secret parameters, in URLs with broken ports and hosts.
    fn password() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]{6,12}[!$&()*+,;=:@/?#%~-]{0,3}[A-Za-z0-9]{2}".prop_map(|s| format!("Pw{s}"))
    }

    fn encoded(password: &str) -> String {
        password
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn no_password_survives(
            pw in password(),
            scheme in prop::sample::select(vec!["postgres", "redis", "rediss", "s3", "https"]),
            host in prop::sample::select(vec!["db.example", "[::1]", "[::1", "db..x", "h st", ""]),
            port in prop::sample::select(vec!["", ":5432", ":54x32", ":", ":99999"]),
            raw in any::<bool>(),
            place in 0..3u8,
        ) {
            let shown_pw = if raw { pw.clone() } else { encoded(&pw) };
            let url = match place {
                0 => format!("{scheme}://user:{shown_pw}@{host}{port}/db"),
                1 => format!("{scheme}://{host}{port}/db?sslmode=require&password={shown_pw}"),
                _ => format!("host={host} port={port} password={shown_pw} user=app"),
            };
            let shown = redact_url(&url);
            // The password itself, or the stretch of it that is not URL punctuation.
            let core: String = pw.chars().take_while(char::is_ascii_alphanumeric).collect();
            prop_assert!(!shown.contains(&pw), "{url} -> {shown}");
            prop_assert!(!shown.contains(&encoded(&pw)), "{url} -> {shown}");
            prop_assert!(!shown.contains(&core), "{url} -> {shown}");
        }
    }
}
