//! Who may call the API: bearer tokens for publish, refresh, requests and
//! response reads (a function uid is itself the credential for posting a
//! response), and signatures of git push webhooks (GitHub, GitLab, generic
//! HMAC). Comparisons are constant-time; tokens and secrets are read from
//! files and never logged.
//!
//! The token file holds one token per line (`#` comments and blank lines
//! ignored) and is re-read whenever its modification time or size changes,
//! so tokens rotate without a restart; it is looked at at most once a
//! second ([`RECHECK_EVERY`]).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, TryLockError};
use std::time::{Duration, Instant, SystemTime};

use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Errors of reading credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A credentials file cannot be read.
    #[error("cannot read {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// How long the token file's last look stands: it is looked at (one
/// `stat`) at most once per this, by one request, not by every request. A
/// `stat` per request was a system call on the path of every publish, and
/// on a network or FUSE volume a round trip, for a file that changes a few
/// times a year; a second is far below any rotation's pace. The price: a
/// token removed from the file keeps working up to a second longer.
pub const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// API bearer tokens from a file, reloaded when it changes.
pub struct ApiTokens {
    path: PathBuf,
    // std RwLock: read on every request, written on a reload; never held across .await.
    state: RwLock<TokenState>,
    /// How long a look at the file stands ([`RECHECK_EVERY`]).
    recheck_every: Duration,
    /// When the file was last looked at. Taken with `try_lock`: the request
    /// that gets it looks, the ones meanwhile go on with the tokens read.
    checked_at: Mutex<Instant>,
}

struct TokenState {
    stamp: Option<(SystemTime, u64)>,
    /// SHA-256 of each token: equal lengths make the comparison constant-time.
    digests: Vec<[u8; 32]>,
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

fn read_secret_file(path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|e| AuthError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl ApiTokens {
    /// Loads the token file; it must be readable now.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        Self::load_rechecking(path, RECHECK_EVERY)
    }

    /// As [`ApiTokens::load`], the file looked at again at most once per
    /// `recheck_every`.
    pub fn load_rechecking(path: &Path, recheck_every: Duration) -> Result<Self, AuthError> {
        let tokens = ApiTokens {
            path: path.to_path_buf(),
            state: RwLock::new(TokenState {
                stamp: None,
                digests: Vec::new(),
            }),
            recheck_every,
            checked_at: Mutex::new(Instant::now()),
        };
        tokens.reload()?;
        Ok(tokens)
    }

    /// Whether this request is the one to look at the file: its last look
    /// is older than the interval and no other request is deciding now.
    fn look_due(&self) -> bool {
        let mut checked_at = match self.checked_at.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        let now = Instant::now();
        if now.saturating_duration_since(*checked_at) < self.recheck_every {
            return false;
        }
        *checked_at = now;
        true
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.state.read().map(|s| s.digests.len()).unwrap_or(0)
    }

    /// Whether no token is configured (every request is refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn reload(&self) -> Result<(), AuthError> {
        let text = read_secret_file(&self.path)?;
        let digests: Vec<[u8; 32]> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| digest(l.as_bytes()))
            .collect();
        if digests.is_empty() {
            tracing::warn!(file = %self.path.display(), "the API token file holds no token: every authenticated request is refused");
        }
        if let Ok(mut s) = self.state.write() {
            s.stamp = stamp(&self.path);
            s.digests = digests;
        }
        Ok(())
    }

    /// Whether `presented` is one of the tokens. Re-reads the file first if
    /// it changed (looked at once per [`RECHECK_EVERY`]); an unreadable file
    /// keeps the tokens last read.
    pub fn verify(&self, presented: &str) -> bool {
        let changed = self.look_due() && {
            let now = stamp(&self.path);
            self.state.read().map(|s| s.stamp != now).unwrap_or(true)
        };
        if changed {
            match self.reload() {
                Ok(()) => tracing::info!(tokens = self.len(), "API tokens reloaded"),
                Err(e) => tracing::warn!(error = %e, "keeping the previous API tokens"),
            }
        }
        let d = digest(presented.as_bytes());
        let Ok(state) = self.state.read() else {
            return false;
        };
        // Compare against every token without stopping early.
        state
            .digests
            .iter()
            .fold(subtle::Choice::from(0), |found, t| found | t.ct_eq(&d))
            .into()
    }
}

/// Who presented `token`, as idempotency scopes name it: `t-` and 16 hex
/// digits of its SHA-256 — stable, and useless as a credential.
pub fn caller_id(token: &str) -> String {
    let d = digest(token.as_bytes());
    let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("t-{hex}")
}

/// The shared secret of the git webhook.
pub struct WebhookSecret(SecretString);

