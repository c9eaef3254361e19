//! Logging: one JSON object per line on stdout (or human-readable lines), written by a
//! background thread so a slow terminal or pipe never stalls request handling. The access log,
//! one line per request, is formatted here by hand ([`access_log`]); every other line goes
//! through `tracing`.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use inference_engine_core::request_scope;
use inference_engine_core::sync::lock;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::settings::LogFormat;

/// How long a line may wait in memory before the writer thread prints it.
const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// Buffered bytes that make the writer thread print at once instead of at its next tick.
const FLUSH_AT_BYTES: usize = 256 * 1024;
/// Buffered bytes beyond which new lines are dropped (and counted) rather than held: a stuck
/// stdout must not grow the server's memory without bound, nor block a request.
const DROP_ABOVE_BYTES: usize = 16 * 1024 * 1024;

/// Keeps the log writer alive; dropping it prints what is buffered. Hold it until exit.
#[derive(Debug)]
pub struct TelemetryGuard {
    writer: BatchedStdout,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.writer.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Installs the global subscriber. `level` is a level or `EnvFilter` directives.
pub fn init(level: &str, format: LogFormat) -> Result<TelemetryGuard, String> {
    let mut filter = EnvFilter::try_new(level)
        .map_err(|err| format!("LOG_LEVEL {level:?} is not a valid log filter: {err}"))?;
    // sqlx logs PostgreSQL's notices at INFO, and its migrator's `CREATE TABLE IF NOT EXISTS`
    // draws one ("already exists, skipping") at every start: below WARN it says nothing an
    // operator needs, unless LOG_LEVEL names it.
    if !level.contains("sqlx") {
        filter = filter.add_directive(
            "sqlx=warn"
                .parse()
                .map_err(|err| format!("the sqlx log filter: {err}"))?,
        );
    }
    let writer = BatchedStdout::default();
    let thread = writer
        .spawn_printer(std::io::stdout())
        .map_err(|err| format!("cannot start the log writer thread: {err}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone())
        .with_ansi(false)
        .event_format(Lines(format))
        .try_init()
        .map_err(|err| format!("cannot install the logger: {err}"))?;
    // The first logger of the process wins, like `tracing`'s global subscriber above.
    let _ = DIRECT.set((writer.clone(), format));
    Ok(TelemetryGuard {
        writer,
        thread: Some(thread),
    })
}

/// Where [`access_log`] writes, and in which format: set by [`init`].
static DIRECT: OnceLock<(BatchedStdout, LogFormat)> = OnceLock::new();

/// The target the access-log lines name, as if `tracing` had formatted them.
const ACCESS_LOG_TARGET: &str = "inference_engine_server::middleware";

/// What the access-log line of one request says.
#[derive(Debug, Clone, Copy)]
pub struct AccessRecord<'a> {
    pub request_id: &'a str,
    pub tenant_id: Option<&'a str>,
    pub job_id: Option<&'a str>,
    pub model: Option<&'a str>,
    pub version: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// gRPC calls: the call's status code (`OK`, `NOT_FOUND`, ...); `status` is then its HTTP
    /// equivalent.
    pub grpc_code: Option<&'a str>,
    /// Written as `latency_ms`, in milliseconds with three decimals.
    pub latency: Duration,
}

/// Writes the access-log line of one request (`"message":"request_completed"`), in the shape
/// `tracing`'s formatter gives every other line. The caller checks that its level is enabled
/// (`tracing::enabled!`, so `LOG_LEVEL` applies as to any event); nothing is written when no
/// logger was installed ([`init`]).
///
/// Why by hand: it is the one line written for every request, and going through `tracing`'s
/// JSON formatter (a dispatch, a visitor per field, serde_json through two adaptors) cost the
/// request path 3–9 % of its throughput on `predict_echo` (BENCHMARKS.md).
pub fn access_log(record: &AccessRecord<'_>) {
    thread_local! {
        static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let Some((writer, format)) = DIRECT.get() else {
        return;
    };
    LINE.with_borrow_mut(|line| {
        line.clear();
        match format {
            LogFormat::Json => access_json(line, record),
            LogFormat::Pretty => access_pretty(line, record),
        }
        writer.append(line);
    });
}

fn access_json(line: &mut Vec<u8>, record: &AccessRecord<'_>) {
    line.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(line);
    line.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request_completed\"");
    // Each key with its punctuation in one piece: the keys need no escaping.
    let texts: [(&[u8], Option<&str>); 8] = [
        (b",\"request_id\":\"", Some(record.request_id)),
        (b",\"tenant_id\":\"", record.tenant_id),
        (b",\"job_id\":\"", record.job_id),
        (b",\"model\":\"", record.model),
        (b",\"version\":\"", record.version),
        (b",\"method\":\"", Some(record.method)),
        (b",\"path\":\"", Some(record.path)),
        (b",\"grpc_code\":\"", record.grpc_code),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            line.extend_from_slice(key);
            push_escaped(line, value);
            line.push(b'"');
        }
    }
    line.extend_from_slice(b",\"status\":");
    push_decimal(line, u64::from(record.status));
    line.extend_from_slice(b",\"latency_ms\":");
    push_millis(line, record.latency);
    line.extend_from_slice(b",\"target\":\"");
    line.extend_from_slice(ACCESS_LOG_TARGET.as_bytes());
    line.extend_from_slice(b"\"}\n");
}

fn access_pretty(line: &mut Vec<u8>, record: &AccessRecord<'_>) {
    timestamp(line);
    let _ = write!(
        line,
        "  INFO {ACCESS_LOG_TARGET}: request_completed request_id={}",
        record.request_id
    );
    let texts = [
        ("tenant_id", record.tenant_id),
        ("job_id", record.job_id),
        ("model", record.model),
        ("version", record.version),
        ("grpc_code", record.grpc_code),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            let _ = write!(line, " {key}={value}");
        }
    }
    let _ = write!(
        line,
        " method={} path={} status={} latency_ms=",
        record.method, record.path, record.status
    );
    push_millis(line, record.latency);
    line.push(b'\n');
}

