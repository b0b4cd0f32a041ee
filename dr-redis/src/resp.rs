//! A small RESP2 client over TCP: AUTH, commands, pipelines, and the raw socket for the
//! replication stream (which the `redis` crate cannot carry: the RDB payload has no CRLF).

use std::fmt;
use std::time::Duration;

use dr_core::{Error, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where a Redis server is: `redis://[user:password@]host:port[/db]`. Debug and Display
/// never show the password.
#[derive(Clone)]
pub struct RedisConnection {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
}

impl RedisConnection {
    /// Parses a `redis://` URL (the database number, if any, is ignored: backups hold all).
    ///
    /// # Errors
    /// [`Error::InvalidLocation`] with the password redacted.
    pub fn from_url(url: &str) -> Result<Self> {
        let invalid = |detail: &str| Error::InvalidLocation {
            location: dr_core::redact_url(url),
            detail: detail.to_owned(),
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(&format!("not a URL ({e})")))?;
        if parsed.scheme() != "redis" {
            return Err(invalid("use redis://[:password@]host:port"));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| invalid("no host"))?
            .to_owned();
        let decode = dr_core::percent_decode;
        Ok(RedisConnection {
            host,
            port: parsed.port().unwrap_or(6379),
            user: (!parsed.username().is_empty()).then(|| decode(parsed.username())),
            password: parsed.password().map(decode),
        })
    }

    /// The same server with this password (e.g. from an environment variable).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Connects and authenticates.
    ///
    /// # Errors
    /// [`Error::Backend`] saying whether the server is unreachable or refused the password.
    pub async fn connect(&self) -> Result<RespClient> {
        let mut client = self.open(Duration::from_secs(10)).await?;
        self.login(&mut client).await?;
        Ok(client)
    }

    /// Opens the TCP connection only (no AUTH): whether something listens at the address.
    ///
    /// # Errors
    /// [`Error::Backend`] (retryable) when nothing answers within `timeout` or the connection is refused.
    pub async fn open(&self, timeout: Duration) -> Result<RespClient> {
        let address = format!("{}:{}", self.host, self.port);
        let stream = tokio::time::timeout(timeout, TcpStream::connect(&address))
            .await
            .map_err(|_| {
                Error::backend(
                    "redis",
                    "connect",
                    format!(
                        "Redis at {self} did not answer within {} s",
                        timeout.as_secs()
                    ),
                )
                .retryable()
            })?
            .map_err(|e| {
                Error::backend(
                    "redis",
                    "connect",
                    format!(
                        "cannot reach Redis at {self}: {e} (is it running, and is the address right?)"
                    ),
                )
                .retryable()
                .caused_by(e)
            })?;
        let _ = stream.set_nodelay(true);
        Ok(RespClient {
            stream: BufReader::with_capacity(1 << 20, stream),
            server: self.to_string(),
        })
    }

    /// Sends AUTH on a connection from [`RedisConnection::open`] when a password is set.
    ///
    /// # Errors
    /// [`Error::Backend`] when the server refuses the login.
    pub async fn login(&self, client: &mut RespClient) -> Result<()> {
        if let Some(password) = &self.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &self.user {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            client.command(&args).await.map_err(|e| {
                Error::backend(
                    "redis",
                    "login",
                    format!(
                        "Redis at {self} refused the login: {} (check the password)",
                        e.detail()
                    ),
                )
            })?;
        }
        Ok(())
    }
}

impl fmt::Display for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisConnection({self})")
    }
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `:42`.
    Integer(i64),
    /// `$n` bytes, or `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n` replies, or `None` for `*-1`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The bytes of a bulk or status reply.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Reply::Bulk(b) => b,
            Reply::Status(s) => Some(s.into_bytes()),
            _ => None,
        }
    }

    /// An integer reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

/// A connected, authenticated client.
pub struct RespClient {
    stream: BufReader<TcpStream>,
    server: String,
}

