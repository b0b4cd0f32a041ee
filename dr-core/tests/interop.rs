//! Interop with the stock tools: what dr writes decodes with `age -d -i KEY` and `zstd -d`,
//! byte-identical, and a part made by `zstd | age -r` decodes in dr.

use std::process::Command;
use std::sync::Arc;

use dr_core::object_store::local::LocalFileSystem;
use dr_core::{
    BackupOptions, ExpectedPart, Identities, PipelineOptions, Repository, decode_part, sha256_hex,
};
use dr_testing::conformance::SMALL_PART;
use dr_testing::{MixedData, StreamSource, require_binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_age_and_zstd_recover_an_artifact() {
    require_binary("age", "age");
    require_binary("zstd", "zstd");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    dr_core::generate_identity_file(&key, None).unwrap();
    let identities = Identities::from_file(&key).unwrap();
    let repo_dir = dir.path().join("repo");
    std::fs::create_dir(&repo_dir).unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(&repo_dir).unwrap());
    let repo = Repository::init(store, "local", &identities.to_recipients())
        .await
        .unwrap()
        .with_pipeline(PipelineOptions::default().with_part_size(SMALL_PART));
    let size = 3 * SMALL_PART as u64 + 123;
    let manifest = repo
        .backup(
            "app",
            &StreamSource { seed: 5, size },
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(manifest.artifacts[0].parts.len(), 4);

    // Exactly the recipe of FORMAT.md: parts in name order, each through age, then zstd.
    let backup_dir = repo_dir.join("backups/app").join(&manifest.id);
    let script = r#"set -euo pipefail; cd "$1"; for p in $(ls data.*.zst.age | sort); do age -d -i "$2" "$p"; done | zstd -d -q > "$3""#;
    let out = dir.path().join("restored.bin");
    let status = Command::new("bash")
        .args(["-c", script, "recover"])
        .arg(&backup_dir)
        .arg(&key)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "stock pipeline failed");
    let restored = std::fs::read(&out).unwrap();
    assert_eq!(restored.len() as u64, size);
    assert_eq!(
        sha256_hex(&restored),
        MixedData::sha256(5, size),
        "stock tools give the same bytes"
    );

    // The manifest-driven recipe of FORMAT.md (jq picks the parts in index order).
    require_binary("jq", "jq");
    let by_manifest = r#"set -euo pipefail; cd "$1"; for p in $(jq -r '.artifacts[] | select(.name == "data") | .parts | sort_by(.index) | .[].object' manifest.json); do age -d -i "$2" "$p"; done | zstd -d -q > "$3""#;
    let out2 = dir.path().join("restored-by-manifest.bin");
    let status = Command::new("bash")
        .args(["-c", by_manifest, "recover"])
        .arg(&backup_dir)
        .arg(&key)
        .arg(&out2)
        .status()
        .unwrap();
    assert!(status.success(), "manifest-driven recipe failed");
    assert_eq!(std::fs::read(&out2).unwrap(), restored);

    // And `sha256sum -c SHA256SUMS` accepts the stored objects.
    let check = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&backup_dir)
        .status()
        .unwrap();
    assert!(check.success(), "sha256sum -c failed");
}

#[test]
fn dr_decodes_a_part_made_by_stock_tools() {
    require_binary("age", "age");
    require_binary("zstd", "zstd");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    let public = dr_core::generate_identity_file(&key, None).unwrap();
    let plain = MixedData::bytes(9, 200_000);
    let input = dir.path().join("plain.bin");
    std::fs::write(&input, &plain).unwrap();
    let part = dir.path().join("part.zst.age");
    let status = Command::new("bash")
        .args(["-c", r#"zstd -q -c "$1" | age -r "$2" > "$3""#, "enc"])
        .arg(&input)
        .arg(&public)
        .arg(&part)
        .status()
        .unwrap();
    assert!(status.success());
    let stored = std::fs::read(&part).unwrap();
    let identities = Identities::from_file(&key).unwrap();
    let plain_sha = sha256_hex(&plain);
    let stored_sha = sha256_hex(&stored);
    let expected = ExpectedPart {
        key: "part.zst.age",
        plain_size: plain.len() as u64,
        plain_sha256: &plain_sha,
        stored_sha256: &stored_sha,
        recipients: &[public],
    };
    assert_eq!(decode_part(&stored, &identities, expected).unwrap(), plain);
}