/// The current time as `tracing`'s formatter writes it: RFC 3339, UTC, microseconds.
fn timestamp(line: &mut Vec<u8>) {
    push_timestamp(line, chrono::Utc::now());
}

fn push_timestamp(line: &mut Vec<u8>, now: chrono::DateTime<chrono::Utc>) {
    use chrono::Timelike;
    // Every line of a second shares its date and time up to the seconds: each thread formats
    // them once per second (the calendar arithmetic was most of this function's cost).
    SECOND_PREFIX.with_borrow_mut(|(second, prefix)| {
        if *second != Some(now.timestamp()) {
            *second = Some(now.timestamp());
            prefix.clear();
            push_second_prefix(prefix, now);
        }
        line.extend_from_slice(prefix);
    });
    // A leap second shows as 60.999999 elsewhere; here it stays in its second.
    push_padded(
        line,
        u64::from((now.nanosecond() % 1_000_000_000) / 1_000),
        6,
    );
    line.push(b'Z');
}

thread_local! {
    /// The second [`timestamp`] formatted last on this thread, and its `YYYY-MM-DDTHH:MM:SS.`.
    static SECOND_PREFIX: RefCell<(Option<i64>, Vec<u8>)> = const { RefCell::new((None, Vec::new())) };
}

/// `YYYY-MM-DDTHH:MM:SS.` of `time`.
fn push_second_prefix(out: &mut Vec<u8>, time: chrono::DateTime<chrono::Utc>) {
    use chrono::{Datelike, Timelike};
    let fields = [
        (u64::try_from(time.year()).unwrap_or(0), 4, b'-'),
        (u64::from(time.month()), 2, b'-'),
        (u64::from(time.day()), 2, b'T'),
        (u64::from(time.hour()), 2, b':'),
        (u64::from(time.minute()), 2, b':'),
        (u64::from(time.second()), 2, b'.'),
    ];
    for (value, width, then) in fields {
        push_padded(out, value, width);
        out.push(then);
    }
}

/// Room for the longest number written here: a `u64` in decimal (20 digits) and a point.
pub const NUMBER_TEXT_LEN: usize = 24;

