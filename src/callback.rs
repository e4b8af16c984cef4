//! Where an `X-Callback-Url` may point, and the HTTP client that keeps to it.
//!
//! A callback carries the request's view, function uids included, and those
//! are credentials for `POST /response`; and an HTTP caller must not make
//! gitfaas reach into the network it runs in (design §12). So:
//! - **https only**, unless the admin passes `--callback-allow-http`;
//! - **no internal address** (loopback, private, CGNAT, link-local,
//!   unique-local, multicast, unspecified, broadcast, documentation,
//!   benchmarking, reserved, IPv4-mapped/NAT64/6to4 forms of those, cloud
//!   metadata), unless the host is in `--callback-allowed-hosts`. The check
//!   runs on the address actually connected to: names are resolved by
//!   [`GuardedResolver`], which hands the connector only allowed addresses;
//!   IP literals never reach a resolver, so [`Targets::check`] refuses them
//!   before a request is built;
//! - **no redirects** followed, **no proxy** (a proxy would connect where
//!   gitfaas cannot check);
//! - an attempt records only its status and a fixed [`Failure`] category,
//!   never the receiver's body or an error text, so `/requests/{uid}` tells
//!   nothing about what answered inside;
//! - at most `--max-callbacks-in-flight` POSTs at once.
//!
//! Every POST is signed as the Standard Webhooks specification says
//! (<https://www.standardwebhooks.com>): `webhook-id` (one per callback,
//! the same on each of its attempts, random: [`new_webhook_id`]),
//! `webhook-timestamp` (this attempt's Unix seconds) and
//! `webhook-signature` (`v1,` + base64 of the HMAC-SHA256 of
//! `{id}.{timestamp}.{body}` under each key of [`SigningSecret`]), over the
//! exact bytes sent. Without a secret the POST carries no signature (start-up
//! warns).
//!
//! This module knows nothing of requests, the store or the cluster.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::uid::RequestUid;

/// Names of cloud metadata services, refused by name before any lookup (their
/// addresses are refused too, but a name may resolve elsewhere on some hosts).
const METADATA_NAMES: &[&str] = &["metadata.google.internal", "metadata.goog"];

/// Cloud metadata addresses: AWS/GCP/Azure/OCI, AWS ECS task metadata, Alibaba.
const METADATA_V4: &[Ipv4Addr] = &[
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
];

/// AWS's IPv6 instance metadata address.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254);

/// Why an address is internal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Internal {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16), fec0::/10 (site-local).
    Private,
    /// 100.64.0.0/10, carrier-grade NAT (RFC 6598).
    Shared,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// A cloud metadata service.
    Metadata,
    /// fc00::/7.
    UniqueLocal,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 0.0.0.0, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 198.18.0.0/15, 2001:2::/48.
    Benchmarking,
    /// Everything else that is not public unicast: 0/8, 192.0.0/24,
    /// 192.88.99/24, 240/4, ::/96, 64:ff9b:1::/48, 100::/64, Teredo, and v6
    /// outside 2000::/3.
    Reserved,
}

impl std::fmt::Display for Internal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Internal::Loopback => "a loopback",
            Internal::Private => "a private",
            Internal::Shared => "a shared (CGNAT, 100.64.0.0/10)",
            Internal::LinkLocal => "a link-local",
            Internal::Metadata => "a cloud metadata",
            Internal::UniqueLocal => "a unique-local (fc00::/7)",
            Internal::Multicast => "a multicast",
            Internal::Unspecified => "the unspecified",
            Internal::Broadcast => "the broadcast",
            Internal::Documentation => "a documentation",
            Internal::Benchmarking => "a benchmarking",
            Internal::Reserved => "a reserved",
        })
    }
}

