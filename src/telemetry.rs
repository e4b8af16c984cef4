//! Logging: human-readable by default, JSON lines with `--log-format json`.
//! The filter comes from `--log-level` / `LOG_LEVEL` (a level or a full
//! tracing filter such as `gitfaas=debug,kube=info`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call is a no-op.
pub fn init(level: &str, json: bool) {
    let filter =
        EnvFilter::try_new(level.to_ascii_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