/// Writes `value` in decimal, zero-padded to at least `width` digits, into `text` so that it
/// ends just before `end`; returns where it starts. By hand rather than through `core::fmt`:
/// the access line and the timing headers of every response use it, and the formatter's
/// machinery cost several times the digits themselves.
fn put_digits(text: &mut [u8; NUMBER_TEXT_LEN], end: usize, value: u64, width: usize) -> usize {
    let width = width.min(end);
    let mut start = end;
    let mut rest = value;
    loop {
        start -= 1;
        text[start] = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
        if (rest == 0 && end - start >= width) || start == 0 {
            return start;
        }
    }
}

/// The digits [`put_digits`] wrote, as text.
fn digits_text(text: &[u8]) -> &str {
    std::str::from_utf8(text).unwrap_or_default()
}

/// `duration` in milliseconds with three decimals (`12.345`), written into `text` (no
/// allocation: a header value copies it once).
pub fn millis_text(duration: Duration, text: &mut [u8; NUMBER_TEXT_LEN]) -> &str {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    let point = put_digits(text, NUMBER_TEXT_LEN, micros % 1_000, 3) - 1;
    text[point] = b'.';
    let start = put_digits(text, point, micros / 1_000, 1);
    digits_text(&text[start..])
}

/// Appends `value` in decimal, zero-padded to at least `width` digits.
fn push_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut text = [0; NUMBER_TEXT_LEN];
    let start = put_digits(&mut text, NUMBER_TEXT_LEN, value, width);
    out.extend_from_slice(&text[start..]);
}

/// Appends `value` in decimal.
fn push_decimal(out: &mut Vec<u8>, value: u64) {
    push_padded(out, value, 1);
}

/// Appends `duration` in milliseconds with three decimals (`12.345`).
fn push_millis(out: &mut Vec<u8>, duration: Duration) {
    out.extend_from_slice(millis_text(duration, &mut [0; NUMBER_TEXT_LEN]).as_bytes());
}

/// Appends `text` as a JSON string, quotes included.
fn push_json_string(line: &mut Vec<u8>, text: &str) {
    line.push(b'"');
    push_escaped(line, text);
    line.push(b'"');
}

/// Whether `bytes` holds a byte JSON must escape (a control character, `"` or `\`). Almost
/// every value (ids, names, paths) holds none, so this looks at eight bytes per step (the
/// "has a byte less than n / equal to zero" word tricks, exact for n ≤ 128; UTF-8's bytes
/// ≥ 0x80 never match) instead of comparing each byte three times.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH_BITS: u64 = ONES * 0x80;
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH_BITS;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        let special = below(word, 0x20)
            | below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1);
        if special != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
}

/// `text` as the inside of a JSON string.
fn push_escaped(line: &mut Vec<u8>, text: &str) {
    if !needs_escape(text.as_bytes()) {
        line.extend_from_slice(text.as_bytes());
        return;
    }
    let mut plain_from = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        line.extend_from_slice(&text.as_bytes()[plain_from..at]);
        if escape.is_empty() {
            let _ = write!(line, "\\u{byte:04x}");
        } else {
            line.extend_from_slice(escape);
        }
        plain_from = at + 1;
    }
    line.extend_from_slice(&text.as_bytes()[plain_from..]);
}

/// The layout of every line but the access log's: `tracing`'s own (JSON: timestamp, level, the
/// event's fields, target; text: its default `Full` format without colours), with the request
/// the thread works for ([`request_scope`]) where `tracing` would print the current span:
/// `"span":{"request_id":…,"name":"request"}`, or `request{request_id="…"}:`.
#[derive(Debug, Clone, Copy)]
struct Lines(LogFormat);

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let metadata = event.metadata();
        let request = request_scope::current();
        match self.0 {
            LogFormat::Json => {
                let mut line = Vec::with_capacity(256);
                line.extend_from_slice(b"{\"timestamp\":\"");
                timestamp(&mut line);
                line.extend_from_slice(b"\",\"level\":\"");
                line.extend_from_slice(metadata.level().as_str().as_bytes());
                line.push(b'"');
                let mut fields = JsonObject::new(line);
                event.record(&mut fields);
                let mut line = fields.bytes;
                line.extend_from_slice(b",\"target\":");
                push_json_string(&mut line, metadata.target());
                if let Some(request) = request {
                    line.extend_from_slice(b",\"span\":{\"request_id\":");
                    push_json_string(&mut line, request.as_str());
                    line.extend_from_slice(b",\"name\":\"request\"}");
                }
                line.extend_from_slice(b"}\n");
                writer.write_str(std::str::from_utf8(&line).map_err(|_| std::fmt::Error)?)
            }
            LogFormat::Pretty => {
                let mut head = Vec::with_capacity(96);
                timestamp(&mut head);
                let _ = write!(head, " {:>5} ", metadata.level().as_str());
                if let Some(request) = request {
                    let _ = write!(head, "request{{request_id={:?}}}: ", request.as_str());
                }
                head.extend_from_slice(metadata.target().as_bytes());
                head.extend_from_slice(b": ");
                writer.write_str(std::str::from_utf8(&head).map_err(|_| std::fmt::Error)?)?;
                ctx.format_fields(writer.by_ref(), event)?;
                writeln!(writer)
            }
        }
    }
}

