//! Back up a byte stream into an in-memory repository, verify it and restore it.
//!
//! `cargo run -p dr-core --example memory_roundtrip`

use std::sync::Arc;

use dr_core::object_store::memory::InMemory;
use dr_core::{
    Backup, BackupOptions, BackupSelector, BackupWriter, Identities, Repository, Result,
    SourceInfo, VerifyLevel, async_trait,
};

/// A "datastore" that is just some text.
struct Notes(String);

#[async_trait]
impl Backup for Notes {
    fn kind(&self) -> &'static str {
        "example.notes"
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        out.put_artifact("notes", &mut self.0.as_bytes()).await?;
        let mut info = SourceInfo::new();
        info.insert("lines".into(), self.0.lines().count().into());
        Ok(info)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let identities = Identities::generate();
    let repo = Repository::init(
        Arc::new(InMemory::new()),
        "memory://",
        &identities.to_recipients(),
    )
    .await?
    .with_identities(identities);
    let notes = Notes("restore drill on the 1st\nrotate keys yearly\n".repeat(1000));
    let manifest = repo
        .backup("notes", &notes, &BackupOptions::default())
        .await?;
    println!(
        "backup {}: {} plain bytes stored as {} bytes",
        manifest.id,
        manifest.plain_size(),
        manifest.stored_size()
    );
    let reader = repo.open_backup("notes", &BackupSelector::Latest).await?;
    let report = reader.verify_objects(VerifyLevel::Checksums).await?;
    println!("verify: {:?} {:?}", report.passed, report.problems);
    let mut restored = Vec::new();
    reader.copy_artifact("notes", &mut restored).await?;
    assert_eq!(restored, notes.0.as_bytes());
    println!("restored {} bytes, identical", restored.len());
    Ok(())
}