/// Whether `ip` is internal, and why; None for a public unicast address.
pub fn classify(ip: IpAddr) -> Option<Internal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Internal> {
    use Internal::*;
    let o = ip.octets();
    Some(match o {
        _ if METADATA_V4.contains(&ip) => Metadata,
        _ if ip.is_unspecified() => Unspecified,
        _ if ip.is_broadcast() => Broadcast,
        [0, ..] => Reserved,
        _ if ip.is_loopback() => Loopback,
        _ if ip.is_private() => Private,
        [100, b, ..] if b & 0xc0 == 64 => Shared,
        _ if ip.is_link_local() => LinkLocal,
        _ if ip.is_documentation() => Documentation,
        [198, b, ..] if b & 0xfe == 18 => Benchmarking,
        [192, 0, 0, _] | [192, 88, 99, _] => Reserved,
        _ if ip.is_multicast() => Multicast,
        [240..=255, ..] => Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Internal> {
    use Internal::*;
    // ::ffff:a.b.c.d reaches a.b.c.d.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    Some(match s {
        _ if ip == METADATA_V6 => Metadata,
        _ if ip.is_unspecified() => Unspecified,
        _ if ip.is_loopback() => Loopback,
        // IPv4-compatible (deprecated): never a real destination.
        [0, 0, 0, 0, 0, 0, _, _] => Reserved,
        // NAT64 (64:ff9b::/96) and 6to4 (2002::/16): a gateway connects to the
        // embedded IPv4 address, so that address decides.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return classify_v4(embedded(hi, lo)),
        [0x2002, hi, lo, ..] => return classify_v4(embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => Reserved,
        [0x100, 0, 0, 0, ..] => Reserved,
        [0x2001, 0xdb8, ..] => Documentation,
        [0x3fff, b, ..] if b < 0x1000 => Documentation,
        [0x2001, 2, 0, ..] => Benchmarking,
        // Teredo embeds (obfuscated) IPv4 addresses a relay would reach.
        [0x2001, 0, ..] => Reserved,
        _ if ip.is_unique_local() => UniqueLocal,
        _ if ip.is_unicast_link_local() => LinkLocal,
        [a, ..] if a & 0xffc0 == 0xfec0 => Private,
        _ if ip.is_multicast() => Multicast,
        // Only 2000::/3 is global unicast.
        [a, ..] if a & 0xe000 != 0x2000 => Reserved,
        _ => return None,
    })
}

/// A host name as compared: lower case, without the root's trailing dot.
fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` names a cloud metadata service.
pub fn is_metadata_name(host: &str) -> bool {
    METADATA_NAMES.contains(&normalize(host).as_str())
}

/// `--callback-allowed-hosts`: exact host names and IP addresses that may be
/// called back although internal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    names: HashSet<String>,
    ips: HashSet<IpAddr>,
}

/// An entry of `--callback-allowed-hosts` that is not a host name or IP.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a host name or IP address: list exact host names or IPs separated by commas or spaces (no scheme, port, wildcard or CIDR range)")]
pub struct AllowedHostsError(String);

impl AllowedHosts {
    /// Parses a comma- or space-separated list.
    pub fn parse(list: &str) -> Result<Self, AllowedHostsError> {
        let mut hosts = AllowedHosts::default();
        for entry in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let bare = entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .unwrap_or(entry);
            if let Ok(ip) = bare.parse::<IpAddr>() {
                hosts.ips.insert(ip.to_canonical());
                continue;
            }
            let name = normalize(entry);
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
                return Err(AllowedHostsError(entry.to_string()));
            }
            hosts.names.insert(name);
        }
        Ok(hosts)
    }

    /// Whether no host is allowed.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.ips.is_empty()
    }

    fn has_name(&self, host: &str) -> bool {
        self.names.contains(&normalize(host))
    }

    fn has_ip(&self, ip: IpAddr) -> bool {
        self.ips.contains(&ip.to_canonical())
    }
}

/// A callback target refused; the message says what and which flag allows it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not an absolute http(s) URL.
    #[error("X-Callback-Url `{0}` is not an absolute http(s) URL")]
    NotAUrl(String),
    /// http without `--callback-allow-http`.
    #[error("X-Callback-Url must use https: the callback carries function uids, which are credentials for POST /response; use an https URL, or start gitfaas with --callback-allow-http (GITFAAS_CALLBACK_ALLOW_HTTP) to allow plain http")]
    Http,
    /// An internal address, given literally or resolved.
    #[error("X-Callback-Url host `{host}` is {kind} address ({ip}); gitfaas does not call internal addresses for HTTP callers: use a public host, or add `{host}` to --callback-allowed-hosts (GITFAAS_CALLBACK_ALLOWED_HOSTS)")]
    Internal {
        /// The host as written.
        host: String,
        /// The refused address.
        ip: IpAddr,
        /// Why it is internal.
        kind: Internal,
    },
    /// A cloud metadata service by name.
    #[error("X-Callback-Url host `{0}` is a cloud metadata service; gitfaas does not call it for HTTP callers: use a public host, or add `{0}` to --callback-allowed-hosts (GITFAAS_CALLBACK_ALLOWED_HOSTS)")]
    Metadata(String),
}

/// The rules for callback targets.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// Whether plain http is allowed (`--callback-allow-http`).
    pub allow_http: bool,
    /// Hosts allowed although internal (`--callback-allowed-hosts`).
    pub allowed: AllowedHosts,
}

impl Targets {
    /// Checks what can be checked without a lookup: the scheme, an IP
    /// literal, a metadata name. Names are checked when they are resolved.
    pub fn check(&self, url: &str) -> Result<Url, TargetError> {
        let not_a_url = || TargetError::NotAUrl(url.to_string());
        let parsed = Url::parse(url).map_err(|_| not_a_url())?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(TargetError::Http),
            _ => return Err(not_a_url()),
        }
        let host = parsed.host_str().ok_or_else(not_a_url)?.to_string();
        // The URL parser has already normalized IPv4 forms (2130706433, 0x7f.1).
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let Ok(ip) = bare.parse::<IpAddr>() else {
            if is_metadata_name(&host) && !self.allowed.has_name(&host) {
                return Err(TargetError::Metadata(host));
            }
            return Ok(parsed);
        };
        match classify(ip) {
            Some(kind) if !self.allowed.has_ip(ip) => Err(TargetError::Internal { host, ip, kind }),
            _ => Ok(parsed),
        }
    }

    /// Of `addrs` (what `host` resolved to), those that may be connected to.
    fn filter(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, TargetError> {
        if self.allowed.has_name(host) {
            return Ok(addrs);
        }
        let mut refused = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match classify(a.ip()) {
                Some(kind) if !self.allowed.has_ip(a.ip()) => {
                    refused.get_or_insert((a.ip(), kind));
                    false
                }
                _ => true,
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (true, Some((ip, kind))) => Err(TargetError::Internal {
                host: host.to_string(),
                ip,
                kind,
            }),
            _ => Ok(allowed),
        }
    }
}

/// A name that did not resolve (told apart from a refusal in [`Failure`]).
#[derive(Debug, thiserror::Error)]
#[error("`{0}` did not resolve")]
struct Unresolved(String);

/// Resolves with tokio and hands the connector only the addresses
/// [`Targets`] allows, so a connection to a refused one is never attempted.
pub struct GuardedResolver {
    targets: Arc<Targets>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let targets = Arc::clone(&self.targets);
        let host = name.as_str().to_string();
        Box::pin(async move {
            if is_metadata_name(&host) && !targets.allowed.has_name(&host) {
                return Err(Box::new(TargetError::Metadata(host)) as _);
            }
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Box::new(Unresolved(host.clone())))?
                .collect();
            let allowed = targets.filter(&host, addrs)?;
            if allowed.is_empty() {
                return Err(Box::new(Unresolved(host)) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Why an attempt failed, as `/requests/{uid}` shows it: a fixed category,
/// never a text from the receiver or the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Failure {
    /// The target is internal (literal, resolved, or a metadata name).
    #[serde(rename = "refused: internal address")]
    RefusedInternal,
    /// The scheme is not allowed (http without `--callback-allow-http`).
    #[serde(rename = "refused: scheme not allowed")]
    RefusedScheme,
    /// The host name did not resolve.
    #[serde(rename = "name not resolved")]
    Unresolved,
    /// No connection (refused, unreachable, TLS failed).
    #[serde(rename = "connect failed")]
    ConnectFailed,
    /// No answer in time.
    #[serde(rename = "timeout")]
    Timeout,
    /// The receiver answered 3xx; redirects are not followed.
    #[serde(rename = "redirect not followed")]
    Redirect,
    /// The receiver answered 4xx or 5xx.
    #[serde(rename = "error status")]
    ErrorStatus,
    /// Anything else, and what older versions recorded as free text.
    #[serde(rename = "failed", other)]
    Failed,
}

impl Failure {
    /// Whether retrying cannot help: the rules refuse the target.
    pub fn is_refusal(self) -> bool {
        matches!(self, Failure::RefusedInternal | Failure::RefusedScheme)
    }

    fn of_error(e: &reqwest::Error) -> Failure {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(inner) = source {
            if let Some(refused) = inner.downcast_ref::<TargetError>() {
                return match refused {
                    TargetError::Http => Failure::RefusedScheme,
                    _ => Failure::RefusedInternal,
                };
            }
            if inner.is::<Unresolved>() {
                return Failure::Unresolved;
            }
            source = inner.source();
        }
        if e.is_timeout() {
            Failure::Timeout
        } else if e.is_connect() {
            Failure::ConnectFailed
        } else {
            Failure::Failed
        }
    }
}

/// What one POST came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The receiver's HTTP status, when it answered.
    pub http_status: Option<u16>,
    /// Why it failed; None when delivered (2xx).
    pub failure: Option<Failure>,
}

/// The key prefix of the Standard Webhooks specification.
const SECRET_PREFIX: &str = "whsec_";

/// The fewest and most bytes a signing key may have: what the Standard
/// Webhooks specification asks for (192 to 512 bits).
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// `--callback-signing-secret-file`: one or more keys, each a line
/// `whsec_<base64>` as the Standard Webhooks specification writes them.
/// Each key signs every callback (the signatures separated by spaces, as
/// the specification allows), so a receiver can move to a new key while
/// the old one still verifies.
#[derive(Clone)]
pub struct SigningSecret {
    keys: Arc<Vec<secrecy::SecretSlice<u8>>>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningSecret({} keys, redacted)", self.keys.len())
    }
}

/// Why a signing secret file cannot be used; never quotes the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningSecretError {
    /// No key at all.
    #[error("it holds no key: write one line `whsec_` followed by the base64 of 24 to 64 random bytes, e.g. `echo \"whsec_$(head -c 32 /dev/urandom | base64)\"`")]
    Empty,
    /// A line without the prefix.
    #[error("line {0} does not start with `whsec_`: write each key as the Standard Webhooks specification does, `whsec_` followed by the base64 of the key")]
    Prefix(usize),
    /// A line whose key is not base64.
    #[error("line {0}: what follows `whsec_` is not standard base64 (A-Z, a-z, 0-9, +, / and = padding)")]
    Base64(usize),
    /// A key too short or too long.
    #[error("line {line}: the key is {bytes} bytes; the Standard Webhooks specification asks for 24 to 64 (e.g. `echo \"whsec_$(head -c 32 /dev/urandom | base64)\"`)")]
    Length {
        /// The line.
        line: usize,
        /// The key's length.
        bytes: usize,
    },
}

