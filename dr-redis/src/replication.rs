//! The replication stream, which the `redis` crate cannot carry (the RDB payload that follows
//! `PSYNC` has no trailing CRLF): the same transport as commands (plain or TLS, the same
//! certificates), AUTH and `REPLCONF` encoded by the crate, one-line status replies read here,
//! then the raw payload bytes.

use std::time::Duration;

use dr_core::{Error, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::connection::RedisConnection;
use crate::tls::RedisTls;
use crate::transport::Transport;

/// A connection about to become a replica's: status commands, then raw reads.
pub(crate) struct ReplicationStream {
    stream: BufReader<Transport>,
    server: String,
    tls: Option<RedisTls>,
}

impl ReplicationStream {
    /// Connects to `conn` (TLS for `rediss://`) and logs in.
    pub(crate) async fn open(conn: &RedisConnection) -> Result<Self> {
        let tcp = conn.tcp(Duration::from_secs(10)).await?;
        let transport = conn.secure(tcp, Duration::from_secs(10)).await?;
        let mut stream = ReplicationStream {
            stream: BufReader::with_capacity(1 << 20, transport),
            server: conn.to_string(),
            tls: conn.tls().cloned(),
        };
        if let Some(auth) = conn.auth_command() {
            stream
                .command(&auth)
                .await
                .map_err(|e| conn.refused_login(&e))?;
        }
        Ok(stream)
    }

    /// Sends a command whose reply is one status line (`+OK`); an error reply is
    /// [`Error::Backend`] with the server's words.
    pub(crate) async fn command(&mut self, args: &[&str]) -> Result<()> {
        self.send(args).await?;
        let line = self.read_line().await?;
        match line.strip_prefix('-') {
            Some(refusal) => Err(Error::backend(
                "redis",
                "command",
                format!("Redis said: {refusal}"),
            )),
            None => Ok(()),
        }
    }

    /// Sends a command without reading its reply (`PSYNC`, whose reply is the stream).
    pub(crate) async fn send(&mut self, args: &[&str]) -> Result<()> {
        let mut cmd = redis::Cmd::new();
        for arg in args {
            cmd.arg(*arg);
        }
        let packed = cmd.get_packed_command();
        let sent = async {
            let out = self.stream.get_mut();
            out.write_all(&packed).await?;
            out.flush().await
        };
        sent.await.map_err(|e| self.lost(e))
    }

    /// One CRLF-terminated line, without the CRLF.
    pub(crate) async fn read_line(&mut self) -> Result<String> {
        let mut line = Vec::new();
        let n = self
            .stream
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| self.lost(e))?;
        if n == 0 {
            return Err(Error::backend(
                "redis",
                "command",
                format!("Redis at {} closed the connection", self.server),
            )
            .retryable());
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    /// Raw bytes of the payload (0 at the end of the stream).
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.stream.read(buf).await.map_err(|e| self.lost(e))
    }

    fn lost(&self, e: std::io::Error) -> Error {
        let text = e.to_string();
        let why = self.tls.as_ref().and_then(|tls| tls.explain(&text));
        let retryable = why.is_none();
        Error::backend(
            "redis",
            "command",
            format!(
                "lost the connection to Redis at {}: {}",
                self.server,
                why.unwrap_or(text)
            ),
        )
        .retryable_if(retryable)
        .caused_by(e)
    }
}
