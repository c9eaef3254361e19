//! The Lua scripts of the queue: each is one atomic step that would race as separate commands.
//!
//! Due times are read from Redis `TIME` inside the scripts, never from the caller's clock: the
//! process that schedules a retry and the one that promotes it may run on different machines,
//! and one clock for both sides means host clock skew cannot make a retry early or late.
//! (Redis ≥ 5 replicates script effects, so a write after `TIME` is allowed.)

use std::sync::LazyLock;

use redis::Script;

/// `KEYS[1]` delayed set, `ARGV[1]` delay in ms, `ARGV[2]` job id. Scores the job at
/// Redis-now + delay. A job scheduled twice keeps one entry, due at the later call's time.
pub(crate) static SCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = redis.call('TIME')
local due = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], string.format('%.0f', due), ARGV[2])
return 1
",
    )
});

/// `KEYS[1]` delayed set, `KEYS[2]` stream, `ARGV[1]` most entries to move. Moves due job ids
/// into the stream in one step, so a crash between XADD and ZREM cannot lose or double them.
/// Returns `{moved, ms until the next delayed entry is due, or -1 when none is left}`; the
/// caller blocks no longer than that so a retry is not held back by a long wait.
pub(crate) static PROMOTE_DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now),
    'LIMIT', 0, tonumber(ARGV[1]))
for _, job in ipairs(due) do
    redis.call('XADD', KEYS[2], '*', 'job', job)
    redis.call('ZREM', KEYS[1], job)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if next[2] == nil then
    return {#due, -1}
end
local wait = tonumber(next[2]) - now
if wait < 0 then
    wait = 0
end
return {#due, wait}
",
    )
});

/// `KEYS[1]` stream, `ARGV[1]` group, `ARGV[2]` consumer, `ARGV[3..]` entry ids. Resets the
/// idle time of the entries this consumer still owns (`XCLAIM … 0 … JUSTID`, which does not
/// count a delivery). An entry already reclaimed by another consumer after this one stalled is
/// left alone: a plain `XCLAIM` would steal it back from the worker now running it. Returns how
/// many were extended.
pub(crate) static EXTEND_OWNED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local extended = 0
for i = 3, #ARGV do
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
    local entry = pending[1]
    if entry and entry[2] == ARGV[2] then
        redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
        extended = extended + 1
    end
end
return extended
",
    )
});
