//! Deterministic test data, streamed: about 70 % JSON-like text and 30 % random bytes.

use std::pin::Pin;
use std::task::{Context, Poll};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

const BLOCK: usize = 64 * 1024;

/// An `AsyncRead` of `size` bytes of mixed data from `seed`; the same seed and size always
/// give the same bytes, so tests compare hashes instead of holding the data.
pub struct MixedData {
    rng: StdRng,
    remaining: u64,
    block: Vec<u8>,
    pos: usize,
}

impl MixedData {
    pub fn new(seed: u64, size: u64) -> Self {
        MixedData {
            rng: StdRng::seed_from_u64(seed),
            remaining: size,
            block: Vec::new(),
            pos: 0,
        }
    }

    /// SHA-256 (hex) and the bytes themselves would be too big; this streams and hashes.
    pub fn sha256(seed: u64, size: u64) -> String {
        let mut data = MixedData::new(seed, size);
        let mut hasher = Sha256::new();
        while let Some(block) = data.next_block() {
            hasher.update(block);
        }
        hex::encode(hasher.finalize())
    }

    /// The whole content in memory (small sizes only).
    pub fn bytes(seed: u64, size: u64) -> Vec<u8> {
        let mut data = MixedData::new(seed, size);
        let mut out = Vec::with_capacity(size as usize);
        while let Some(block) = data.next_block() {
            out.extend_from_slice(block);
        }
        out
    }

    fn next_block(&mut self) -> Option<&[u8]> {
        if self.remaining == 0 {
            return None;
        }
        let len = (self.remaining as usize).min(BLOCK);
        self.block.clear();
        if self.rng.random_ratio(3, 10) {
            self.block.resize(len, 0);
            self.rng.fill_bytes(&mut self.block);
        } else {
            while self.block.len() < len {
                let line = format!(
                    "{{\"id\":{},\"user\":\"user{}\",\"status\":\"{}\",\"score\":{:.3},\"tags\":[\"a{}\",\"b\"]}}\n",
                    self.rng.random::<u32>(),
                    self.rng.random_range(0..5000),
                    ["queued", "running", "done", "failed"][self.rng.random_range(0..4)],
                    self.rng.random::<f64>() * 100.0,
                    self.rng.random_range(0..50),
                );
                self.block.extend_from_slice(line.as_bytes());
            }
            self.block.truncate(len);
        }
        self.remaining -= len as u64;
        Some(&self.block)
    }
}

impl AsyncRead for MixedData {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.block.len() {
            this.pos = 0;
            if this.next_block().is_none() {
                this.block.clear();
                return Poll::Ready(Ok(()));
            }
        }
        let n = (this.block.len() - this.pos).min(buf.remaining());
        buf.put_slice(&this.block[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// An `AsyncWrite` sink that hashes what it receives.
#[derive(Default)]
pub struct HashingSink {
    hasher: Sha256,
    pub bytes: u64,
}

impl HashingSink {
    pub fn hex(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl tokio::io::AsyncWrite for HashingSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
