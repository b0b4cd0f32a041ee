//! The embedded default end to end: back up a file into a local-directory repository, list,
//! verify, simulate losing the file, restore it, and print the time to recover.
//!
//! `cargo run --release --example backup_file [FILE]` (without FILE, 64 MiB of sample data)

use std::path::{Path, PathBuf};
use std::time::Instant;

use dr::{
    Backup, BackupOptions, BackupSelector, BackupWriter, Error, Identities, Result, SourceInfo,
    VerifyLevel,
};
use sha2::{Digest, Sha256};

/// Backs up one file as the artifact `file`.
struct FileSource(PathBuf);

#[dr::async_trait]
impl Backup for FileSource {
    fn kind(&self) -> &'static str {
        "example.file"
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let mut file = tokio::fs::File::open(&self.0)
            .await
            .map_err(|e| Error::io(format!("opening {}", self.0.display()), e))?;
        out.put_artifact("file", &mut file).await?;
        Ok(SourceInfo::new())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let work = tempfile::tempdir().map_err(|e| Error::io("creating a work directory", e))?;
    let input = match std::env::args().nth(1) {
        Some(path) => PathBuf::from(path),
        None => sample_file(work.path()).await?,
    };
    let original_sha = sha256_file(&input)?;
    let key = work.path().join("key.txt");
    let public = dr::generate_identity_file(&key, None)?;
    let repo_path = work.path().join("repo");
    let url = repo_path.to_string_lossy().into_owned();
    let identities = Identities::from_file(&key)?;
    let repo = dr::storage::init_repository(&url, &[], &identities.to_recipients()).await?;
    println!(
        "1. repository {} created, encrypting to {public}",
        repo.location()
    );

    let started = Instant::now();
    let manifest = repo
        .backup(
            "sample",
            &FileSource(input.clone()),
            &BackupOptions::default(),
        )
        .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "2. backup {}: {:.1} MiB in {secs:.2} s ({:.0} MB/s), stored {:.1} MiB",
        manifest.id,
        mib(manifest.plain_size()),
        manifest.plain_size() as f64 / secs / 1e6,
        mib(manifest.stored_size())
    );
    for m in repo.list(None).await?.backups {
        println!(
            "3. listed: {}  {}  {}  {} parts",
            m.started_at,
            m.source,
            m.id,
            m.parts().count()
        );
    }
    let repo = repo.with_identities(identities);
    let reader = repo.open_backup("sample", &BackupSelector::Latest).await?;
    let report = reader.verify_objects(VerifyLevel::Checksums).await?;
    println!("4. verify: {}", report.passed.join("; "));

    let restored = work.path().join("restored.bin");
    println!(
        "5. disaster: the file is gone; restoring into {}",
        restored.display()
    );
    let started = Instant::now();
    let mut out = tokio::fs::File::create(&restored)
        .await
        .map_err(|e| Error::io("creating the restore target", e))?;
    reader.copy_artifact("file", &mut out).await?;
    out.sync_all()
        .await
        .map_err(|e| Error::io("syncing the restore target", e))?;
    let rto = started.elapsed();
    let same = sha256_file(&restored)? == original_sha;
    println!(
        "6. restored in {:.2} s; SHA-256 identical: {same}",
        rto.as_secs_f64()
    );
    println!(
        "   by hand: for p in $(ls {}/backups/sample/*/file.*.zst.age | sort); do age -d -i KEY \"$p\"; done | zstd -d",
        repo_path.display()
    );
    if !same {
        return Err(Error::Usage("restored bytes differ".into()));
    }
    Ok(())
}

async fn sample_file(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("sample.bin");
    let mut data = dr_testing::MixedData::new(1, 64 * 1024 * 1024);
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| Error::io("creating sample", e))?;
    tokio::io::copy(&mut data, &mut file)
        .await
        .map_err(|e| Error::io("writing sample", e))?;
    Ok(path)
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}
