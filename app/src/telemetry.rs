//! The one place the tracing subscriber is built.
//!
//! Convention (see docs/ARCHITECTURE.md): log messages are short lower-case phrases
//! ("user registered", "stock reserved"); everything variable goes into structured fields.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured filter.
/// Calling it again (tests start many apps in one process) is harmless.
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_span_events(FmtSpan::NONE)
        .with_target(true);
    let _already_installed = match settings.format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
