//! Logging: human-readable by default, JSON lines with `--log-format json`.
//! The filter comes from `--log-level` / `LOG_LEVEL` (a level or a full
//! tracing filter such as `gitfaas=debug,kube=info`).
//!
//! A function uid is the credential of `POST /response`: no log line carries
//! one whole, at any level ([`uid_prefix`], [`access_path`]); the access log
//! writes paths without their query strings (query values are callers' data).

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

/// A function uid as logs show it: [`crate::uid::prefix`].
pub use crate::uid::prefix as uid_prefix;

/// A request's path as logs and error messages write it: decoded as the
/// router decodes it (`/response/%66-…` is routed to `/response/{uid}`
/// with `f-…`), without its query string, and with every function uid cut
/// to its prefix: the segment after `/response/`, whatever it looks like,
/// and any segment that starts with `f-`.
pub fn access_path(path: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let mut out = String::with_capacity(decoded.len());
    let mut after_response = false;
    for (i, segment) in decoded.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if after_response || segment.starts_with("f-") {
            out.push_str(&uid_prefix(segment));
        } else {
            out.push_str(segment);
        }
        after_response = i == 1 && segment == "response";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_whole_function_uid_reaches_a_log() {
        let uid = format!(
            "f-{}-r-{}",
            "0b3e9d2c-8f61-4e0a-9a55-1c2b3d4e5f60", "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
        );
        assert_eq!(uid.len(), 77);
        assert_eq!(uid_prefix(&uid), "f-0b3e9d2c…");
        assert_eq!(
            access_path(&format!("/response/{uid}")),
            "/response/f-0b3e9d2c…"
        );
        assert_eq!(
            access_path(&format!("/response/%66{}", &uid[1..])),
            "/response/f-0b3e9d2c…",
            "percent-encoded, as the router decodes it"
        );
        assert_eq!(
            access_path(&format!("/response/%2566{}", &uid[1..])),
            "/response/%66-0b3e9d…",
            "whatever follows /response/ is cut"
        );
        assert_eq!(
            access_path(&format!("/requests/{uid}/x")),
            "/requests/f-0b3e9d2c…/x"
        );
        assert_eq!(access_path("/response/r-1"), "/response/r-1");
        assert_eq!(access_path("/publish/t"), "/publish/t");
        assert_eq!(uid_prefix("f-1"), "f-1");
    }
}