/// A JSON object being written, one field at a time.
#[derive(Debug)]
struct JsonObject {
    bytes: Vec<u8>,
    /// Reused for the text of `Debug` values.
    scratch: String,
}

impl JsonObject {
    /// An object written into `bytes` (empty, or as [`Self::continuing`] leaves it).
    fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            scratch: String::new(),
        }
    }

    fn key(&mut self, field: &Field) {
        if self.bytes.is_empty() {
            self.bytes.push(b'{');
        } else if self.bytes.len() > 1 {
            // Not right after the `{`.
            self.bytes.push(b',');
        }
        let name = field.name();
        push_json_string(&mut self.bytes, name.strip_prefix("r#").unwrap_or(name));
        self.bytes.push(b':');
    }
}

impl Visit for JsonObject {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_string(&mut self.bytes, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        let _ = write!(text, "{value:?}");
        self.record_str(field, &text);
        self.scratch = text;
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        if value < 0 {
            self.bytes.push(b'-');
        }
        push_decimal(&mut self.bytes, value.unsigned_abs());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        push_decimal(&mut self.bytes, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.bytes
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.bytes, "{value}");
        } else {
            // JSON has no NaN or infinity; serde_json writes null too.
            self.bytes.extend_from_slice(b"null");
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped_lines: u64,
    closed: bool,
}

/// Log lines appended to a shared buffer that one thread prints every [`FLUSH_EVERY`].
///
/// Why not `tracing_appender::non_blocking`: its channel wakes the writer thread for nearly
/// every line when lines arrive one by one, and under request load that wake-up (a futex call
/// and a context switch per access-log line) cost about a tenth of the server's CPU
/// (`perf`, `bench/run.sh predict_echo`). Here a line is a short append under a lock; the
/// thread wakes on its tick, or early when the buffer is large or the logger closes.
#[derive(Debug, Clone, Default)]
struct BatchedStdout {
    shared: Arc<(Mutex<Pending>, Condvar)>,
}

impl BatchedStdout {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.shared.0)
    }

    fn append(&self, line: &[u8]) {
        let mut pending = self.pending();
        if pending.bytes.len() + line.len() > DROP_ABOVE_BYTES {
            pending.dropped_lines += 1;
            return;
        }
        let was_below = pending.bytes.len() < FLUSH_AT_BYTES;
        pending.bytes.extend_from_slice(line);
        if was_below && pending.bytes.len() >= FLUSH_AT_BYTES {
            self.shared.1.notify_one();
        }
    }

    fn close(&self) {
        self.pending().closed = true;
        self.shared.1.notify_one();
    }

    /// Starts the thread that prints the buffer to `out` until [`Self::close`], then prints
    /// what is left.
    fn spawn_printer(
        &self,
        mut out: impl Write + Send + 'static,
    ) -> std::io::Result<JoinHandle<()>> {
        let writer = self.clone();
        std::thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn(move || {
                let mut printing = Vec::new();
                loop {
                    let (dropped, closed) = {
                        let mut pending = writer.pending();
                        if !pending.closed && pending.bytes.len() < FLUSH_AT_BYTES {
                            pending = writer
                                .shared
                                .1
                                .wait_timeout(pending, FLUSH_EVERY)
                                .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
                        }
                        std::mem::swap(&mut pending.bytes, &mut printing);
                        (std::mem::take(&mut pending.dropped_lines), pending.closed)
                    };
                    if dropped > 0 {
                        let _ = writeln!(
                            out,
                            "{{\"level\":\"WARN\",\"message\":\"{dropped} log lines were dropped: stdout could not keep up\"}}"
                        );
                    }
                    // A failing stdout (closed pipe) must not stop the server; lines are lost.
                    let _ = out.write_all(&printing).and_then(|()| out.flush());
                    printing.clear();
                    if closed {
                        return;
                    }
                }
            })
    }
}