/// Why a webhook call is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRefusal {
    /// No signature header at all.
    #[error("no signature: send X-Hub-Signature-256 (GitHub), X-Gitlab-Token (GitLab), or X-Gitfaas-Signature-256 (sha256=<hex HMAC-SHA256 of `<timestamp>.<body>`>) with X-Gitfaas-Timestamp (<timestamp>, Unix seconds)")]
    Missing,
    /// A generic signature without its timestamp: it would sign the body
    /// alone, and a captured call could be sent again at any time.
    #[error("X-Gitfaas-Signature-256 needs X-Gitfaas-Timestamp: sign `<timestamp>.<body>` (Unix seconds, a dot, then the body) and send the timestamp in X-Gitfaas-Timestamp; a signature of the body alone could be replayed, so it is refused")]
    Unstamped,
    /// A signature that does not match.
    #[error("the webhook signature does not match: check the secret configured on the git server")]
    Mismatch,
    /// A signed timestamp too far from now: a replay, or a clock far off.
    #[error("X-Gitfaas-Timestamp is more than {MAX_CLOCK_SKEW_SECS} s away from this server's clock: sign each delivery when you send it (and check the sender's clock)")]
    Stale,
}

/// How far a generic webhook's signed timestamp may be from now.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

impl WebhookSecret {
    /// Reads the secret (surrounding whitespace trimmed) from a file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = read_secret_file(path)?;
        let secret = text.trim().to_string();
        if secret.is_empty() {
            return Err(AuthError::File {
                path: path.display().to_string(),
                message: "the file is empty".into(),
            });
        }
        Ok(WebhookSecret(SecretString::from(secret)))
    }

    /// A secret from a string (tests).
    pub fn new(secret: &str) -> Self {
        WebhookSecret(SecretString::from(secret.to_string()))
    }

    /// Verifies a webhook call from its headers (`name` lowercase → value)
    /// and body, at `now` (Unix seconds). A generic signature must carry
    /// `X-Gitfaas-Timestamp`: it signs `<timestamp>.<body>`, and the
    /// timestamp must be within [`MAX_CLOCK_SKEW_SECS`] of now, so a
    /// captured call cannot be replayed later; within that window the
    /// caller refuses a repeat by [`Verified::replay_key`].
    pub fn verify<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        body: &[u8],
        now: u64,
    ) -> Result<Verified, WebhookRefusal> {
        let secret = self.0.expose_secret().as_bytes();
        if let Some(sig) = header("x-hub-signature-256") {
            return verify_hmac(secret, &[body], sig).map(|()| Verified::GitServer);
        }
        if let Some(sig) = header("x-gitfaas-signature-256") {
            let ts = header("x-gitfaas-timestamp")
                .map(str::trim)
                .ok_or(WebhookRefusal::Unstamped)?;
            verify_hmac(secret, &[ts.as_bytes(), b".", body], sig)?;
            let ts: u64 = ts.parse().map_err(|_| WebhookRefusal::Mismatch)?;
            if ts.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
                return Err(WebhookRefusal::Stale);
            }
            return Ok(Verified::Generic {
                replay_key: generic_replay_key(sig),
            });
        }
        if let Some(token) = header("x-gitlab-token") {
            let ok: bool = digest(token.as_bytes()).ct_eq(&digest(secret)).into();
            return if ok {
                Ok(Verified::GitServer)
            } else {
                Err(WebhookRefusal::Mismatch)
            };
        }
        Err(WebhookRefusal::Missing)
    }
}

/// What a verified webhook call was signed with.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    /// GitHub's or GitLab's scheme: the git server's delivery id header
    /// tells a repeat.
    GitServer,
    /// The generic signature (of `<timestamp>.<body>`).
    Generic {
        /// What to remember so the same signed call is not accepted twice:
        /// `generic:` and the first 32 hex digits of the signature (128
        /// bits, as unguessable as the HMAC itself).
        replay_key: String,
    },
}

impl Verified {
    /// The key under which this call is remembered against a replay, when
    /// the signature itself is what identifies the delivery.
    pub fn replay_key(&self) -> Option<&str> {
        match self {
            Verified::GitServer => None,
            Verified::Generic { replay_key } => Some(replay_key),
        }
    }
}

/// `generic:<first 32 hex digits>` of a verified `sha256=<hex>` header.
fn generic_replay_key(header: &str) -> String {
    let hex = header.trim().trim_start_matches("sha256=");
    let head: String = hex
        .chars()
        .take(32)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("generic:{head}")
}

