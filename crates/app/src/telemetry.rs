//! Logging: one JSON object per line on stdout (or human-readable lines), written by a
//! background thread so a slow terminal or pipe never stalls request handling.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use inference_engine_core::sync::lock;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.with_ansi(false).try_init(),
    };
    installed.map_err(|err| format!("cannot install the logger: {err}"))?;
    Ok(TelemetryGuard {
        writer,
        thread: Some(thread),
    })
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
