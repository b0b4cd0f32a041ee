//! Directory trees, side by side in one run: full backup, backup after a 1 % change, and
//! full restore with dr, restic and BorgBackup (both encrypted, zstd level 3 for borg), and a
//! plain `tar | zstd -3 -T2 | age` with its restore.
//!
//! `cargo bench --bench files -- [--files 20000] [--size-mib 2048] [--tools tar,restic,borg,dr]`
//!
//! At scale (issue 18): `--files 1000000 --size-mib 1024 --tools dr,dr-bucket` (a million
//! small files, then the same tree read as a bucket of a million objects; each row also
//! gives the time per file). `dr-bucket` is not in the default tools.
//!
//! Generates the tree in `target/bench-files` (about 70 % compressible text, 30 % random).
//! Needs the Debian packages `restic`, `borgbackup`, `zstd` and `age`.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench binary: failing loudly is right

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::{arg, dir_size, measure, path};
use dr::storage::files::{BucketSource, BucketTarget, DirectorySource, DirectoryTarget};
use dr::{BackupOptions, BackupSelector, Identities, RestoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

const PASSWORD: &str = "dr-bench-password";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        common::child(&args[1..], prepare, work);
        return;
    }
    let files: usize = arg(&args, "--files").map_or(20_000, |v| v.parse().unwrap());
    let tools: Vec<String> = common::list(&args, "--tools", "tar,restic,borg,dr");
    let with = |tool: &str| tools.iter().any(|t| t == tool);
    let size: u64 = arg(&args, "--size-mib").map_or(2048, |v| v.parse::<u64>().unwrap()) << 20;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-files");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tree = dir.join("tree");
    generate(&tree, files, size);
    let key = dir.join("key.txt");
    let recipient = dr::generate_identity_file(&key, None).unwrap();
    let bytes = dir_size(&tree);
    println!("\n{files} files, {:.0} MB", bytes as f64 / 1e6);
    println!("| tool | operation | MB/s | seconds | µs per file | peak RSS MiB | stored MB |");
    println!("|---|---|---|---|---|---|---|");
    let row = |tool: &str, op: &str, m: (f64, u64), stored: u64| {
        println!(
            "| {tool} | {op} | {:.0} | {:.2} | {:.0} | {:.0} | {} |",
            bytes as f64 / m.0 / 1e6,
            m.0,
            m.0 * 1e6 / files as f64,
            m.1 as f64 / 1024.0,
            if stored > 0 {
                format!("{:.0}", stored as f64 / 1e6)
            } else {
                "-".into()
            }
        );
    };
    let t = path(&tree);
    let out = dir.join("restore");
    // Restores start from an empty target with no dirty pages left by the previous run.
    let clean = format!("rm -rf {0} && mkdir -p {0} && sync", path(&out));
    let change = format!(
        "{} --child change {t}",
        path(&std::env::current_exe().unwrap())
    );

    if with("tar") {
        let plain = dir.join("tree.tar.zst.age");
        let m = measure(&[
            "shell",
            &format!(
                "tar -cf - -C {t} . | zstd -3 -T2 -q | age -r {recipient} > {}",
                path(&plain)
            ),
        ]);
        row(
            "tar \\| zstd \\| age",
            "full backup",
            m,
            std::fs::metadata(&plain).map_or(0, |m| m.len()),
        );
        let m = measure(&[
            "shell",
            &format!(
                "age -d -i {} {} | zstd -d -q | tar -x -C {}",
                path(&key),
                path(&plain),
                path(&out)
            ),
            &clean,
        ]);
        row("tar \\| zstd \\| age", "restore", m, 0);
    }

    if with("restic") {
        let restic = dir.join("restic");
        let env = format!(
            "RESTIC_PASSWORD={PASSWORD} RESTIC_REPOSITORY={}",
            path(&restic)
        );
        let init = format!("rm -rf {0} && {env} restic init -q", path(&restic));
        let m = measure(&["shell", &format!("{env} restic backup -q {t}"), &init]);
        row("restic", "full backup", m, dir_size(&restic));
        let m = measure(&["shell", &format!("{env} restic backup -q {t}"), &change]);
        row("restic", "backup after 1 % changed", m, 0);
        let m = measure(&[
            "shell",
            &format!("{env} restic restore -q latest --target {}", path(&out)),
            &clean,
        ]);
        row("restic", "restore", m, 0);
    }

    if with("borg") {
        let borg = dir.join("borg");
        let env = format!(
            "BORG_PASSPHRASE={PASSWORD} BORG_REPO={} BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes",
            path(&borg)
        );
        let init = format!("rm -rf {0} && {env} borg init -e repokey", path(&borg));
        let name = "$(date +%s%N)";
        let m = measure(&[
            "shell",
            &format!("cd {t} && {env} borg create --compression zstd,3 ::{name} ."),
            &init,
        ]);
        row("borg", "full backup", m, dir_size(&borg));
        let m = measure(&[
            "shell",
            &format!("cd {t} && {env} borg create --compression zstd,3 ::{name} ."),
            &change,
        ]);
        row("borg", "backup after 1 % changed", m, 0);
        let m = measure(&[
            "shell",
            &format!(
                "cd {} && {env} borg extract ::$({env} borg list --last 1 --short)",
                path(&out)
            ),
            &clean,
        ]);
        row("borg", "restore", m, 0);
    }

    if with("dr") {
        let repo = dir.join("repo");
        let m = measure(&["full", t, path(&repo), path(&key)]);
        row("dr", "full backup", m, dir_size(&repo));
        let m = measure(&["incremental", t, path(&repo), path(&key)]);
        row("dr", "backup after 1 % changed", m, 0);
        let m = measure(&["restore", t, path(&repo), path(&key), path(&out)]);
        row("dr", "restore", m, 0);
    }
    if with("dr-bucket") {
        // The same tree as a bucket: a local directory read through object_store, one
        // object per file, restored into an empty local bucket.
        let repo = dir.join("bucket-repo");
        let m = measure(&["bucket-full", t, path(&repo), path(&key)]);
        row("dr bucket", "full backup", m, dir_size(&repo));
        let m = measure(&["bucket-incremental", t, path(&repo), path(&key)]);
        row("dr bucket", "backup after 1 % changed", m, 0);
        let m = measure(&["bucket-restore", t, path(&repo), path(&key), path(&out)]);
        row("dr bucket", "restore", m, 0);
    }
}

