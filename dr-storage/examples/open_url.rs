//! Open (or create) a repository from a URL and list its backups.
//!
//! `cargo run -p dr-storage --example open_url -- ./my-repo`
//! `AWS_ENDPOINT=http://127.0.0.1:9000 cargo run -p dr-storage --example open_url -- s3://bucket/dr`

use dr_core::{Error, Identities, Result};

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./example-repo".into());
    let repo = match dr_storage::open_repository(&url, &[]).await {
        Err(Error::NotInitialised { .. }) => {
            let identities = Identities::generate();
            println!("creating a repository at {url} (with a throwaway key: this is an example)");
            dr_storage::init_repository(&url, &[], &identities.to_recipients()).await?
        }
        other => other?,
    };
    println!("repository {}", repo.location());
    for manifest in repo.list(None).await?.backups {
        println!(
            "{}  {}  {}  {} bytes",
            manifest.started_at,
            manifest.source,
            manifest.id,
            manifest.plain_size()
        );
    }
    Ok(())
}
