//! Test helpers: a unique key prefix per test against the real Redis, inspection of what the
//! queue left in Redis, its connections, and polling with a deadline.

use std::future::Future;
use std::time::Duration;

use inference_engine_redis::{RedisJobQueue, RedisQueueConfig};
use redis::aio::MultiplexedConnection;

pub(crate) fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// One test's slice of Redis: every key and connection name it creates carries `prefix`, and
/// its keys are deleted when it is dropped (even after a failed assertion).
pub(crate) struct TestRedis {
    pub(crate) url: String,
    pub(crate) prefix: String,
    admin: MultiplexedConnection,
}

/// A line of `CLIENT LIST`, the fields the tests look at.
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) cmd: String,
    pub(crate) flags: String,
}

impl TestRedis {
    /// Panics with instructions when Redis is unreachable: these tests must not pass silently.
    pub(crate) async fn new() -> Self {
        let url = redis_url();
        let prefix = format!("test:{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let connect = async {
            redis::Client::open(url.as_str())?
                .get_multiplexed_async_connection()
                .await
        };
        let admin = match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(admin)) => admin,
            Ok(Err(err)) => panic!(
                "Redis is not reachable at {url} ({err}); start it (ARCHITECTURE.md §5) or set TEST_REDIS_URL"
            ),
            Err(_) => panic!("Redis at {url} did not answer within 5 s; set TEST_REDIS_URL"),
        };
        Self { url, prefix, admin }
    }

    pub(crate) fn config(&self, consumer: &str, visibility_timeout: Duration) -> RedisQueueConfig {
        RedisQueueConfig {
            consumer: format!("{}{consumer}", self.prefix),
            visibility_timeout,
            ..RedisQueueConfig::new(self.url.clone(), self.prefix.clone())
        }
    }

    pub(crate) async fn queue(
        &self,
        consumer: &str,
        visibility_timeout: Duration,
    ) -> RedisJobQueue {
        RedisJobQueue::connect(self.config(consumer, visibility_timeout))
            .await
            .unwrap()
    }

    pub(crate) fn stream_key(&self) -> String {
        format!("{}jobs", self.prefix)
    }

    pub(crate) fn delayed_key(&self) -> String {
        format!("{}jobs:delayed", self.prefix)
    }

    pub(crate) fn admin(&self) -> MultiplexedConnection {
        self.admin.clone()
    }

    /// Entries still in the stream (XLEN; 0 when the key does not exist).
    pub(crate) async fn stream_len(&self) -> usize {
        redis::cmd("XLEN")
            .arg(self.stream_key())
            .query_async(&mut self.admin())
            .await
            .unwrap()
    }

    /// Deliveries pending in the group (not acked), with their owners.
    pub(crate) async fn pending(&self) -> Vec<(String, String)> {
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(self.stream_key())
            .arg("workers")
            .arg("-")
            .arg("+")
            .arg(10_000)
            .query_async(&mut self.admin())
            .await
            .unwrap();
        rows.into_iter()
            .map(|(id, consumer, _, _)| (id, consumer))
            .collect()
    }

    /// What a Redis restart without persistence leaves: no stream, no group, no delayed set.
    pub(crate) async fn delete_queue_keys(&self) {
        redis::cmd("DEL")
            .arg(self.stream_key())
            .arg(self.delayed_key())
            .query_async::<()>(&mut self.admin())
            .await
            .unwrap();
    }

    /// This test's queue connections (named after its prefix by the queue).
    pub(crate) async fn own_connections(&self) -> Vec<ClientInfo> {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut self.admin())
            .await
            .unwrap();
        list.lines()
            .filter_map(parse_client_line)
            .filter(|client| client.name.starts_with(&self.prefix))
            .collect()
    }

    /// `CLIENT KILL ID` each of this test's queue connections; returns how many were killed.
    pub(crate) async fn kill_own_connections(&self) -> usize {
        let mut killed = 0;
        for client in self.own_connections().await {
            let count: usize = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(client.id)
                .query_async(&mut self.admin())
                .await
                .unwrap();
            killed += count;
        }
        killed
    }
}

fn parse_client_line(line: &str) -> Option<ClientInfo> {
    let field = |key: &str| {
        line.split_ascii_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_default()
            .to_owned()
    };
    Some(ClientInfo {
        id: field("id").parse().ok()?,
        name: field("name"),
        cmd: field("cmd"),
        flags: field("flags"),
    })
}

impl Drop for TestRedis {
    /// Best effort, synchronous so it also runs while a failed test unwinds.
    fn drop(&mut self) {
        let pattern = format!("{}*", self.prefix);
        let cleanup = || -> redis::RedisResult<()> {
            let client = redis::Client::open(self.url.as_str())?;
            let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
            let mut cursor = 0_u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1_000)
                    .query(&mut conn)?;
                if !keys.is_empty() {
                    redis::cmd("DEL").arg(&keys).query::<()>(&mut conn)?;
                }
                if next == 0 {
                    return Ok(());
                }
                cursor = next;
            }
        };
        if let Err(err) = cleanup() {
            eprintln!("could not delete the keys under {pattern}: {err}");
        }
    }
}

/// Polls `probe` every 20 ms until it yields a value; panics naming `what` after `deadline`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) use inference_engine_testkit::PrivateRedis;
