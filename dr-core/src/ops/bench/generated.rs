//! The data a pipeline bench backs up: about 70 % text-like (compressible, like dumps and
//! JSON) and 30 % random (like media and encrypted blobs), in 64 KiB blocks, the same every
//! run, generated as it is written (memory stays one block).

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::manifest::SourceInfo;
use crate::pipeline::BackupWriter;
use crate::traits::Backup;

/// The one artifact of a generated backup.
pub(super) const ARTIFACT: &str = "data";

/// `bytes` of generated data as one artifact.
pub(super) struct Generated {
    pub(super) bytes: u64,
}

#[async_trait]
impl Backup for Generated {
    fn kind(&self) -> &'static str {
        "bench"
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let mut writer = out.artifact(ARTIFACT)?;
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut block = vec![0u8; 64 << 10];
        let mut left = self.bytes;
        let mut n = 0u64;
        while left > 0 {
            fill(&mut block, &mut state, n);
            let take = block.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            writer
                .write_all(&block[..take])
                .await
                .map_err(|e| Error::io("writing generated data", e))?;
            left -= take as u64;
            n += 1;
        }
        writer.finish().await?;
        Ok(SourceInfo::new())
    }
}

/// Block `n`: random for 3 in 10 blocks, JSON lines otherwise.
fn fill(block: &mut [u8], state: &mut u64, n: u64) {
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    };
    if n % 10 < 3 {
        for chunk in block.chunks_mut(8) {
            let bytes = next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        return;
    }
    let mut line = Vec::with_capacity(128);
    let mut at = 0;
    while at < block.len() {
        line.clear();
        let id = next() % 100_000;
        line.extend_from_slice(
            format!(
                "{{\"id\":{id},\"status\":\"done\",\"user\":\"user{}\",\"bytes\":{}}}\n",
                id % 997,
                next() % 1_000_000
            )
            .as_bytes(),
        );
        let take = line.len().min(block.len() - at);
        block[at..at + take].copy_from_slice(&line[..take]);
        at += take;
    }
}
