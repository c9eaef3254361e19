//! What a queue connects to, which keys it owns and who it is in the consumer group.

use std::fmt;
use std::time::Duration;

use inference_engine_core::redact::redact_url;

/// The one consumer group every worker joins: an entry is handed to exactly one member of it.
pub const CONSUMER_GROUP: &str = "workers";

/// Configuration of a [`RedisJobQueue`](crate::RedisJobQueue).
///
/// `Debug` prints the URL with its password masked, so the config can be logged as a whole.
#[derive(Clone)]
pub struct RedisQueueConfig {
    /// `redis://[[user]:password@]host:port[/db]`. Only its host appears in messages.
    pub url: String,
    /// Prefix of every key this queue touches (e.g. `ie:`), so deployments and tests can share one
    /// Redis without seeing each other's jobs.
    pub key_prefix: String,
    /// This process's name in the consumer group. It must be unique per live worker process: a
    /// delivery is only taken from its consumer by idle time, so two processes sharing a name
    /// would silently extend each other's deliveries.
    pub consumer: String,
    /// A delivery neither acked nor extended for this long is handed out again (`[jobs]
    /// visibility_timeout_s`). At least 1 ms: zero would let every receive steal every delivery.
    pub visibility_timeout: Duration,
    /// Bound on opening a connection, so a start against an unreachable Redis fails fast
    /// instead of hanging, and a reconnect attempt during an outage gives up quickly.
    pub connect_timeout: Duration,
    /// Bound on one non-blocking command's round trip; a hung Redis becomes `Unavailable`
    /// instead of a stuck request. Blocking reads get their wait on top of it.
    pub command_timeout: Duration,
}

impl RedisQueueConfig {
    /// A config with a fresh [`unique_consumer_name`](Self::unique_consumer_name), the `[jobs]`
    /// default visibility timeout (300 s), a 3 s connect timeout and a 5 s command timeout.
    pub fn new(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: key_prefix.into(),
            consumer: Self::unique_consumer_name(),
            visibility_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(5),
        }
    }

    /// `host-pid-random`: the host and pid say which process holds a delivery (visible in
    /// `XINFO CONSUMERS`); the random part keeps a restarted process that reuses a pid, or two
    /// containers with the same host name, from inheriting another's pending entries.
    pub fn unique_consumer_name() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "worker".to_owned());
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!("{host}-{}-{}", std::process::id(), &random[..8])
    }

    /// The stream of ready job ids: `{prefix}jobs`.
    pub fn stream_key(&self) -> String {
        format!("{}jobs", self.key_prefix)
    }

    /// The sorted set of job ids waiting for a retry delay, scored by due time in Redis-clock
    /// milliseconds: `{prefix}jobs:delayed`.
    pub fn delayed_key(&self) -> String {
        format!("{}jobs:delayed", self.key_prefix)
    }

    /// `CLIENT SETNAME` value of this queue's connections: operators (and tests) can find and
    /// attribute them in `CLIENT LIST`. Redis refuses spaces and control characters in names.
    pub(crate) fn connection_name(&self) -> String {
        format!("{}queue:{}", self.key_prefix, self.consumer)
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect()
    }
}

impl fmt::Debug for RedisQueueConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueueConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("consumer", &self.consumer)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        let config = RedisQueueConfig::new("redis://127.0.0.1:6379", "ie:");
        assert_eq!(config.stream_key(), "ie:jobs");
        assert_eq!(config.delayed_key(), "ie:jobs:delayed");
    }

    #[test]
    fn consumer_names_are_unique_per_call_and_carry_the_pid() {
        let first = RedisQueueConfig::unique_consumer_name();
        let second = RedisQueueConfig::unique_consumer_name();
        assert_ne!(first, second);
        assert!(first.contains(&format!("-{}-", std::process::id())));
    }

    #[test]
    fn debug_output_masks_the_password() {
        let config = RedisQueueConfig::new("redis://:hunter2@cache:6379/0", "ie:");
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("cache:6379"), "{printed}");
    }

    #[test]
    fn connection_names_have_no_spaces() {
        let mut config = RedisQueueConfig::new("redis://cache", "my app:");
        config.consumer = "host 1\n".to_owned();
        assert_eq!(config.connection_name(), "my_app:queue:host_1_");
    }
}