impl SigningSecret {
    /// Parses a secret file's text: one key per line; blank lines and
    /// surrounding whitespace (a trailing newline) are ignored.
    pub fn parse(text: &str) -> Result<Self, SigningSecretError> {
        use base64::Engine;
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let n = i + 1;
            let encoded = line
                .strip_prefix(SECRET_PREFIX)
                .ok_or(SigningSecretError::Prefix(n))?;
            let key = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| SigningSecretError::Base64(n))?;
            if !KEY_BYTES.contains(&key.len()) {
                return Err(SigningSecretError::Length {
                    line: n,
                    bytes: key.len(),
                });
            }
            keys.push(secrecy::SecretSlice::from(key));
        }
        if keys.is_empty() {
            return Err(SigningSecretError::Empty);
        }
        Ok(SigningSecret {
            keys: Arc::new(keys),
        })
    }

    /// The `webhook-signature` header of `body` sent as message `id` at
    /// `timestamp` (Unix seconds): `v1,<base64>` for each key, separated by
    /// spaces.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        use base64::Engine;
        use hmac::{KeyInit, Mac};
        use secrecy::ExposeSecret;
        let signatures: Vec<String> = self
            .keys
            .iter()
            .map(|key| {
                let mut mac =
                    <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.expose_secret())
                        .expect("HMAC takes keys of any size");
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                let tag = mac.finalize().into_bytes();
                format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD.encode(tag)
                )
            })
            .collect();
        signatures.join(" ")
    }
}

