//! Backup sources for tests: a stream of mixed data, and one that fails midway.

use dr_core::{Backup, BackupWriter, Error, Result, SourceInfo, async_trait};

use crate::data::MixedData;

/// Backs up `size` bytes of [`MixedData`] from `seed` as the artifact `data`.
pub struct StreamSource {
    pub seed: u64,
    pub size: u64,
}

#[async_trait]
impl Backup for StreamSource {
    fn kind(&self) -> &'static str {
        "test.stream"
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let mut data = MixedData::new(self.seed, self.size);
        out.put_artifact("data", &mut data).await?;
        let mut info = SourceInfo::new();
        info.insert("seed".into(), self.seed.into());
        Ok(info)
    }
}

/// Writes `fail_after` bytes, then fails as a dying `pg_dump` would.
pub struct FailingSource {
    pub fail_after: u64,
}

#[async_trait]
impl Backup for FailingSource {
    fn kind(&self) -> &'static str {
        "test.failing"
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let mut writer = out.artifact("data")?;
        let mut data = MixedData::new(7, self.fail_after);
        tokio::io::copy(&mut data, &mut writer)
            .await
            .map_err(|e| Error::from_io("copy", e))?;
        Err(Error::backend(
            "source",
            "backup",
            "simulated source failure: dump exited with status 1",
        ))
    }
}