/// `files` files in nested directories, `size` bytes in all: 70 % text, 30 % random.
fn generate(root: &Path, files: usize, size: u64) {
    let mut rng = StdRng::seed_from_u64(7);
    let average = size / files as u64;
    let words = [
        "alpha", "beta", "gamma", "delta", "upload", "user", "video", "2026", "{\"id\":", "},",
    ];
    for i in 0..files {
        let dir = root.join(format!("d{:02}/e{:03}", i % 50, i % 997));
        std::fs::create_dir_all(&dir).unwrap();
        let len = rng.random_range(average / 2..average * 3 / 2) as usize;
        let mut data = vec![0u8; len];
        if i % 10 < 3 {
            rng.fill_bytes(&mut data);
        } else {
            let mut pos = 0;
            while pos < len {
                let w = words[rng.random_range(0..words.len())].as_bytes();
                let n = w.len().min(len - pos);
                data[pos..pos + n].copy_from_slice(&w[..n]);
                pos += n;
                if pos < len {
                    data[pos] = b' ';
                    pos += 1;
                }
            }
        }
        std::fs::File::create(dir.join(format!("f{i:06}.dat")))
            .unwrap()
            .write_all(&data)
            .unwrap();
    }
}

/// Rewrites 1 % of the files (every 100th) with new content.
fn change_one_percent(root: &Path) {
    let mut n = 0;
    for d in std::fs::read_dir(root).unwrap() {
        for e in std::fs::read_dir(d.unwrap().path()).unwrap() {
            for f in std::fs::read_dir(e.unwrap().path()).unwrap() {
                let f = f.unwrap().path();
                n += 1;
                if n % 100 == 0 {
                    let mut data = std::fs::read(&f).unwrap();
                    data.iter_mut()
                        .take(64)
                        .for_each(|b| *b = b.wrapping_add(1));
                    std::fs::write(&f, data).unwrap();
                }
            }
        }
    }
}

