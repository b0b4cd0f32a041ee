//! A minimal async reader of the tars dr writes: regular files (with GNU long names),
//! bodies streamed in 1 MiB pieces, other entries skipped.

use dr_core::{Error, Result};

/// A minimal async tar reader for regular-file entries (with GNU long names).
pub(crate) struct TarStream {
    input: dr_core::ArtifactReader,
    long_name: Option<String>,
}

impl TarStream {
    pub(crate) fn new(input: dr_core::ArtifactReader) -> Self {
        TarStream {
            input,
            long_name: None,
        }
    }

    pub(crate) async fn next_header(&mut self) -> Result<Option<(String, u64)>> {
        use tokio::io::AsyncReadExt;
        loop {
            let mut block = [0u8; 512];
            match self.input.read_exact(&mut block).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(Error::from_io("reading the tar", e)),
            }
            if block.iter().all(|b| *b == 0) {
                return Ok(None);
            }
            let header = tar::Header::from_byte_slice(&block);
            let size = header
                .entry_size()
                .map_err(|e| Error::from_io("reading the tar", e))?;
            match header.entry_type() {
                tar::EntryType::GNULongName => {
                    let mut name =
                        vec![0u8; usize::try_from(size.div_ceil(512) * 512).unwrap_or(0)];
                    self.input
                        .read_exact(&mut name)
                        .await
                        .map_err(|e| Error::from_io("reading the tar", e))?;
                    name.truncate(usize::try_from(size).unwrap_or(0));
                    self.long_name = Some(
                        String::from_utf8_lossy(&name)
                            .trim_end_matches('\0')
                            .to_owned(),
                    );
                }
                tar::EntryType::Regular => {
                    let name = match self.long_name.take() {
                        Some(n) => n,
                        None => String::from_utf8_lossy(&header.path_bytes()).into_owned(),
                    };
                    return Ok(Some((name, size)));
                }
                _ => self.skip(size).await?,
            }
        }
    }

    pub(crate) async fn skip(&mut self, size: u64) -> Result<()> {
        self.body(size, |_| {}).await
    }

    pub(crate) async fn body(&mut self, size: u64, mut each: impl FnMut(&[u8])) -> Result<()> {
        use tokio::io::AsyncReadExt;
        let mut remaining = size.div_ceil(512) * 512;
        let mut data_left = size;
        let mut buf = vec![0u8; 1 << 20];
        while remaining > 0 {
            let want = usize::try_from(remaining.min(buf.len() as u64)).unwrap_or(buf.len());
            self.input
                .read_exact(&mut buf[..want])
                .await
                .map_err(|e| Error::from_io("reading the tar", e))?;
            let data = usize::try_from(data_left.min(want as u64)).unwrap_or(0);
            each(&buf[..data]);
            data_left -= data as u64;
            remaining -= want as u64;
        }
        Ok(())
    }
}
