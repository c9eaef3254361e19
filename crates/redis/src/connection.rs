//! The queue's two ways into Redis, and how their failures are classified and described.
//!
//! - a shared [`ConnectionManager`] for every short command: it is multiplexed (cheap to clone,
//!   many commands in flight) and replaces its connection after an I/O failure;
//! - one dedicated connection for `XREADGROUP … BLOCK`: Redis answers a connection's commands in
//!   order, so a blocking read on the shared connection would stall every other command behind
//!   it for the whole wait. It is dropped on any error and opened again by the next read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use inference_engine_core::ports::QueueError;
use inference_engine_core::redact::url_host;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, Pipeline, RedisError, RedisResult,
};

use crate::config::RedisQueueConfig;

/// Reconnect attempts the manager makes before failing a command; small, because the caller
/// (a worker loop, a request) has its own retry policy and should hear "unavailable" quickly.
const RECONNECT_RETRIES: usize = 2;

/// One command, pipeline or script for [`Connections::run_once`].
pub(crate) enum Request<'a> {
    Cmd(&'a Cmd),
    Pipeline(&'a Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
}

pub(crate) struct Connections {
    client: Client,
    manager: ConnectionManager,
    /// Whether the manager's current connection may lack its `CLIENT SETNAME`: true at start
    /// and after every connection failure, since the manager then silently opens a new one.
    name_pending: AtomicBool,
    /// The blocking-read connection; `None` until first use and after any failure. A tokio
    /// mutex because it is held across the blocking read: concurrent `receive` calls on one
    /// queue take turns, which a single connection would impose anyway.
    pub(crate) blocking: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    name: String,
    connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) describe: Describe,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Connections {
    /// Opens the manager's first connection, failing within `connect_timeout`.
    pub(crate) async fn open(config: &RedisQueueConfig) -> Result<Self, QueueError> {
        let describe = Describe::new(&config.url);
        let client = Client::open(config.url.as_str())
            .map_err(|err| describe.error("parsing the Redis URL", &err))?;
        let describe =
            describe.with_secret(client.get_connection_info().redis_settings().password());
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let manager = tokio::time::timeout(
            config.connect_timeout,
            ConnectionManager::new_with_config(client.clone(), manager_config),
        )
        .await
        .map_err(|_| describe.timeout("connecting", config.connect_timeout))?
        .map_err(|err| describe.error("connecting", &err))?;
        Ok(Self {
            client,
            manager,
            name_pending: AtomicBool::new(true),
            blocking: tokio::sync::Mutex::new(None),
            name: config.connection_name(),
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
            describe,
        })
    }

    /// Runs one request on the shared connection, no retries: the caller decides what a
    /// failure means (see `RedisJobQueue::exec`).
    pub(crate) async fn run_once<T: FromRedisValue>(
        &self,
        request: &Request<'_>,
    ) -> RedisResult<T> {
        let mut conn = self.manager.clone();
        if self.name_pending.swap(false, Ordering::AcqRel) {
            // Best effort: a failure here resurfaces on the request itself.
            if set_name(&mut conn, &self.name).await.is_err() {
                self.name_pending.store(true, Ordering::Release);
            }
        }
        let result = match request {
            Request::Cmd(cmd) => cmd.query_async(&mut conn).await,
            Request::Pipeline(pipeline) => pipeline.query_async(&mut conn).await,
            Request::Script(invocation) => invocation.invoke_async(&mut conn).await,
        };
        if let Err(err) = &result
            && is_connection_failure(err)
        {
            self.name_pending.store(true, Ordering::Release);
        }
        result
    }

    /// A fresh connection for blocking reads: no response timeout of its own (the read's wait
    /// is the caller's; it wraps the read in one), named like the shared one plus `:block`.
    pub(crate) async fn open_blocking(&self) -> Result<MultiplexedConnection, QueueError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None);
        let open = async {
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            set_name(&mut conn, &format!("{}:block", self.name)).await?;
            Ok::<_, RedisError>(conn)
        };
        tokio::time::timeout(self.connect_timeout, open)
            .await
            .map_err(|_| {
                self.describe
                    .timeout("opening the blocking-read connection", self.connect_timeout)
            })?
            .map_err(|err| {
                self.describe
                    .error("opening the blocking-read connection", &err)
            })
    }
}