impl RespClient {
    /// Sends one command and reads its reply; an error reply is [`Error::Backend`].
    ///
    /// # Errors
    /// I/O errors and error replies.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Reply> {
        self.send(&[args]).await?;
        self.read_reply().await?
    }

    /// Sends many commands at once and reads every reply; error replies are returned in
    /// place (so a caller can say which command failed).
    ///
    /// # Errors
    /// I/O errors.
    pub async fn pipeline(&mut self, commands: &[Vec<&[u8]>]) -> Result<Vec<Result<Reply>>> {
        let borrowed: Vec<&[&[u8]]> = commands.iter().map(Vec::as_slice).collect();
        self.send(&borrowed).await?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(self.read_reply().await?);
        }
        Ok(replies)
    }

    /// As [`RespClient::pipeline`], but keeps the replies read before an I/O error: the
    /// commands past them may or may not have been carried out.
    pub(crate) async fn pipeline_partial(
        &mut self,
        commands: &[Vec<&[u8]>],
    ) -> (Vec<Result<Reply>>, Option<Error>) {
        let borrowed: Vec<&[&[u8]]> = commands.iter().map(Vec::as_slice).collect();
        let mut replies = Vec::with_capacity(commands.len());
        if let Err(e) = self.send(&borrowed).await {
            return (replies, Some(e));
        }
        for _ in commands {
            match self.read_reply().await {
                Ok(reply) => replies.push(reply),
                Err(e) => return (replies, Some(e)),
            }
        }
        (replies, None)
    }

    async fn send(&mut self, commands: &[&[&[u8]]]) -> Result<()> {
        let mut out = Vec::new();
        for args in commands {
            encode(args, &mut out);
        }
        self.stream
            .get_mut()
            .write_all(&out)
            .await
            .map_err(|e| self.lost(e))
    }

    /// Reads one reply: `Ok(Err(..))` for an error reply from the server.
    async fn read_reply(&mut self) -> Result<Result<Reply>> {
        let line = self.read_line().await?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        let number = || {
            rest.parse::<i64>().map_err(|_| {
                Error::backend(
                    "redis",
                    "command",
                    format!("unexpected reply from Redis: {line:?}"),
                )
            })
        };
        Ok(Ok(match kind {
            "+" => Reply::Status(rest.to_owned()),
            "-" => {
                let transient = ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN"]
                    .iter()
                    .any(|p| rest.starts_with(p));
                return Ok(Err(Error::backend(
                    "redis",
                    "command",
                    format!("Redis said: {rest}"),
                )
                .retryable_if(transient)));
            }
            ":" => Reply::Integer(number()?),
            "$" => match number()? {
                n if n < 0 => Reply::Bulk(None),
                n => {
                    let mut bytes = self.read_exact(n as usize + 2).await?;
                    bytes.truncate(n as usize);
                    Reply::Bulk(Some(bytes))
                }
            },
            "*" => match number()? {
                n if n < 0 => Reply::Array(None),
                n => {
                    let mut items = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        items.push(Box::pin(self.read_reply()).await??);
                    }
                    Reply::Array(Some(items))
                }
            },
            _ => {
                return Err(Error::backend(
                    "redis",
                    "command",
                    format!("unexpected reply from Redis: {line:?}"),
                ));
            }
        }))
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

    async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| self.lost(e))?;
        Ok(buf)
    }

    /// The buffered socket, for the replication stream.
    pub(crate) fn stream(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.stream
    }

    /// `INFO section` parsed into `field -> value`.
    ///
    /// # Errors
    /// As [`RespClient::command`].
    pub async fn info(&mut self, section: &str) -> Result<Vec<(String, String)>> {
        let reply = self.command(&[b"INFO", section.as_bytes()]).await?;
        let text = String::from_utf8_lossy(&reply.into_bytes().unwrap_or_default()).into_owned();
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect())
    }

    pub(crate) fn lost(&self, e: std::io::Error) -> Error {
        Error::backend(
            "redis",
            "command",
            format!("lost the connection to Redis at {}: {e}", self.server),
        )
        .retryable()
        .caused_by(e)
    }
}

fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let conn = RedisConnection::from_url("redis://:s3cret@127.0.0.1:6380/2").unwrap();
        assert_eq!(conn.to_string(), "redis://127.0.0.1:6380");
        assert!(!format!("{conn:?}").contains("s3cret"));
        assert_eq!(conn.password.as_deref(), Some("s3cret"));
        let err = RedisConnection::from_url("http://:s3cret@x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn commands_are_encoded_as_resp_arrays() {
        let mut out = Vec::new();
        encode(&[b"SET", b"k\r\n", b""], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$0\r\n\r\n");
    }
}