impl Write for BatchedStdout {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStdout {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inference_engine_core::job::RequestId;

    /// A `Write` whose bytes the test can read.
    #[derive(Debug, Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_access_line_is_one_json_object_with_the_fields_of_the_request() {
        let mut line = Vec::new();
        access_json(
            &mut line,
            &AccessRecord {
                request_id: "req \"1\"\\\n\u{1}é",
                tenant_id: Some("tenant_a"),
                job_id: None,
                model: Some("echo"),
                version: None,
                method: "POST",
                path: "/predict",
                status: 200,
                grpc_code: None,
                latency: Duration::from_micros(1_250),
            },
        );
        let text = String::from_utf8(line).unwrap();
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "timestamp": parsed["timestamp"],
                "level": "INFO",
                "message": "request_completed",
                "request_id": "req \"1\"\\\n\u{1}é",
                "tenant_id": "tenant_a",
                "model": "echo",
                "method": "POST",
                "path": "/predict",
                "status": 200,
                "latency_ms": 1.25,
                "target": "inference_engine_server::middleware",
            })
        );
        let timestamp = parsed["timestamp"].as_str().unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(timestamp).unwrap();
        assert!((chrono::Utc::now() - at.to_utc()).num_seconds().abs() < 60);
        assert_eq!(timestamp.len(), "2026-11-28T13:44:23.592510Z".len());
    }

    #[test]
    fn every_byte_json_must_escape_is_found_wherever_it_stands() {
        let clean = "abcdefghijklmnopqrstuvwxyz0123456789-_/. é漢~\u{7f}";
        for length in 0..=clean.len() {
            if let Some(prefix) = clean.get(..length) {
                assert!(!needs_escape(prefix.as_bytes()), "{prefix:?}");
            }
        }
        let specials = (0u8..0x20).chain([b'"', b'\\']);
        for special in specials {
            for at in 0..20 {
                let mut bytes = b"abcdefghijklmnopqrst".to_vec();
                bytes[at] = special;
                assert!(needs_escape(&bytes), "{special:#x} at {at}");
                let text = String::from_utf8(bytes).unwrap();
                let mut line = Vec::new();
                push_json_string(&mut line, &text);
                let parsed: String = serde_json::from_slice(&line).unwrap();
                assert_eq!(parsed, text);
            }
        }
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds_across_seconds_and_days() {
        let times = [
            "2026-11-28T23:59:59.999999Z",
            "2026-11-28T23:59:59.000001Z",
            "2026-11-29T00:00:00.000000Z",
            "2026-11-29T00:00:00.250000Z",
            "2026-11-28T23:59:59.500000Z",
        ];
        for expected in times {
            let at = chrono::DateTime::parse_from_rfc3339(expected)
                .unwrap()
                .to_utc();
            let mut line = Vec::new();
            push_timestamp(&mut line, at);
            assert_eq!(String::from_utf8(line).unwrap(), expected);
        }
    }

    /// The lines `format` gives two events: one written for request `req-"1"`, one outside it.
    fn lines_inside_and_outside_a_request(format: LogFormat) -> Vec<String> {
        let out = Captured::default();
        let writer = {
            let out = out.clone();
            move || out.clone()
        };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .event_format(Lines(format))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let request = RequestId::parse("req-\"1\"").unwrap();
            {
                let _entered = request_scope::enter(Some(request));
                tracing::warn!(
                    attempt = 3_u64,
                    delta = -2_i64,
                    retried = false,
                    ratio = 0.5,
                    model = "echo",
                    error = %"tab\there",
                    "model failed"
                );
            }
            tracing::info!("outside");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn json_lines_carry_the_event_fields_and_the_request_they_were_written_for() {
        let lines: Vec<serde_json::Value> = lines_inside_and_outside_a_request(LogFormat::Json)
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let target = module_path!();
        assert_eq!(
            lines[0],
            serde_json::json!({
                "timestamp": lines[0]["timestamp"],
                "level": "WARN",
                "attempt": 3,
                "delta": -2,
                "retried": false,
                "ratio": 0.5,
                "model": "echo",
                "error": "tab\there",
                "message": "model failed",
                "target": target,
                "span": { "request_id": "req-\"1\"", "name": "request" },
            })
        );
        assert_eq!(
            lines[1],
            serde_json::json!({
                "timestamp": lines[1]["timestamp"],
                "level": "INFO",
                "message": "outside",
                "target": target,
            })
        );
        let timestamp = lines[0]["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
    }

    #[test]
    fn text_lines_name_the_request_like_a_span() {
        let lines = lines_inside_and_outside_a_request(LogFormat::Pretty);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let target = module_path!();
        let (timestamp, rest) = lines[0].split_once(' ').unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
        assert_eq!(
            rest,
            format!(
                " WARN request{{request_id=\"req-\\\"1\\\"\"}}: {target}: model failed \
                 attempt=3 delta=-2 retried=false ratio=0.5 model=\"echo\" error=tab\there"
            )
        );
        let (_, rest) = lines[1].split_once(' ').unwrap();
        assert_eq!(rest, format!(" INFO {target}: outside"));
    }

    #[test]
    fn numbers_are_written_in_decimal_and_durations_in_milliseconds_with_three_decimals() {
        let written = |write: &dyn Fn(&mut Vec<u8>)| {
            let mut out = b"x=".to_vec();
            write(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(written(&|out| push_decimal(out, 0)), "x=0");
        assert_eq!(written(&|out| push_decimal(out, 429)), "x=429");
        assert_eq!(
            written(&|out| push_decimal(out, u64::MAX)),
            "x=18446744073709551615"
        );
        assert_eq!(written(&|out| push_padded(out, 7, 3)), "x=007");
        assert_eq!(written(&|out| push_padded(out, 2026, 2)), "x=2026");
        let millis = |duration| written(&|out| push_millis(out, duration));
        assert_eq!(millis(Duration::from_nanos(12_345_678)), "x=12.345");
        assert_eq!(millis(Duration::from_micros(18)), "x=0.018");
        assert_eq!(millis(Duration::ZERO), "x=0.000");
        assert_eq!(millis(Duration::from_secs(90)), "x=90000.000");
        assert_eq!(
            millis(Duration::from_micros(u64::MAX)),
            "x=18446744073709551.615"
        );
        let mut text = [0; NUMBER_TEXT_LEN];
        assert_eq!(millis_text(Duration::from_micros(51), &mut text), "0.051");
    }

    #[test]
    fn every_line_is_printed_in_order_by_the_time_the_guard_is_dropped() {
        let writer = BatchedStdout::default();
        let out = Captured::default();
        let guard = TelemetryGuard {
            writer: writer.clone(),
            thread: Some(writer.spawn_printer(out.clone()).unwrap()),
        };
        let mut expected = String::new();
        for line in 0..10_000 {
            let line = format!("{{\"line\":{line}}}\n");
            writer.make_writer().write_all(line.as_bytes()).unwrap();
            expected.push_str(&line);
        }
        drop(guard);
        assert_eq!(
            String::from_utf8(out.0.lock().unwrap().clone()).unwrap(),
            expected
        );
    }

    #[test]
    fn lines_beyond_the_memory_cap_are_dropped_and_reported() {
        let writer = BatchedStdout::default();
        let line = vec![b'x'; 1024 * 1024];
        // No printer thread yet: the buffer only grows.
        for _ in 0..20 {
            writer.make_writer().write_all(&line).unwrap();
        }
        assert_eq!(writer.pending().bytes.len(), DROP_ABOVE_BYTES);
        assert_eq!(writer.pending().dropped_lines, 4);
        let out = Captured::default();
        let thread = writer.spawn_printer(out.clone()).unwrap();
        writer.close();
        thread.join().unwrap();
        let printed = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(printed.starts_with("{\"level\":\"WARN\",\"message\":\"4 log lines were dropped"));
        assert_eq!(
            printed.len() - printed.find('\n').unwrap() - 1,
            DROP_ABOVE_BYTES
        );
    }
}
