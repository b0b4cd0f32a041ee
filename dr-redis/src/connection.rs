//! Where a Redis server is and how to reach it: `redis://` or `rediss://` (TLS), an optional
//! ACL user and password, the TLS settings ([`RedisTls`]). Connections carry commands through
//! the `redis` crate ([`RedisClient`]) or, for the replication stream, the raw bytes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use dr_core::{Error, Result};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

use crate::client::RedisClient;
use crate::tls::{RedisTls, server_name};
use crate::transport::Transport;

/// How long a connection (TCP and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a Redis server is: `redis[s]://[user:password@]host:port[/db]`. Debug and Display
/// never show the password.
#[derive(Clone)]
pub struct RedisConnection {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    /// `Some` for `rediss://`.
    tls: Option<RedisTls>,
    /// The rustls configuration, built on first use and shared by clones.
    tls_config: Arc<OnceCell<Arc<rustls::ClientConfig>>>,
}

impl RedisConnection {
    /// Parses a `redis://` or `rediss://` (TLS, trusting the system's CA store until
    /// [`RedisConnection::with_tls`]) URL; the database number, if any, is ignored: backups
    /// hold all.
    ///
    /// # Errors
    /// [`Error::InvalidLocation`] with the password redacted.
    pub fn from_url(url: &str) -> Result<Self> {
        let invalid = |detail: &str| Error::InvalidLocation {
            location: dr_core::redact_url(url),
            detail: detail.to_owned(),
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(&format!("not a URL ({e})")))?;
        let tls = match parsed.scheme() {
            "redis" => None,
            "rediss" => Some(RedisTls::default()),
            _ => {
                return Err(invalid(
                    "use redis://[:password@]host:port, or rediss:// for TLS",
                ));
            }
        };
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
            tls,
            tls_config: Arc::default(),
        })
    }

    /// The same server with this password (e.g. from an environment variable).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The TLS settings of a `rediss://` server; a `redis://` server stays plain TCP.
    pub fn with_tls(mut self, tls: RedisTls) -> Self {
        if self.tls.is_some() {
            self.tls = Some(tls);
            self.tls_config = Arc::default();
        }
        self
    }

    /// Whether this is a `rediss://` (TLS) server.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS settings of a `rediss://` server.
    pub(crate) fn tls(&self) -> Option<&RedisTls> {
        self.tls.as_ref()
    }

    /// Connects and authenticates.
    ///
    /// # Errors
    /// [`Error::Backend`] saying whether the server is unreachable, the TLS handshake failed
    /// (naming the setting to change) or the server refused the login.
    pub async fn connect(&self) -> Result<RedisClient> {
        let mut client = self.open(CONNECT_TIMEOUT).await?;
        self.login(&mut client).await?;
        Ok(client)
    }

    /// Opens the connection only (TCP, TLS for `rediss://`; no AUTH).
    ///
    /// # Errors
    /// [`Error::Backend`] (retryable) when nothing answers within `timeout` or the connection
    /// is refused; not retryable when the TLS handshake fails.
    pub async fn open(&self, timeout: Duration) -> Result<RedisClient> {
        let tcp = self.tcp(timeout).await?;
        self.client_over(tcp, timeout).await
    }

    /// A command client over an open TCP connection (TLS handshake first for `rediss://`).
    pub(crate) async fn client_over(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<RedisClient> {
        let transport = self.secure(tcp, timeout).await?;
        RedisClient::over(transport, self.to_string(), self.tls.clone()).await
    }

    /// Sends AUTH on a connection from [`RedisConnection::open`] when a password is set
    /// (with the ACL user of the URL, if any).
    ///
    /// # Errors
    /// [`Error::Backend`] when the server refuses the login.
    pub async fn login(&self, client: &mut RedisClient) -> Result<()> {
        let Some(args) = self.auth_command() else {
            return Ok(());
        };
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        client
            .command(&args)
            .await
            .map_err(|e| self.refused_login(&e))?;
        Ok(())
    }

    /// `AUTH [user] password`, when a password is set.
    pub(crate) fn auth_command(&self) -> Option<Vec<&str>> {
        let password = self.password.as_deref()?;
        let mut args = vec!["AUTH"];
        args.extend(self.user.as_deref());
        args.push(password);
        Some(args)
    }

    /// The login error: the server's words, never the password.
    pub(crate) fn refused_login(&self, e: &Error) -> Error {
        let detail = e.detail();
        if detail.contains("lost the connection") || detail.contains("TLS") {
            return Error::backend("redis", "login", detail);
        }
        Error::backend(
            "redis",
            "login",
            format!("Redis at {self} refused the login: {detail} (check the password)"),
        )
    }

    /// The TCP connection.
    pub(crate) async fn tcp(&self, timeout: Duration) -> Result<TcpStream> {
        let address = format!("{}:{}", self.host, self.port);
        let stream = tokio::time::timeout(timeout, TcpStream::connect(&address))
            .await
            .map_err(|_| {
                let secs = timeout.as_secs();
                Error::backend("redis", "connect", format!("Redis at {self} did not answer within {secs} s"))
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
        Ok(stream)
    }

    /// The TLS handshake for `rediss://`; the plain stream otherwise.
    pub(crate) async fn secure(&self, tcp: TcpStream, timeout: Duration) -> Result<Transport> {
        let Some(tls) = &self.tls else {
            return Ok(Transport::Plain(tcp));
        };
        let config = self
            .tls_config
            .get_or_try_init(|| async { tls.client_config() })
            .await?
            .clone();
        let connector = tokio_rustls::TlsConnector::from(config);
        let handshake = connector.connect(server_name(&self.host)?, tcp);
        let stream = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| {
                let secs = timeout.as_secs();
                Error::backend("redis", "connect", format!("the TLS handshake with Redis at {self} did not finish within {secs} s (is it a TLS port?)"))
                    .retryable()
            })?
            .map_err(|e| self.handshake_failed(tls, e))?;
        let mut transport = Transport::Tls(Box::new(stream));
        tokio::time::timeout(timeout, confirm_session(&mut transport))
            .await
            .map_err(|_| {
                Error::backend(
                    "redis",
                    "connect",
                    format!("Redis at {self} did not answer a PING after the TLS handshake"),
                )
                .retryable()
            })?
            .map_err(|e| self.handshake_failed(tls, e))?;
        Ok(transport)
    }

    fn handshake_failed(&self, tls: &RedisTls, e: std::io::Error) -> Error {
        let text = e.to_string();
        let why = tls.explain(&text).unwrap_or_else(|| {
            format!("{text} (is the server listening for TLS on this port? redis-server needs --tls-port)")
        });
        Error::backend(
            "redis",
            "connect",
            format!("TLS handshake with Redis at {self} failed: {why}"),
        )
        .caused_by(e)
    }
}

/// One `PING` and its reply line (`+PONG`, or `-NOAUTH` before AUTH: either will do). With
/// TLS 1.3 a server refuses a missing or untrusted client certificate only after the
/// client's side of the handshake is done; this exchange receives that refusal here, with
/// its TLS alert, rather than as a broken pipe at the first command.
async fn confirm_session(transport: &mut Transport) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    transport
        .write_all(&redis::cmd("PING").get_packed_command())
        .await?;
    transport.flush().await?;
    let mut byte = [0u8; 1];
    loop {
        if transport.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if byte[0] == b'\n' {
            return Ok(());
        }
    }
}

impl fmt::Display for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisConnection({self})")
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
    fn rediss_urls_are_tls_and_say_so() {
        let conn = RedisConnection::from_url("rediss://app:pw@localhost:6390").unwrap();
        assert!(conn.is_tls());
        assert_eq!(conn.to_string(), "rediss://localhost:6390");
        assert_eq!(conn.auth_command(), Some(vec!["AUTH", "app", "pw"]));
        let plain = RedisConnection::from_url("redis://localhost")
            .unwrap()
            .with_tls(RedisTls::default().with_insecure(true));
        assert!(!plain.is_tls(), "a redis:// URL stays plain TCP");
    }
}
