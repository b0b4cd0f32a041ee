//! Commands through the `redis` crate: a [`redis::aio::MultiplexedConnection`] over dr's own
//! stream (plain or TLS, see [`crate::connection`]), without response timeouts (a RESTORE of a
//! large key takes as long as it takes), replies as [`redis::Value`], errors as dr's.

use dr_core::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, RedisError, Value};

use crate::tls::RedisTls;
use crate::transport::Transport;

/// Server replies that say "try again later".
const TRANSIENT: [&str; 4] = ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN"];

/// A connected client (authenticated when it came from [`crate::RedisConnection::connect`]).
pub struct RedisClient {
    connection: MultiplexedConnection,
    server: String,
    tls: Option<RedisTls>,
}

impl RedisClient {
    /// The `redis` crate's connection over `transport`; AUTH is dr's to send (its errors are
    /// worded by [`crate::RedisConnection::login`]).
    pub(crate) async fn over(
        transport: Transport,
        server: String,
        tls: Option<RedisTls>,
    ) -> Result<RedisClient> {
        let info = RedisConnectionInfo::default().set_skip_set_lib_name();
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(None);
        let (connection, driver) = MultiplexedConnection::new_with_config(&info, transport, config)
            .await
            .map_err(|e| failed(&server, tls.as_ref(), &e))?;
        tokio::spawn(driver);
        Ok(RedisClient {
            connection,
            server,
            tls,
        })
    }

    /// The `redis` crate's connection, for commands this type has no method for.
    pub fn connection(&mut self) -> &mut MultiplexedConnection {
        &mut self.connection
    }

    /// Sends one command and reads its reply; an error reply is [`Error::Backend`]
    /// (`Redis said: CODE detail`, retryable for LOADING, BUSY, TRYAGAIN and MASTERDOWN).
    ///
    /// # Errors
    /// I/O errors and error replies.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Value> {
        let mut replies = self.pipeline(&[args.to_vec()]).await?;
        replies
            .pop()
            .unwrap_or_else(|| Err(Error::backend("redis", "command", "no reply from Redis")))
    }

    /// Sends many commands at once and reads every reply; error replies are returned in
    /// place (so a caller can say which command failed).
    ///
    /// # Errors
    /// I/O errors: then none of the replies is known.
    pub async fn pipeline(&mut self, commands: &[Vec<&[u8]>]) -> Result<Vec<Result<Value>>> {
        let mut pipe = redis::pipe();
        for args in commands {
            let mut cmd = redis::Cmd::new();
            for arg in args {
                cmd.arg(*arg);
            }
            pipe.add_command(cmd);
        }
        let values = self
            .connection
            .send_packed_commands(&pipe, 0, commands.len())
            .await
            .map_err(|e| failed(&self.server, self.tls.as_ref(), &e))?;
        Ok(values.into_iter().map(server_error).collect())
    }

    /// `INFO section` parsed into `field -> value`.
    ///
    /// # Errors
    /// As [`RedisClient::command`].
    pub async fn info(&mut self, section: &str) -> Result<Vec<(String, String)>> {
        let reply = self.command(&[b"INFO", section.as_bytes()]).await?;
        let text = String::from_utf8_lossy(&bytes(reply).unwrap_or_default()).into_owned();
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect())
    }
}

/// A failed request: the server's refusal, or the lost connection (with what TLS said).
fn failed(server: &str, tls: Option<&RedisTls>, e: &RedisError) -> Error {
    if let Some(code) = e.code() {
        return refusal(code, e.detail());
    }
    let text = e.to_string();
    let why = tls.and_then(|tls| tls.explain(&text));
    let retryable = why.is_none();
    let why = why.unwrap_or(text);
    Error::backend(
        "redis",
        "command",
        format!("lost the connection to Redis at {server}: {why}"),
    )
    .retryable_if(retryable)
    .caused_by(e.clone())
}

/// An error reply in place as `Err`.
fn server_error(value: Value) -> Result<Value> {
    match value {
        Value::ServerError(e) => Err(refusal(e.code(), e.details())),
        other => Ok(other),
    }
}

fn refusal(code: &str, detail: Option<&str>) -> Error {
    let said = match detail {
        Some(detail) => format!("{code} {detail}"),
        None => code.to_owned(),
    };
    Error::backend("redis", "command", format!("Redis said: {said}"))
        .retryable_if(TRANSIENT.contains(&code))
}

/// The bytes of a bulk or status reply.
pub(crate) fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        _ => None,
    }
}

/// An integer reply.
pub(crate) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

/// The items of an array reply.
pub(crate) fn array(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}
