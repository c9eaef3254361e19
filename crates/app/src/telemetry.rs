//! Logging: one JSON object per line on stdout (or human-readable lines), written by a
//! background thread so a slow terminal or pipe never stalls request handling. The access log,
//! one line per request, is formatted here by hand ([`access_log`]); every other line goes
//! through `tracing`.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use inference_engine_core::sync::lock;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Format, Json, Writer};
use tracing_subscriber::fmt::{FormatFields, FormattedFields, MakeWriter, SubscriberBuilder};

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
    let filter = EnvFilter::try_new(level)
        .map_err(|err| format!("LOG_LEVEL {level:?} is not a valid log filter: {err}"))?;
    let writer = BatchedStdout::default();
    let thread = writer
        .spawn_printer(std::io::stdout())
        .map_err(|err| format!("cannot start the log writer thread: {err}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone());
    let installed = match format {
        LogFormat::Json => json_lines(builder).try_init(),
        LogFormat::Pretty => builder.with_ansi(false).try_init(),
    };
    installed.map_err(|err| format!("cannot install the logger: {err}"))?;
    // The first logger of the process wins, like `tracing`'s global subscriber above.
    let _ = DIRECT.set((writer.clone(), format));
    Ok(TelemetryGuard {
        writer,
        thread: Some(thread),
    })
}

/// The JSON log format: one object per line, the event's fields at the top level and the
/// current span's fields (written by [`SpanFieldsJson`]) under `"span"`.
fn json_lines<F, W>(
    builder: SubscriberBuilder<DefaultFields, Format, F, W>,
) -> SubscriberBuilder<SpanFieldsJson, Format<Json>, F, W> {
    builder
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .fmt_fields(SpanFieldsJson)
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
    let texts = [
        ("request_id", Some(record.request_id)),
        ("tenant_id", record.tenant_id),
        ("job_id", record.job_id),
        ("model", record.model),
        ("version", record.version),
        ("method", Some(record.method)),
        ("path", Some(record.path)),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            line.push(b',');
            push_json_string(line, key);
            line.push(b':');
            push_json_string(line, value);
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
    use chrono::{Datelike, Timelike};
    let now = chrono::Utc::now();
    let fields = [
        (u64::try_from(now.year()).unwrap_or(0), 4, b'-'),
        (u64::from(now.month()), 2, b'-'),
        (u64::from(now.day()), 2, b'T'),
        (u64::from(now.hour()), 2, b':'),
        (u64::from(now.minute()), 2, b':'),
        (u64::from(now.second()), 2, b'.'),
        // A leap second shows as 60.999999 elsewhere; here it stays in its second.
        (
            u64::from((now.nanosecond() % 1_000_000_000) / 1_000),
            6,
            b'Z',
        ),
    ];
    for (value, width, then) in fields {
        push_padded(line, value, width);
        line.push(then);
    }
}

/// Appends `value` in decimal, zero-padded to at least `width` digits. By hand rather than
/// through `core::fmt`: the access line and the timing headers of every response use it, and
/// the formatter's machinery cost several times the digits themselves.
fn push_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let start = start.min(digits.len().saturating_sub(width));
    out.extend_from_slice(&digits[start..]);
}

/// Appends `value` in decimal.
fn push_decimal(out: &mut Vec<u8>, value: u64) {
    push_padded(out, value, 1);
}

/// Appends `duration` in milliseconds with three decimals (`12.345`).
pub fn push_millis(out: &mut Vec<u8>, duration: Duration) {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    push_decimal(out, micros / 1_000);
    out.push(b'.');
    push_padded(out, micros % 1_000, 3);
}

/// Appends `text` as a JSON string, quotes included.
fn push_json_string(line: &mut Vec<u8>, text: &str) {
    line.push(b'"');
    push_escaped(line, text);
    line.push(b'"');
}

/// `text` as the inside of a JSON string.
fn push_escaped(line: &mut Vec<u8>, text: &str) {
    // Almost every value (ids, names, paths) needs no escape: one branch-free pass (which the
    // compiler vectorises) instead of a match per byte.
    let needs_escape = text.bytes().fold(false, |found, byte| {
        found | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    });
    if !needs_escape {
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

/// A span's fields as the JSON object the JSON event formatter expects (it parses it back into
/// each event's `"span"`), written directly. `tracing-subscriber`'s own `JsonFields` gathers
/// them in a map of `serde_json` values and serialises that. With the request id recorded as a
/// `&str`, this took 2 % off the instructions of the runtime threads per request
/// (`bench/instructions.sh`: 84.3k to 82.5k), where `JsonFields` gained nothing from the `&str`.
#[derive(Debug, Clone, Copy, Default)]
struct SpanFieldsJson;

impl<'writer> FormatFields<'writer> for SpanFieldsJson {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut object = JsonObject::new(Vec::with_capacity(96));
        fields.record(&mut object);
        writer.write_str(&object.finish()?)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        let mut object = JsonObject::continuing(std::mem::take(&mut current.fields));
        fields.record(&mut object);
        current.fields = object.finish()?;
        Ok(())
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

    /// Continues the object `written` (as [`Self::finish`] left it) with more fields.
    fn continuing(written: String) -> Self {
        let mut bytes = written.into_bytes();
        if bytes.last() == Some(&b'}') {
            bytes.pop();
        }
        Self::new(bytes)
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

    fn finish(mut self) -> Result<String, std::fmt::Error> {
        if self.bytes.is_empty() {
            self.bytes.push(b'{');
        }
        self.bytes.push(b'}');
        String::from_utf8(self.bytes).map_err(|_| std::fmt::Error)
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
    fn events_in_a_span_carry_its_fields_as_a_json_object() {
        let out = Captured::default();
        let writer = {
            let out = out.clone();
            move || out.clone()
        };
        let subscriber = json_lines(tracing_subscriber::fmt().with_writer(writer)).finish();
        tracing::subscriber::with_default(subscriber, || {
            let id = "req-\"1\"";
            let span = tracing::info_span!(
                "request",
                request_id = %id,
                attempt = 3_u64,
                delta = -2_i64,
                retried = false,
                ratio = 0.5,
                later = tracing::field::Empty,
            );
            let _entered = span.enter();
            tracing::warn!("first");
            span.record("later", "set");
            tracing::warn!("second");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let expected = serde_json::json!({
            "request_id": "req-\"1\"",
            "attempt": 3,
            "delta": -2,
            "retried": false,
            "ratio": 0.5,
            "name": "request",
        });
        assert_eq!(lines[0]["span"], expected, "{text}");
        let mut with_later = expected;
        with_later["later"] = "set".into();
        assert_eq!(lines[1]["span"], with_later, "{text}");
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