fn verify_hmac(secret: &[u8], parts: &[&[u8]], header: &str) -> Result<(), WebhookRefusal> {
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookRefusal::Mismatch)?;
    let Some(expected) = decode_hex(hex) else {
        return Err(WebhookRefusal::Mismatch);
    };
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .map_err(|_| WebhookRefusal::Mismatch)?;
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(&expected)
        .map_err(|_| WebhookRefusal::Mismatch)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The generic signature of `body` sent at `timestamp` (Unix seconds), for
/// `X-Gitfaas-Signature-256` with `X-Gitfaas-Timestamp: <timestamp>`.
pub fn sign_at(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    sign(secret, &signed)
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`: what GitHub
/// sends in `X-Hub-Signature-256` (and what tests sign with). The generic
/// scheme signs a timestamp too: [`sign_at`].
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any size");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// What a browser may do (see `http::browser`, where it runs): no
/// state-changing request from another site or a foreign `Origin`, and with
/// `--allowed-hosts` no `Host` gitfaas does not serve (DNS rebinding).
#[derive(Debug, Clone, Default)]
pub struct BrowserPolicy {
    /// Origins (`scheme://host[:port]`, lowercase) allowed besides our own.
    pub allowed_origins: Vec<String>,
    /// Host headers served (`host` or `host:port`, lowercase); empty: any.
    pub allowed_hosts: Vec<String>,
}

impl BrowserPolicy {
    /// Parses the two lists (separated by commas or spaces).
    pub fn parse(origins: &str, hosts: &str) -> Result<Self, String> {
        let list = |s: &str| -> Vec<String> {
            s.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|e| !e.is_empty())
                .map(|e| e.trim_end_matches('/').to_ascii_lowercase())
                .collect()
        };
        let allowed_origins = list(origins);
        if let Some(bad) = allowed_origins.iter().find(|o| {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"));
            rest.is_none_or(|r| r.is_empty() || r.contains('/'))
        }) {
            return Err(format!(
                "--allowed-origins: `{bad}` is not an origin: write scheme://host[:port], e.g. https://console.example.com"
            ));
        }
        let allowed_hosts = list(hosts);
        if let Some(bad) = allowed_hosts.iter().find(|h| h.contains('/')) {
            return Err(format!(
                "--allowed-hosts: `{bad}` is not a host: write host or host:port, e.g. gitfaas.example.com"
            ));
        }
        Ok(BrowserPolicy {
            allowed_origins,
            allowed_hosts,
        })
    }

    /// Why a request is refused, or None.
    pub fn refusal(
        &self,
        method: &str,
        path: &str,
        host: Option<&str>,
        origin: Option<&str>,
        fetch_site: Option<&str>,
        secure: bool,
    ) -> Option<String> {
        let host = host.map(str::to_ascii_lowercase);
        if !self.allowed_hosts.is_empty() && !is_probe(path) {
            let served = host.as_deref().is_some_and(|h| {
                let bare = h.rsplit_once(':').map_or(h, |(name, _)| name);
                self.allowed_hosts.iter().any(|a| a == h || a == bare)
            });
            if !served {
                return Some(format!(
                    "Host `{}` is not served here (--allowed-hosts): use one of {}",
                    host.as_deref().unwrap_or(""),
                    self.allowed_hosts.join(", ")
                ));
            }
        }
        let changes_state = !matches!(method, "GET" | "HEAD" | "OPTIONS") || path == "/refresh";
        if !changes_state {
            return None;
        }
        if fetch_site.is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
            return Some(
                "cross-site requests are refused (Sec-Fetch-Site: cross-site): call gitfaas from a server, or from a page on an origin listed in --allowed-origins".into(),
            );
        }
        if let Some(origin) = origin {
            let origin = origin.trim_end_matches('/').to_ascii_lowercase();
            let own = host
                .as_deref()
                .map(|h| format!("{}://{h}", if secure { "https" } else { "http" }));
            let allowed = Some(&origin) == own.as_ref() || self.allowed_origins.contains(&origin);
            if !allowed {
                return Some(format!(
                    "requests from origin `{origin}` are refused: add it to --allowed-origins if pages there may call gitfaas"
                ));
            }
        }
        None
    }
}