/// A new `webhook-id`: `msg_` and 128 random bits (base64url), made once per
/// callback and kept with it, so every attempt — by any gitfaas — carries
/// the same one; it says nothing of the request uid.
pub fn new_webhook_id() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    format!(
        "msg_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Callback settings, validated at start.
#[derive(Debug, Clone)]
pub struct CallbackSettings {
    /// Which targets are allowed.
    pub targets: Targets,
    /// POSTs in flight at once.
    pub max_in_flight: usize,
    /// How long a callback waits for its Jobs before calling back anyway.
    pub max_wait: Duration,
    /// How long a process holds a callback of the outbox without renewing it.
    pub lease: Duration,
    /// The keys that sign callbacks (`--callback-signing-secret-file`);
    /// none: callbacks go unsigned.
    pub signing: Option<SigningSecret>,
}

/// Delivers callbacks under [`Targets`]: one HTTP client for all of them.
pub struct CallbackClient {
    targets: Arc<Targets>,
    http: reqwest::Client,
    in_flight: tokio::sync::Semaphore,
    signing: Option<SigningSecret>,
}

/// Errors of building the client.
#[derive(Debug, thiserror::Error)]
// The cause is the source, not in the message: a chain prints it once.
#[error("cannot build the callback HTTP client")]
pub struct ClientError(#[from] reqwest::Error);

impl CallbackClient {
    /// A client keeping to `targets`, with at most `max_in_flight` POSTs at
    /// once, signing with `signing` when given.
    pub fn new(
        targets: Targets,
        max_in_flight: usize,
        signing: Option<SigningSecret>,
    ) -> Result<Self, ClientError> {
        let targets = Arc::new(targets);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("gitfaas/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                targets: Arc::clone(&targets),
            }))
            .build()?;
        Ok(CallbackClient {
            targets,
            http,
            in_flight: tokio::sync::Semaphore::new(max_in_flight.max(1)),
            signing,
        })
    }

    /// The rules, for checks at publish time.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// POSTs `body` (JSON, the exact bytes signed) to `url` as message
    /// `webhook_id`, signed at the moment it is sent. The receiver's body is
    /// never read.
    pub async fn post(
        &self,
        url: &str,
        request_uid: &RequestUid,
        webhook_id: &str,
        body: Vec<u8>,
    ) -> Outcome {
        // Checked again here: the record may predate the current rules.
        let url = match self.targets.check(url) {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(error = %e, "callback target refused");
                let failure = match e {
                    TargetError::Http | TargetError::NotAUrl(_) => Failure::RefusedScheme,
                    _ => Failure::RefusedInternal,
                };
                return Outcome {
                    http_status: None,
                    failure: Some(failure),
                };
            }
        };
        let Ok(_permit) = self.in_flight.acquire().await else {
            return Outcome {
                http_status: None,
                failure: Some(Failure::Failed),
            };
        };
        // This attempt's time, taken after waiting for a permit: the
        // receiver checks it against its clock.
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut post = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Gitfaas-Request-Uid", request_uid.as_str())
            // The same on every attempt, from any replica: a receiver drops
            // a repeat by it (delivery is at least once). The older name of
            // webhook-id, kept for receivers that read it.
            .header("webhook-id", webhook_id)
            .header("X-Gitfaas-Delivery-Id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(signing) = &self.signing {
            post = post.header(
                "webhook-signature",
                signing.sign(webhook_id, timestamp, &body),
            );
        }
        let sent = post.body(body).send().await;
        match sent {
            Ok(r) => {
                let status = r.status();
                let failure = if status.is_success() {
                    None
                } else if status.is_redirection() {
                    Some(Failure::Redirect)
                } else {
                    Some(Failure::ErrorStatus)
                };
                Outcome {
                    http_status: Some(status.as_u16()),
                    failure,
                }
            }
            Err(e) => {
                let failure = Failure::of_error(&e);
                // For the admin's log only; the URL may carry a caller's token.
                tracing::info!(?failure, error = %error_chain(&e.without_url()), "callback POST failed");
                Outcome {
                    http_status: None,
                    failure: Some(failure),
                }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an IP")
    }

    #[test]
    fn internal_addresses_are_classified() {
        use Internal::*;
        let table: &[(&str, Option<Internal>)] = &[
            // IPv4
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.1", None),
            ("172.15.255.255", None),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(Shared)),
            ("100.127.255.255", Some(Shared)),
            ("100.63.255.255", None),
            ("100.128.0.1", None),
            ("169.254.0.1", Some(LinkLocal)),
            ("169.254.169.254", Some(Metadata)),
            ("169.254.170.2", Some(Metadata)),
            ("100.100.100.200", Some(Metadata)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("240.0.0.1", Some(Reserved)),
            ("192.0.0.8", Some(Reserved)),
            ("192.88.99.1", Some(Reserved)),
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("198.18.0.1", Some(Benchmarking)),
            ("198.19.255.255", Some(Benchmarking)),
            ("198.20.0.1", None),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
            // IPv6
            ("::1", Some(Loopback)),
            ("::", Some(Unspecified)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(Private)),
            ("fc00::1", Some(UniqueLocal)),
            ("fd12:3456::1", Some(UniqueLocal)),
            ("fd00:ec2::254", Some(Metadata)),
            ("ff02::1", Some(Multicast)),
            ("ff0e::1", Some(Multicast)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff::1", Some(Documentation)),
            ("2001:2::1", Some(Benchmarking)),
            ("2001::1", Some(Reserved)),
            ("100::1", Some(Reserved)),
            ("::127.0.0.1", Some(Reserved)),
            ("64:ff9b:1::1", Some(Reserved)),
            ("4000::1", Some(Reserved)),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001::1", None),
            // IPv4-mapped, NAT64 and 6to4 forms take their IPv4 address's class.
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:169.254.169.254", Some(Metadata)),
            ("::ffff:100.64.0.1", Some(Shared)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::7f00:1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(Metadata)),
            ("64:ff9b::808:808", None),
            ("2002:7f00:1::1", Some(Loopback)),
            ("2002:c0a8:101::1", Some(Private)),
            ("2002:808:808::1", None),
        ];
        for (addr, want) in table {
            assert_eq!(classify(ip(addr)), *want, "{addr}");
        }
    }

    fn targets(allow_http: bool, allowed: &str) -> Targets {
        Targets {
            allow_http,
            allowed: AllowedHosts::parse(allowed).expect("valid list"),
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_literals_and_metadata_names() {
        let strict = targets(false, "");
        let http = targets(true, "");
        let table: &[(&Targets, &str, Result<(), &str>)] = &[
            (&strict, "https://hooks.example.com/x", Ok(())),
            (
                &strict,
                "http://hooks.example.com/x",
                Err("--callback-allow-http"),
            ),
            (&http, "http://hooks.example.com/x", Ok(())),
            (&strict, "ftp://x", Err("not an absolute http(s) URL")),
            (&strict, "not a url", Err("not an absolute http(s) URL")),
            (&strict, "https://8.8.8.8/", Ok(())),
            (&strict, "https://127.0.0.1/", Err("a loopback address")),
            (
                &http,
                "http://127.0.0.1:8080/",
                Err("--callback-allowed-hosts"),
            ),
            (&strict, "https://[::1]/", Err("a loopback address")),
            (
                &strict,
                "https://[::ffff:127.0.0.1]/",
                Err("a loopback address"),
            ),
            (
                &strict,
                "https://[::ffff:7f00:1]/",
                Err("a loopback address"),
            ),
            (&strict, "https://[fe80::1]/", Err("a link-local address")),
            (
                &strict,
                "https://[fd00:ec2::254]/",
                Err("a cloud metadata address"),
            ),
            (
                &strict,
                "https://169.254.169.254/",
                Err("a cloud metadata address"),
            ),
            (&strict, "https://10.0.0.1/", Err("a private address")),
            (&strict, "https://100.64.1.1/", Err("CGNAT")),
            // The URL parser reads these as IPv4 literals, as browsers do.
            (&strict, "https://2130706433/", Err("a loopback address")),
            (&strict, "https://0x7f.1/", Err("a loopback address")),
            (&strict, "https://0/", Err("the unspecified address")),
            (
                &strict,
                "https://metadata.google.internal/",
                Err("cloud metadata service"),
            ),
            (
                &strict,
                "https://METADATA.google.internal./",
                Err("cloud metadata service"),
            ),
            // A name is only checked when it resolves.
            (&strict, "https://localhost/", Ok(())),
        ];
        for (t, url, want) in table {
            match (t.check(url), want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{url}: {e}"),
                (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn allowed_hosts_override_exactly() {
        let t = targets(
            true,
            "127.0.0.1, hooks.internal  [::1],Metadata.Google.Internal.",
        );
        assert!(t.check("http://127.0.0.1:9/").is_ok());
        assert!(
            t.check("http://[::ffff:127.0.0.1]:9/").is_ok(),
            "the mapped form is the same address"
        );
        assert!(t.check("http://127.0.0.2:9/").is_err(), "exact match only");
        assert!(t.check("http://[::1]:9/").is_ok());
        assert!(t.check("http://metadata.google.internal/").is_ok());
        assert!(t.check("https://169.254.169.254/").is_err());
        let resolved = |host: &str, a: &str| t.filter(host, vec![SocketAddr::new(ip(a), 80)]);
        assert!(
            resolved("hooks.internal", "10.1.2.3").is_ok(),
            "an allowed name may resolve inside"
        );
        assert!(
            resolved("HOOKS.internal.", "10.1.2.3").is_ok(),
            "case and the root dot do not matter"
        );
        assert!(
            resolved("sub.hooks.internal", "10.1.2.3").is_err(),
            "no wildcards"
        );
        assert!(
            resolved("localhost", "127.0.0.1").is_ok(),
            "an allowed IP, resolved"
        );
        assert!(resolved("localhost", "127.0.0.9").is_err());
        for bad in ["*.example.com", "10.0.0.0/8", "http://x", "host:80", "a..b"] {
            assert!(AllowedHosts::parse(bad).is_err(), "{bad}");
        }
        assert!(AllowedHosts::parse(" , ").expect("empty").is_empty());
    }

    #[test]
    fn resolved_addresses_are_filtered_and_an_all_internal_answer_refused() {
        let t = targets(false, "");
        let a = |s: &str| SocketAddr::new(ip(s), 0);
        let mixed = t
            .filter(
                "rebind.example",
                vec![a("127.0.0.1"), a("8.8.8.8"), a("::1")],
            )
            .expect("a public address is left");
        assert_eq!(mixed, vec![a("8.8.8.8")]);
        let e = t
            .filter("rebind.example", vec![a("127.0.0.1"), a("::1")])
            .expect_err("nothing public");
        assert!(
            matches!(
                e,
                TargetError::Internal {
                    kind: Internal::Loopback,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("--callback-allowed-hosts"), "{e}");
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_never_connected_to() {
        // Nothing listens here; a connection attempt would be "connect failed".
        let client = CallbackClient::new(targets(true, ""), 1, None).expect("client");
        let out = client
            .post(
                "http://localhost:9/",
                &crate::uid::rid("r"),
                "msg_1",
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(
            out,
            Outcome {
                http_status: None,
                failure: Some(Failure::RefusedInternal)
            }
        );
        let out = client
            .post(
                "http://metadata.google.internal/",
                &crate::uid::rid("r"),
                "msg_1",
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(out.failure, Some(Failure::RefusedInternal));
        let strict = CallbackClient::new(targets(false, ""), 1, None).expect("client");
        let out = strict
            .post(
                "http://localhost:9/",
                &crate::uid::rid("r"),
                "msg_1",
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(out.failure, Some(Failure::RefusedScheme));
    }

    /// The example of the Standard Webhooks specification (and of its
    /// reference libraries' tests): the same key, id, time and body give
    /// the same signature.
    #[test]
    fn callbacks_are_signed_as_the_standard_webhooks_example() {
        let secret =
            SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").expect("valid");
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // Another body, id or time: another signature.
        let base = secret.sign("msg_1", 1, b"{}");
        assert_ne!(base, secret.sign("msg_2", 1, b"{}"));
        assert_ne!(base, secret.sign("msg_1", 2, b"{}"));
        assert_ne!(base, secret.sign("msg_1", 1, b"{ }"));
        // Two keys (a rotation): two signatures, the old key's still there.
        let both = SigningSecret::parse(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n\nwhsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        )
        .expect("two keys");
        let header = both.sign("msg_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2, "{header}");
        assert_eq!(parts[0], base);
        assert!(format!("{both:?}").contains("redacted"));
    }

    #[test]
    fn a_signing_secret_not_in_the_standard_form_is_refused() {
        use SigningSecretError::*;
        for (text, want) in [
            ("", Empty),
            ("\n  \n", Empty),
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Prefix(1)),
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\nsecret", Prefix(2)),
            ("whsec_not base64!", Base64(1)),
            ("whsec_c2hvcnQ=", Length { line: 1, bytes: 5 }),
        ] {
            assert_eq!(SigningSecret::parse(text).err(), Some(want), "{text:?}");
        }
        let e = SigningSecret::parse("hunter2-hunter2").expect_err("no prefix");
        assert!(
            !e.to_string().contains("hunter2"),
            "the file is not quoted: {e}"
        );
        assert!(Empty.to_string().contains("head -c 32 /dev/urandom"));
    }

    #[test]
    fn webhook_ids_are_random_and_say_nothing_of_the_request() {
        let a = new_webhook_id();
        let b = new_webhook_id();
        assert_ne!(a, b);
        assert!(a.starts_with("msg_") && a.len() == 4 + 22, "{a}");
        assert!(a[4..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn failures_are_fixed_strings_and_old_free_text_reads_as_failed() {
        let s = serde_json::to_string(&Failure::RefusedInternal).expect("json");
        assert_eq!(s, r#""refused: internal address""#);
        let old: Failure =
            serde_json::from_str(r#""the receiver answered 500 Internal Server Error""#)
                .expect("reads");
        assert_eq!(old, Failure::Failed);
        let back: Failure = serde_json::from_str(r#""redirect not followed""#).expect("reads");
        assert_eq!(back, Failure::Redirect);
    }
}
