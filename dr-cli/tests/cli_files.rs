//! `kind = "directory"` from the command line: a full then an incremental backup, prune
//! keeping what the increment references, restores of the tree and of selected paths.

mod common;

use common::ok as run;

#[test]
fn directory_sources_back_up_incrementally_and_restore() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("storage");
    for i in 0..50 {
        let dir = data.join(format!("uploads/{}", i % 5));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.bin")), vec![i as u8; 10_000]).unwrap();
    }
    std::fs::create_dir_all(data.join("cache")).unwrap();
    std::fs::write(data.join("cache/tmp"), b"skip me").unwrap();
    let config = work.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[retention]\nkeep_last = 1\n[sources.storage]\nkind = \"directory\"\npath = \"{1}\"\nexclude = [\"cache\"]\n",
            work.path().display(),
            data.display()
        ),
    )
    .unwrap();
    let ok = |args: &[&str]| run(&config, args);
    ok(&["keygen"]);
    ok(&["init"]);
    ok(&["backup", "storage"]);
    std::fs::write(data.join("uploads/0/f0.bin"), b"changed").unwrap();
    ok(&["backup", "storage"]);
    let listed: serde_json::Value = serde_json::from_str(&ok(&["list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let newest = listed[0]["id"].as_str().unwrap().to_owned();
    let shown: serde_json::Value = serde_json::from_str(&ok(&["show", "--json", &newest])).unwrap();
    assert_eq!(shown["source_info"]["stored_files"], 1, "{shown}");
    // keep_last = 1, but the increment needs the full backup: both stay.
    let out = ok(&["prune"]);
    assert!(out.contains("2 kept"), "{out}");
    ok(&["verify", "storage"]);

    let restored = work.path().join("restored");
    let out = ok(&["restore", "storage", "--to", restored.to_str().unwrap()]);
    assert!(
        out.contains("50 files") && out.contains("matched its SHA-256"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(restored.join("uploads/0/f0.bin")).unwrap(),
        b"changed"
    );
    assert_eq!(
        std::fs::read(restored.join("uploads/4/f49.bin")).unwrap(),
        vec![49u8; 10_000]
    );
    assert!(!restored.join("cache").exists());

    let some = work.path().join("some");
    let out = ok(&[
        "restore",
        "storage",
        "--to",
        some.to_str().unwrap(),
        "--only",
        "uploads/3",
    ]);
    assert!(out.contains("10 files"), "{out}");
    assert!(!some.join("uploads/2").exists());
}

#[test]
fn bucket_sources_back_up_and_restore_into_another_bucket() {
    let work = tempfile::tempdir().unwrap();
    let bucket = work.path().join("bucket");
    for i in 0..10 {
        std::fs::create_dir_all(bucket.join("media")).unwrap();
        std::fs::write(
            bucket.join(format!("media/clip{i}.mp4")),
            vec![i as u8; 5000],
        )
        .unwrap();
    }
    let config = work.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[sources.media]\nkind = \"bucket\"\nurl = \"{1}\"\n",
            work.path().display(),
            bucket.display()
        ),
    )
    .unwrap();
    let ok = |args: &[&str]| run(&config, args);
    ok(&["keygen"]);
    ok(&["init"]);
    ok(&["backup", "media"]);
    std::fs::write(bucket.join("media/clip3.mp4"), b"re-encoded").unwrap();
    ok(&["backup", "media"]);
    let copy = work.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    let out = ok(&["restore", "media", "--to", copy.to_str().unwrap()]);
    assert!(out.contains("restored 10 objects"), "{out}");
    assert_eq!(
        std::fs::read(copy.join("media/clip3.mp4")).unwrap(),
        b"re-encoded"
    );
    assert_eq!(
        std::fs::read(copy.join("media/clip7.mp4")).unwrap(),
        vec![7u8; 5000]
    );
    let one = work.path().join("one");
    std::fs::create_dir_all(&one).unwrap();
    let out = ok(&[
        "restore",
        "media",
        "--to",
        one.to_str().unwrap(),
        "--only",
        "media/clip1.mp4",
    ]);
    assert!(out.contains("restored 1 objects"), "{out}");
}
