//! Logging: one JSON object per line on stdout (or human-readable lines), written by a
//! background thread so a slow terminal or pipe never stalls request handling.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Keeps the log writer alive; dropping it flushes what is buffered. Hold it until exit.
#[derive(Debug)]
pub struct TelemetryGuard {
    _writer: WorkerGuard,
}

/// Installs the global subscriber. `level` is a level or `EnvFilter` directives.
pub fn init(level: &str, format: LogFormat) -> Result<TelemetryGuard, String> {
    let filter = EnvFilter::try_new(level)
        .map_err(|err| format!("LOG_LEVEL {level:?} is not a valid log filter: {err}"))?;
    // Lossy: under a flood of log lines, dropping lines beats blocking the server.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(128_000)
        // The writer thread drains every queued line into this buffer and flushes once the
        // queue is empty: one write(2) per burst instead of one per line.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
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
    Ok(TelemetryGuard { _writer: guard })
}