async fn set_name(conn: &mut impl redis::aio::ConnectionLike, name: &str) -> RedisResult<()> {
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .query_async(conn)
        .await
}

/// The connection is gone (killed, reset, refused, server restarted): a retry on a new
/// connection may well succeed. Response timeouts are excluded: Redis may be alive but slow,
/// and a retry would only double the caller's wait.
pub(crate) fn is_connection_failure(err: &RedisError) -> bool {
    !err.is_timeout() && (err.is_connection_dropped() || err.is_unrecoverable_error())
}

/// The stream or its consumer group does not exist: Redis restarted without persistence, or
/// the key was deleted. `NOGROUP` from a command (script errors keep the code of the failing
/// call), or `UNBLOCKED` for a blocked read whose stream or group vanished under it.
pub(crate) fn is_missing_group(err: &RedisError) -> bool {
    const CODES: [&str; 2] = ["NOGROUP", "UNBLOCKED"];
    if err.code().is_some_and(|code| CODES.contains(&code)) {
        return true;
    }
    err.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, error)| CODES.contains(&error.code()))
    })
}

/// `BUSYGROUP`: the group already exists, which is what `XGROUP CREATE` wanted.
pub(crate) fn is_existing_group(err: &RedisError) -> bool {
    err.code() == Some("BUSYGROUP")
}

/// Turns failures into `QueueError::Unavailable` sentences that name the Redis host and never
/// carry the password, even where a driver message might echo part of the URL.
#[derive(Debug, Clone)]
pub(crate) struct Describe {
    host: String,
    secrets: Vec<String>,
}

impl Describe {
    fn new(url: &str) -> Self {
        let raw_password = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .rsplit_once('@')
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .map(|(_, password)| password.to_owned());
        Self {
            host: url_host(url),
            secrets: Vec::new(),
        }
        .with_secret(raw_password.as_deref())
    }

    fn with_secret(mut self, secret: Option<&str>) -> Self {
        if let Some(secret) = secret.filter(|secret| !secret.is_empty()) {
            self.secrets.push(secret.to_owned());
        }
        self
    }

    fn scrub(&self, message: String) -> String {
        self.secrets.iter().fold(message, |message, secret| {
            message.replace(secret.as_str(), "***")
        })
    }

    pub(crate) fn error(&self, action: &str, err: &RedisError) -> QueueError {
        QueueError::Unavailable(
            self.scrub(format!("{action} failed at Redis {}: {err}", self.host)),
        )
    }

    pub(crate) fn timeout(&self, action: &str, after: Duration) -> QueueError {
        QueueError::Unavailable(format!(
            "{action} at Redis {} timed out after {} ms",
            self.host,
            after.as_millis()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_name_the_host_and_mask_the_password() {
        let describe =
            Describe::new("redis://user:p%40ss@cache.internal:6379/0").with_secret(Some("p@ss"));
        let err = RedisError::from(std::io::Error::other("echo p@ss and p%40ss"));
        let QueueError::Unavailable(message) = describe.error("connecting", &err) else {
            panic!("expected Unavailable");
        };
        assert!(message.contains("cache.internal:6379"), "{message}");
        assert!(
            !message.contains("p@ss") && !message.contains("p%40ss"),
            "{message}"
        );
    }

    #[test]
    fn dropped_connections_are_retryable_and_timeouts_are_not() {
        let dropped = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let timed_out = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(is_connection_failure(&dropped));
        assert!(!is_connection_failure(&timed_out));
    }
}