/// Probes come from the kubelet with the pod's IP as Host.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/alive")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn tokens_are_checked_and_reloaded_when_the_file_changes() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# ops\nalpha\n\n  beta  \n").expect("write");
        // Looked at on every request here; see the tests below for the interval.
        let tokens = ApiTokens::load_rechecking(&file, Duration::ZERO).expect("load");
        assert_eq!(tokens.len(), 2);
        assert!(tokens.verify("alpha") && tokens.verify("beta"));
        assert!(!tokens.verify("gamma") && !tokens.verify("") && !tokens.verify("alph"));
        std::fs::write(&file, "gamma-longer-token\n").expect("rotate");
        assert!(
            tokens.verify("gamma-longer-token"),
            "the new token works without a restart"
        );
        assert!(!tokens.verify("alpha"), "the removed token no longer works");
        std::fs::remove_file(&file).expect("rm");
        assert!(
            tokens.verify("gamma-longer-token"),
            "an unreadable file keeps the last tokens"
        );
    }

    /// The file is looked at once per interval, not per request: a change
    /// inside the interval is not seen yet.
    #[test]
    fn the_token_file_is_looked_at_once_per_interval_not_per_request() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("tokens");
        std::fs::write(&file, "alpha\n").expect("write");
        let tokens = ApiTokens::load_rechecking(&file, Duration::from_secs(3600)).expect("load");
        assert!(tokens.verify("alpha"));
        std::fs::write(&file, "beta-rotated\n").expect("rotate");
        assert!(
            tokens.verify("alpha") && !tokens.verify("beta-rotated"),
            "not looked at again within the interval"
        );
    }

    /// With the interval gitfaas uses, a rotated file is picked up within
    /// about a second, without a restart.
    #[test]
    fn a_rotated_token_file_is_picked_up_within_a_second_or_so() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("tokens");
        std::fs::write(&file, "alpha\n").expect("write");
        let tokens = ApiTokens::load(&file).expect("load");
        assert!(tokens.verify("alpha"));
        std::fs::write(&file, "beta-rotated\n").expect("rotate");
        let rotated = std::time::Instant::now();
        while !tokens.verify("beta-rotated") {
            assert!(
                rotated.elapsed() < RECHECK_EVERY * 3,
                "the rotated file was not read within {:?}",
                RECHECK_EVERY * 3
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!tokens.verify("alpha"), "the removed token no longer works");
    }

    #[test]
    fn webhook_signatures() {
        let secret = WebhookSecret::new("s3cret");
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign("s3cret", body);
        let bad = sign("other", body);
        let h = |name: &'static str, value: String| {
            move |n: &str| {
                (n == name)
                    .then_some(value.clone())
                    .map(|v| Box::leak(v.into_boxed_str()) as &str)
            }
        };
        assert_eq!(
            secret.verify(h("x-hub-signature-256", good.clone()), body, NOW),
            Ok(Verified::GitServer)
        );
        assert_eq!(
            secret.verify(h("x-hub-signature-256", bad), body, NOW),
            Err(WebhookRefusal::Mismatch)
        );
        assert_eq!(
            secret.verify(h("x-hub-signature-256", good), b"tampered", NOW),
            Err(WebhookRefusal::Mismatch)
        );
        assert_eq!(
            secret.verify(h("x-hub-signature-256", "sha256=zz".into()), body, NOW),
            Err(WebhookRefusal::Mismatch)
        );
        assert_eq!(
            secret.verify(h("x-gitlab-token", "s3cret".into()), body, NOW),
            Ok(Verified::GitServer)
        );
        assert_eq!(
            secret.verify(h("x-gitlab-token", "nope".into()), body, NOW),
            Err(WebhookRefusal::Mismatch)
        );
        assert_eq!(
            secret.verify(|_| None, body, NOW),
            Err(WebhookRefusal::Missing)
        );
        assert!(
            WebhookRefusal::Missing
                .to_string()
                .contains("X-Gitfaas-Timestamp"),
            "the hint names the timestamp of the generic scheme"
        );
    }

    fn generic(sig: String, ts: Option<String>) -> impl Fn(&str) -> Option<&'static str> {
        move |n: &str| -> Option<&'static str> {
            match n {
                "x-gitfaas-signature-256" => Some(Box::leak(sig.clone().into_boxed_str())),
                "x-gitfaas-timestamp" => ts.clone().map(|t| &*Box::leak(t.into_boxed_str())),
                _ => None,
            }
        }
    }

    /// A generic signature of the body alone could be sent again at any
    /// time: it is refused, valid or not, and the message says what to sign.
    #[test]
    fn a_generic_signature_without_a_timestamp_is_refused() {
        let secret = WebhookSecret::new("s3cret");
        let body = br#"{"ref":"refs/heads/main"}"#;
        let refusal = secret
            .verify(generic(sign("s3cret", body), None), body, NOW)
            .expect_err("body-only");
        assert_eq!(refusal, WebhookRefusal::Unstamped);
        let message = refusal.to_string();
        assert!(
            message.contains("<timestamp>.<body>") && message.contains("X-Gitfaas-Timestamp"),
            "{message}"
        );
    }

    #[test]
    fn a_timestamped_generic_signature_is_refused_when_stale_or_moved() {
        let secret = WebhookSecret::new("s3cret");
        let body = br#"{"ref":"refs/heads/main"}"#;
        let signed = |ts: u64| generic(sign_at("s3cret", ts, body), Some(ts.to_string()));
        let accepted = secret.verify(signed(NOW), body, NOW).expect("fresh");
        let key = accepted.replay_key().expect("a generic call is remembered");
        let sig = sign_at("s3cret", NOW, body);
        assert_eq!(key, format!("generic:{}", &sig["sha256=".len()..][..32]));
        assert!(secret.verify(signed(NOW - 299), body, NOW).is_ok());
        assert_eq!(
            secret.verify(signed(NOW - 301), body, NOW),
            Err(WebhookRefusal::Stale),
            "a captured call replayed later"
        );
        assert_eq!(
            secret.verify(signed(NOW + 301), body, NOW),
            Err(WebhookRefusal::Stale)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = generic(sign_at("s3cret", NOW - 1000, body), Some(NOW.to_string()));
        assert_eq!(
            secret.verify(moved, body, NOW),
            Err(WebhookRefusal::Mismatch)
        );
        // A body-only signature does not pass with a timestamp header added.
        let body_only = generic(sign("s3cret", body), Some(NOW.to_string()));
        assert_eq!(
            secret.verify(body_only, body, NOW),
            Err(WebhookRefusal::Mismatch)
        );
        // The same signature in capitals is the same call.
        let upper = generic(
            sig.to_ascii_uppercase().replace("SHA256=", "sha256="),
            Some(NOW.to_string()),
        );
        assert_eq!(
            secret
                .verify(upper, body, NOW)
                .expect("hex in capitals")
                .replay_key(),
            Some(key)
        );
    }
}