fn prepare(args: &[String]) {
    match args[0].as_str() {
        "shell" if args.len() > 2 => {
            let status = std::process::Command::new("bash")
                .args(["-c", &args[2]])
                .status()
                .unwrap();
            assert!(status.success(), "preparation failed: {}", args[2]);
        }
        "full" | "bucket-full" => {
            let _ = std::fs::remove_dir_all(&args[2]);
        }
        "incremental" | "bucket-incremental" => change_one_percent(Path::new(&args[1])),
        "restore" | "bucket-restore" => {
            let _ = std::fs::remove_dir_all(&args[4]);
            std::fs::create_dir_all(&args[4]).unwrap();
            let _ = std::process::Command::new("sync").status();
        }
        _ => {}
    }
}

fn work(args: &[String]) {
    if args[0] == "change" {
        change_one_percent(Path::new(&args[1]));
        return;
    }
    common::runtime(2).block_on(async {
        let ids = Identities::from_file(Path::new(&args[3])).unwrap();
        let root = PathBuf::from(&args[1]);
        match args[0].as_str() {
            "full" => {
                let repo = dr::storage::init_repository(&args[2], &[], &ids.to_recipients())
                    .await
                    .unwrap();
                repo.backup(
                    "tree",
                    &DirectorySource::new(&root),
                    &BackupOptions::default(),
                )
                .await
                .unwrap();
            }
            "incremental" => {
                let repo = dr::storage::open_repository(&args[2], &[])
                    .await
                    .unwrap()
                    .with_identities(ids);
                let parent = repo.find("tree", &BackupSelector::Latest).await.unwrap();
                repo.backup(
                    "tree",
                    &DirectorySource::new(&root).with_parent_backup(repo.reader(parent)),
                    &BackupOptions::default(),
                )
                .await
                .unwrap();
            }
            "bucket-full" | "bucket-incremental" | "bucket-restore" => {
                bucket_child(&args[0], &root, &args[2], ids, args.get(4)).await;
            }
            _ => {
                let repo = dr::storage::open_repository(&args[2], &[])
                    .await
                    .unwrap()
                    .with_identities(ids);
                let reader = repo
                    .open_backup("tree", &BackupSelector::Latest)
                    .await
                    .unwrap();
                DirectoryTarget::new(&root, repo.clone())
                    .restore_tree(&reader, &RestoreOptions::default().with_target(&args[4]))
                    .await
                    .unwrap();
            }
        }
    });
}

/// The bucket operations: `root` read as a bucket, restored into the bucket `out`.
async fn bucket_child(op: &str, root: &Path, repo: &str, ids: Identities, out: Option<&String>) {
    use dr::core::object_store::local::LocalFileSystem;
    let bucket = |dir: &Path| -> std::sync::Arc<dyn dr::core::object_store::ObjectStore> {
        std::sync::Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
    };
    let source = BucketSource::new(bucket(root), None);
    if op == "bucket-full" {
        let repo = dr::storage::init_repository(repo, &[], &ids.to_recipients())
            .await
            .unwrap();
        repo.backup("bucket", &source, &BackupOptions::default())
            .await
            .unwrap();
        return;
    }
    let repo = dr::storage::open_repository(repo, &[])
        .await
        .unwrap()
        .with_identities(ids);
    let latest = repo.find("bucket", &BackupSelector::Latest).await.unwrap();
    if op == "bucket-incremental" {
        let source = source.with_parent_backup(repo.reader(latest));
        repo.backup("bucket", &source, &BackupOptions::default())
            .await
            .unwrap();
        return;
    }
    let out = Path::new(out.unwrap());
    BucketTarget::new(bucket(out), None, repo.clone())
        .restore_objects(&repo.reader(latest), &[])
        .await
        .unwrap();
}
