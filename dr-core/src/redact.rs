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

/// Returns `url` with the password of its user info and the values of secret-looking query
/// parameters replaced by `***`. Plain paths are returned unchanged.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            let secret = SECRET_PARAMS.iter().any(|s| lower.contains(s));
            (
                k.into_owned(),
                if secret {
                    "***".to_owned()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    if !pairs.is_empty() {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
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
}