#[cfg(test)]
mod browser_tests {
    use super::*;

    #[test]
    fn cross_site_and_foreign_origins_are_refused_on_state_changing_requests() {
        let open = BrowserPolicy::default();
        let post = "POST";
        let h = Some("gitfaas.example:5000");
        // curl, a function, a git server: no browser headers.
        assert_eq!(open.refusal(post, "/publish/t", h, None, None, false), None);
        assert!(open
            .refusal(post, "/publish/t", h, None, Some("cross-site"), false)
            .is_some());
        assert!(open
            .refusal(
                post,
                "/publish/t",
                h,
                Some("http://evil.example"),
                None,
                false
            )
            .is_some());
        assert!(open
            .refusal(
                "GET",
                "/refresh",
                h,
                Some("http://evil.example"),
                None,
                false
            )
            .is_some());
        assert!(open
            .refusal(post, "/publish/t", h, Some("null"), None, false)
            .is_some());
        // Reading is not refused; the same origin is ours.
        assert_eq!(
            open.refusal(
                "GET",
                "/status",
                h,
                Some("http://evil.example"),
                Some("cross-site"),
                false
            ),
            None
        );
        assert_eq!(
            open.refusal(
                post,
                "/publish/t",
                h,
                Some("http://gitfaas.example:5000"),
                Some("same-origin"),
                false
            ),
            None
        );
        let listed = BrowserPolicy::parse("https://console.example.com/", "").expect("valid");
        assert_eq!(
            listed.refusal(
                post,
                "/publish/t",
                h,
                Some("https://console.example.com"),
                Some("same-site"),
                false
            ),
            None
        );
    }

    #[test]
    fn only_listed_hosts_are_served_except_for_probes() {
        let p = BrowserPolicy::parse("", "gitfaas.example.com, 10.0.0.7:5000").expect("valid");
        let get = "GET";
        assert_eq!(
            p.refusal(
                get,
                "/status",
                Some("gitfaas.example.com:5000"),
                None,
                None,
                false
            ),
            None
        );
        assert_eq!(
            p.refusal(
                get,
                "/status",
                Some("GITFAAS.example.com"),
                None,
                None,
                false
            ),
            None
        );
        assert_eq!(
            p.refusal(get, "/status", Some("10.0.0.7:5000"), None, None, false),
            None
        );
        assert!(p
            .refusal(get, "/status", Some("evil.example:5000"), None, None, false)
            .is_some());
        assert!(p.refusal(get, "/status", None, None, None, false).is_some());
        assert_eq!(
            p.refusal(get, "/healthz", Some("10.1.2.3:5000"), None, None, false),
            None
        );
        assert!(BrowserPolicy::parse("console.example.com", "").is_err());
        assert!(BrowserPolicy::parse("", "a/b").is_err());
    }
}
