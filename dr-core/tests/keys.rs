//! Keys: identity files, passphrase protection, recipients, and error wording.

use std::os::unix::fs::PermissionsExt;

use dr_core::{Error, Identities, Recipients, generate_identity_file};

#[test]
fn identity_file_is_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.txt");
    let public = generate_identity_file(&path, None).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&path).unwrap();
    let err = generate_identity_file(&path, None).unwrap_err();
    assert!(matches!(err, Error::IdentityExists(_)), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "file untouched");
    let identities = Identities::from_file(&path).unwrap();
    assert_eq!(
        identities.to_recipients().to_strings(),
        std::slice::from_ref(&public)
    );
    // An identity file also works as a recipients file.
    assert_eq!(Recipients::from_file(&path).unwrap().to_strings(), [public]);
}

#[test]
fn passphrase_protected_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.age");
    let public = generate_identity_file(&path, Some("correct horse")).unwrap();
    let text = std::fs::read(&path).unwrap();
    assert!(
        !String::from_utf8_lossy(&text).contains("AGE-SECRET-KEY"),
        "secret is encrypted"
    );
    let err = Identities::from_file(&path).unwrap_err();
    assert!(err.to_string().contains("passphrase-protected"), "{err}");
    let err = Identities::from_encrypted_file(&path, "wrong").unwrap_err();
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
    let identities = Identities::from_encrypted_file(&path, "correct horse").unwrap();
    assert_eq!(identities.to_recipients().to_strings(), [public]);
}

#[test]
fn bad_key_material_is_reported_without_the_key() {
    let secretish = "AGE-SECRET-KEY-1NOTAVALIDKEYATALL";
    let err = Identities::parse(secretish, "inline").unwrap_err();
    assert!(!err.to_string().contains(secretish), "{err}");
    assert!(
        err.to_string().starts_with("Bad key material in inline"),
        "{err}"
    );
    let err = Recipients::parse("# only a comment\n", "recipients.txt").unwrap_err();
    assert!(err.to_string().contains("no age recipient"), "{err}");
    let identities = Identities::generate();
    assert_eq!(format!("{identities:?}"), "Identities(1 redacted)");
}

#[test]
fn error_messages_say_what_to_do() {
    let cases: Vec<(Error, &str)> = vec![
        (
            Error::NotInitialised {
                location: "file:///r".into(),
            },
            "No dr repository at file:///r: check the repository URL (and that its disk or bucket is there); `dr init` creates a new, empty one only when setting up",
        ),
        (
            Error::NoMatchingIdentity {
                recipients: "age1abc".into(),
            },
            "No identity matches this backup: it was encrypted to age1abc; load the secret key of one of those (pass --identity FILE, set DR_IDENTITY, or set `identity` in dr.toml)",
        ),
        (
            Error::CorruptPart {
                key: "backups/db/x/db.000000.zst.age".into(),
                what: "stored",
                expected: "aa".into(),
                actual: "bb".into(),
            },
            "Corrupt object backups/db/x/db.000000.zst.age: stored SHA-256 is bb, its manifest backups/db/x/manifest.json expects aa (the object or that record is damaged); restore from another backup or a copy of the repository",
        ),
        (
            Error::UnsupportedFormat {
                what: "repository",
                found: 9,
                supported: 1,
            },
            "Unsupported repository format version 9 (this dr reads version 1): upgrade dr",
        ),
        (
            Error::MissingObject { key: "k".into() },
            "Missing object k: the backup is incomplete; restore from another backup or a copy of the repository",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
        assert!(!error.is_retryable());
    }
}
