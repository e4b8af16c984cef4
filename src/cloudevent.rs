//! CloudEvents 1.0 received over HTTP (the CloudEvents HTTP protocol
//! binding): which mode a request carries an event in, and the event read
//! from it, checked, its attributes as their canonical strings.
//!
//! - Binary mode: the `ce-*` headers are the attributes (each value
//!   unquoted if it is a quoted-string, then percent-decoded once, then
//!   UTF-8), the `Content-Type` header is `datacontenttype` and the body is
//!   `data`, as sent.
//! - Structured mode (`application/cloudevents+json`): the body is the
//!   event in the JSON format. `data` is kept as the JSON text it was sent
//!   as (a JSON, or no, `datacontenttype`; none is made the explicit
//!   `application/json` it implies), or as the string it holds (any other
//!   content type, as binary mode would carry it); `data_base64` is
//!   decoded. Both at once is refused.
//! - Batch mode (`application/cloudevents-batch+json`) and other event
//!   formats are refused (415).
//!
//! Everything the specification requires of an event is checked: the
//! required attributes (`specversion` 1.0, non-empty `id`, `source`,
//! `type`), the String type (no control character, no noncharacter), a
//! `time` in RFC 3339, attribute names of lowercase letters and digits,
//! and the binding's header encoding. A refusal names the attribute (and
//! in binary mode its header) and says how to fix it ([`CloudEventError`]).
//!
//! Pure: headers and a body in, an event or a typed error out; a leaf that
//! uses nothing of the crate but the error codes. What an event means to a
//! publish (its variables, its deduplication) is [`Attributes`]'s; the
//! HTTP handler and the publish workflow use it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Code;

/// The one specification version accepted.
pub const SPEC_VERSION: &str = "1.0";

/// The media type of structured mode in the JSON event format.
pub const STRUCTURED: &str = "application/cloudevents+json";

/// The media type of batch mode in the JSON event format (refused).
pub const BATCH: &str = "application/cloudevents-batch+json";

/// The most attributes (required, optional and extensions) an event may
/// have: a bound on what a request makes gitfaas keep with its run.
pub const MAX_ATTRIBUTES: usize = 32;

/// The longest attribute name accepted (the specification asks names of at
/// most 20 characters, as a SHOULD).
pub const MAX_NAME_LEN: usize = 64;

/// The template variables an event gives, each with its attribute.
/// `subject` and `time` are optional: an event without them renders them
/// empty.
pub const VARIABLES: [(&str, &str); 5] = [
    ("CE_ID", "id"),
    ("CE_SOURCE", "source"),
    ("CE_TYPE", "type"),
    ("CE_SUBJECT", "subject"),
    ("CE_TIME", "time"),
];

/// The attributes the specification defines, with their types: an event
/// that repeats one with other content is another event
/// ([`Attributes::content_digest`]). Extensions are left out there: an
/// intermediary may add its own to a redelivery (Knative's
/// `knativearrivaltime`, the tracing extension's `traceparent`).
const CORE: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
];

/// How a request carries an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `ce-*` headers; the body is `data`.
    Binary,
    /// `application/cloudevents+json`; the body is the event.
    Structured,
}

impl Mode {
    /// The mode of a request with `content_type` and headers named
    /// `header_names` (lowercase, as HTTP libraries give them): None for a
    /// request that is no CloudEvent. Any `ce-` header makes a request a
    /// binary-mode event, so that one without `ce-specversion` is refused
    /// as an incomplete event, not published as a plain message.
    pub fn of<'a>(
        content_type: Option<&[u8]>,
        mut header_names: impl Iterator<Item = &'a str>,
    ) -> Result<Option<Mode>, CloudEventError> {
        let essence = content_type
            .map(|c| {
                let c = String::from_utf8_lossy(c).to_ascii_lowercase();
                c.split(';').next().unwrap_or("").trim().to_string()
            })
            .unwrap_or_default();
        if essence.starts_with("application/cloudevents-batch") {
            return Err(CloudEventError::Batch);
        }
        if essence == STRUCTURED {
            return Ok(Some(Mode::Structured));
        }
        if essence == "application/cloudevents" || essence.starts_with("application/cloudevents+") {
            return Err(CloudEventError::Format(essence));
        }
        Ok(header_names
            .any(|n| n.len() > 3 && n.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("ce-")))
            .then_some(Mode::Binary))
    }
}

/// Bounds on what an event may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most bytes an attribute's value may have (`--max-param-bytes`:
    /// the values are template variables, as query parameters are).
    pub max_value_bytes: usize,
}

/// An event read from a request.
#[derive(Debug, Clone)]
pub struct CloudEvent {
    /// How it came.
    pub mode: Mode,
    /// Its attributes.
    pub attributes: Attributes,
    /// Its data: the body in binary mode; in structured mode `data` as
    /// sent (its JSON text, or the string it holds under a non-JSON content
    /// type) or `data_base64` decoded. Empty when it has none.
    pub data: bytes::Bytes,
}

/// An event's context attributes, required, optional and extensions, each
/// as its canonical string (an integer extension as its decimal, a boolean
/// as `true` or `false`). Made by [`binary`] and [`structured`], which
/// check them; kept with its run as a JSON object (a record read back is
/// trusted as written: its lookups are total all the same).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attributes(BTreeMap<String, String>);

impl Attributes {
    /// Every attribute by name: what a filter reads (`ce`), what the run's
    /// view shows.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The attribute `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value of the template variable `name` ([`VARIABLES`]): its
    /// attribute, empty when the event has none; None for any other name.
    pub fn variable(&self, name: &str) -> Option<&str> {
        let (_, attribute) = VARIABLES.iter().find(|(v, _)| *v == name)?;
        Some(self.get(attribute).unwrap_or(""))
    }

    /// Whether the event's data is JSON: its `datacontenttype` declares JSON
    /// (`*/json`, `*/*+json`; a structured event's `data` without one says
    /// `application/json`, as the JSON format implies). What reads fields
    /// of the data asks this.
    pub fn data_is_json(&self) -> bool {
        self.get("datacontenttype").is_some_and(declares_json)
    }

    /// Whether `name` is one of the template variables an event gives.
    pub fn is_variable(name: &str) -> bool {
        VARIABLES.iter().any(|(v, _)| *v == name)
    }

    /// An event with sample values of every variable's attribute, for
    /// rendering a topic without a request (`gitfaas validate`).
    pub fn sample() -> Self {
        let map: BTreeMap<String, String> = [
            ("specversion", SPEC_VERSION),
            ("id", "sample"),
            ("source", "sample"),
            ("type", "sample"),
            ("subject", "sample"),
            ("time", "2026-01-01T00:00:00Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Attributes(map)
    }

    /// An event of the attributes `given` over [`Self::sample`]'s, checked
    /// as a structured event's would be (`gitfaas render --ce NAME=VALUE`).
    pub fn from_pairs(given: &[(String, String)], limits: Limits) -> Result<Self, CloudEventError> {
        let mut map = Self::sample().0;
        for (name, value) in given {
            if !valid_name(name) {
                return Err(CloudEventError::Name {
                    name: shorten(name),
                    mode: Mode::Structured,
                });
            }
            map.insert(name.clone(), value.clone());
        }
        check(map, Mode::Structured, limits)
    }

    /// What deduplicates the event on `topic`: a SHA-256, in hex, of the
    /// topic, `source` and `id` (each length-prefixed, so no two triples
    /// give the same input). The key is bounded whatever their length, and
    /// no attribute's text is read as part of a key.
    pub fn dedup_digest(&self, topic: &str) -> String {
        digest(
            b"gitfaas cloudevent key\n",
            [
                topic,
                self.get("source").unwrap_or(""),
                self.get("id").unwrap_or(""),
            ],
        )
    }

    /// What the event says besides its data and extensions: a SHA-256, in
    /// hex, of every attribute the specification defines (absent ones
    /// included, as absent). Two deliveries of one `source` and `id` that
    /// differ here are two events.
    pub fn content_digest(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"gitfaas cloudevent content\n");
        for name in CORE {
            match self.get(name) {
                None => h.update([0u8]),
                Some(v) => {
                    h.update([1u8]);
                    h.update((v.len() as u64).to_be_bytes());
                    h.update(v.as_bytes());
                }
            }
        }
        hex(&h.finalize())
    }
}

fn digest<'a>(domain: &[u8], parts: impl IntoIterator<Item = &'a str>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(domain);
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where an attribute was (or should have been) found, for messages: the
/// attribute, and in binary mode its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// The attribute's name.
    pub attribute: String,
    /// The mode the event came in.
    pub mode: Mode,
}

impl At {
    fn new(attribute: &str, mode: Mode) -> Self {
        At {
            attribute: attribute.to_string(),
            mode,
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.mode, self.attribute.as_str()) {
            (Mode::Binary, "datacontenttype") => {
                write!(f, "`datacontenttype` (header `Content-Type`)")
            }
            (Mode::Binary, name) => write!(f, "`{name}` (header `ce-{name}`)"),
            (Mode::Structured, name) => write!(f, "`{name}`"),
        }
    }
}

/// Why a request is not an event gitfaas takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudEventError {
    /// Batch mode.
    #[error("batch mode ({BATCH}) is not accepted: send each event in a request of its own, in binary mode (ce- headers) or structured mode ({STRUCTURED}); nothing was applied")]
    Batch,
    /// A structured mode in an event format other than JSON.
    #[error("content type `{0}` is a CloudEvents event format gitfaas does not read: send the event as {STRUCTURED} (the JSON format) or in binary mode (ce- headers)")]
    Format(String),
    /// A required attribute is missing.
    #[error("the CloudEvent has no {0}: every event needs specversion, id, source and type")]
    Missing(At),
    /// A required attribute, or `subject`, is empty.
    #[error("{0} is empty: it must be a non-empty string")]
    Empty(At),
    /// Not CloudEvents 1.0.
    #[error("{at} is `{version}`: gitfaas takes CloudEvents {SPEC_VERSION} only; send specversion {SPEC_VERSION}")]
    SpecVersion {
        /// Where.
        at: At,
        /// What was sent (shortened).
        version: String,
    },
    /// A header value the binding does not allow.
    #[error("{at} is not encoded as the CloudEvents HTTP binding asks: {why}")]
    Encoding {
        /// Where.
        at: At,
        /// What is wrong and how to fix it.
        why: String,
    },
    /// A character a CloudEvents String may not hold.
    #[error("{at} holds {what} U+{code:04X}, which a CloudEvents attribute may not contain: remove it (data may hold anything; attributes may not)")]
    Character {
        /// Where.
        at: At,
        /// `the control character` or `the noncharacter`.
        what: &'static str,
        /// The character's code point.
        code: u32,
    },
    /// `time` is not RFC 3339.
    #[error("{at} is `{value}`, not an RFC 3339 timestamp: write e.g. 2026-01-31T12:00:00Z or 2026-01-31T13:00:00.5+01:00")]
    Time {
        /// Where.
        at: At,
        /// What was sent (shortened).
        value: String,
    },
    /// An attribute whose value does not have its type's form.
    #[error("{at} {why}")]
    Value {
        /// Where.
        at: At,
        /// What is wrong and how to fix it.
        why: String,
    },
    /// An attribute name the specification does not allow.
    #[error("{} is not a CloudEvents attribute name: names are 1 to {MAX_NAME_LEN} lowercase letters and digits (and not `data`)", shown_name(.name, *.mode))]
    Name {
        /// The name (shortened).
        name: String,
        /// The mode.
        mode: Mode,
    },
    /// A header binary mode does not allow.
    #[error("header `{0}` is not allowed in binary mode: {1}")]
    Header(String, &'static str),
    /// An attribute given twice.
    #[error("{0} is given twice: give it once")]
    Twice(At),
    /// Too many attributes.
    #[error("the CloudEvent has {0} attributes; at most {MAX_ATTRIBUTES} are accepted")]
    TooMany(usize),
    /// An attribute's value over the bound.
    #[error("{at} is {len} bytes; at most {max} are accepted (--max-param-bytes): put bulk content in the data")]
    TooLong {
        /// Where.
        at: At,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A structured-mode body that is not JSON.
    #[error("the structured CloudEvent is not valid JSON ({0}): send the event as a JSON object")]
    NotJson(String),
    /// A structured-mode body that is JSON but not an object.
    #[error("the structured CloudEvent is JSON {0}, not an object: send the event as a JSON object of its attributes and data")]
    NotAnObject(&'static str),
    /// Both `data` and `data_base64`.
    #[error(
        "the CloudEvent has both `data` and `data_base64`: send the data once, in one of them"
    )]
    DataTwice,
    /// `data_base64` that does not decode.
    #[error("`data_base64` {0}: send it as a JSON string of base64 (RFC 4648)")]
    DataBase64(String),
    /// `data` that its `datacontenttype` says is no JSON, and that is not a string.
    #[error("`data` is JSON {kind} but `datacontenttype` (`{content_type}`) does not declare JSON: send that data as a JSON string, as `data_base64`, or declare a JSON content type")]
    DataNotString {
        /// What `data` is.
        kind: &'static str,
        /// The content type (shortened).
        content_type: String,
    },
    /// Data that its `datacontenttype` says is JSON, and that is not.
    #[error("the data is declared JSON by {at} (`{content_type}`) but is not valid JSON ({why}): fix it, or declare what it is")]
    DataNotJson {
        /// Where the content type was.
        at: At,
        /// The content type (shortened).
        content_type: String,
        /// The parser's reason.
        why: String,
    },
}

fn shown_name(name: &str, mode: Mode) -> String {
    match mode {
        Mode::Binary => format!("header `ce-{name}`"),
        Mode::Structured => format!("member `{name}`"),
    }
}

impl CloudEventError {
    /// What kind of failure this is: batch mode and foreign formats are the
    /// content type's; everything else is the event's.
    pub fn kind(&self) -> Code {
        match self {
            CloudEventError::Batch | CloudEventError::Format(_) => Code::UnsupportedMediaType,
            _ => Code::BadCloudEvent,
        }
    }

    /// Every code [`kind`](Self::kind) can give (the route table checks
    /// its documented codes against them).
    pub fn codes() -> Vec<Code> {
        vec![Code::UnsupportedMediaType, Code::BadCloudEvent]
    }
}

/// `s` for a message: its first 64 characters, escaped as Rust would
/// (a message is read in a terminal and a log line too).
fn shorten(s: &str) -> String {
    let head: String = s.chars().take(64).collect();
    let cut = if head.len() < s.len() { "…" } else { "" };
    format!("{}{cut}", head.escape_debug())
}

/// The first character `s` may not hold as a CloudEvents String: a
/// control character (U+0000–U+001F, U+007F–U+009F) or a noncharacter.
fn forbidden_character(s: &str) -> Option<(&'static str, u32)> {
    s.chars().find_map(|c| {
        let code = c as u32;
        if c.is_control() {
            Some(("the control character", code))
        } else if (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE {
            Some(("the noncharacter", code))
        } else {
            None
        }
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name != "data"
}

/// Whether a media type declares JSON: `*/json` or `*/*+json`, parameters aside.
pub fn declares_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some((_, subtype)) => subtype == "json" || subtype.ends_with("+json"),
        None => false,
    }
}

/// Whether `s` has the form of a media type (`type/subtype`, parameters
/// after a `;`), RFC 2046's tokens.
fn media_type(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let essence = s.split(';').next().unwrap_or("").trim();
    essence
        .split_once('/')
        .is_some_and(|(t, sub)| token(t) && token(sub))
}

/// Whether `s` is an absolute URI as far as its scheme goes (`scheme:…`,
/// RFC 3986's scheme syntax), with nothing a URI cannot hold.
fn absolute_uri(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `s` is an RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac]`
/// then `Z` or `±HH:MM`, every field in its range (a leap second's `:60`
/// included), `T` and `Z` in either case as RFC 3339 allows.
pub fn rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let at = |i: usize, c: u8| b.get(i).is_some_and(|x| x.eq_ignore_ascii_case(&c));
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    if at(i, b'Z') {
        return i + 1 == b.len();
    }
    if !(at(i, b'+') || at(i, b'-')) || b.len() != i + 6 || !at(i + 3, b':') {
        return false;
    }
    matches!((digits(i + 1..i + 3), digits(i + 4..i + 6)), (Some(h), Some(m)) if h <= 23 && m <= 59)
}

/// A `ce-` header's value as its attribute's text: unquoted when it is a
/// quoted-string (RFC 7230), then percent-decoded once, then UTF-8. A raw
/// space or double quote inside a value is taken as itself, as senders
/// wrote them before the binding asked for their percent-encoding.
fn header_text(raw: &[u8]) -> Result<String, String> {
    let trimmed = {
        let start = raw
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t'))
            .unwrap_or(raw.len());
        let end = raw
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t'))
            .map_or(start, |e| e + 1);
        &raw[start..end]
    };
    if let Some(b) = trimmed
        .iter()
        .find(|b| !(b.is_ascii_graphic() || matches!(b, b' ' | b'\t')))
    {
        return Err(format!(
            "it holds the byte 0x{b:02X}, and a header carries printable ASCII only: percent-encode every other character as the %XX of its UTF-8 bytes"
        ));
    }
    let unquoted: Vec<u8> = match trimmed.strip_prefix(b"\"") {
        None => trimmed.to_vec(),
        Some(rest) => {
            let mut out = Vec::with_capacity(rest.len());
            let mut bytes = rest.iter();
            loop {
                match bytes.next() {
                    None => {
                        return Err(
                            "its quoted string is not closed: end it with `\"`, or percent-encode the quote as %22".into(),
                        )
                    }
                    Some(b'"') => break,
                    Some(b'\\') => match bytes.next() {
                        Some(b) => out.push(*b),
                        None => {
                            return Err("its quoted string ends in a lone `\\`: escape the backslash, or percent-encode it as %5C".into())
                        }
                    },
                    Some(b) => out.push(*b),
                }
            }
            if bytes.next().is_some() {
                return Err("it has text after its quoted string: quote the whole value, or percent-encode the quotes as %22".into());
            }
            out
        }
    };
    let mut decoded = Vec::with_capacity(unquoted.len());
    let mut i = 0;
    while i < unquoted.len() {
        if unquoted[i] == b'%' {
            let pair = unquoted
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match pair {
                Some(byte) => {
                    decoded.push(byte);
                    i += 3;
                }
                None => {
                    return Err(
                        "a `%` is not followed by two hex digits: write a percent sign as %25"
                            .into(),
                    )
                }
            }
        } else {
            decoded.push(unquoted[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|e| {
        format!(
            "it percent-decodes to bytes that are not UTF-8 ({e}): percent-encode the UTF-8 bytes of each character"
        )
    })
}

/// Reads a binary-mode event: every `ce-` header of `headers` (names
/// lowercase) an attribute, `content_type` its `datacontenttype`, `body`
/// its data.
pub fn binary(
    headers: &[(&str, &[u8])],
    content_type: Option<&[u8]>,
    body: bytes::Bytes,
    limits: Limits,
) -> Result<CloudEvent, CloudEventError> {
    let mode = Mode::Binary;
    let mut map = BTreeMap::new();
    for (name, raw) in headers {
        let Some(attribute) = name
            .get(..3)
            .filter(|p| p.eq_ignore_ascii_case("ce-"))
            .and_then(|_| name.get(3..))
        else {
            continue;
        };
        let attribute = attribute.to_ascii_lowercase();
        match attribute.as_str() {
            "datacontenttype" => {
                return Err(CloudEventError::Header(
                    format!("ce-{attribute}"),
                    "the Content-Type header is the event's datacontenttype",
                ))
            }
            "data" => {
                return Err(CloudEventError::Header(
                    format!("ce-{attribute}"),
                    "the body is the event's data",
                ))
            }
            _ if !valid_name(&attribute) => {
                return Err(CloudEventError::Name {
                    name: shorten(&attribute),
                    mode,
                })
            }
            _ => {}
        }
        let at = At::new(&attribute, mode);
        let value = header_text(raw).map_err(|why| CloudEventError::Encoding {
            at: at.clone(),
            why,
        })?;
        if map.insert(attribute, value).is_some() {
            return Err(CloudEventError::Twice(at));
        }
    }
    if let Some(raw) = content_type {
        let at = At::new("datacontenttype", mode);
        let text = std::str::from_utf8(raw)
            .ok()
            .filter(|t| t.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
            .ok_or_else(|| CloudEventError::Encoding {
                at: at.clone(),
                why: "it holds a byte that is not printable ASCII: a media type is ASCII".into(),
            })?;
        let text = text.trim();
        if !text.is_empty() {
            map.insert("datacontenttype".to_string(), text.to_string());
        }
    }
    let attributes = check(map, mode, limits)?;
    if attributes.data_is_json() {
        json_checked(&body, &attributes, mode)?;
    }
    Ok(CloudEvent {
        mode,
        attributes,
        data: body,
    })
}

/// Data whose `datacontenttype` declares JSON must be JSON (or nothing),
/// as a publish's JSON body must.
fn json_checked(data: &[u8], attributes: &Attributes, mode: Mode) -> Result<(), CloudEventError> {
    if data.is_empty() {
        return Ok(());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(data)
        .map(|_| ())
        .map_err(|e| CloudEventError::DataNotJson {
            at: At::new("datacontenttype", mode),
            content_type: shorten(attributes.get("datacontenttype").unwrap_or("")),
            why: e.to_string(),
        })
}

/// A JSON object's members in order, duplicates kept (a map would keep
/// one of them silently), each value as its JSON text.
struct Members<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Members<'a>, M::Error> {
                let mut members = Vec::new();
                while let Some(entry) = m.next_entry::<String, &'a serde_json::value::RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// The kind of a JSON value, for messages.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Reads a structured-mode event in the JSON format from `body`.
pub fn structured(body: &[u8], limits: Limits) -> Result<CloudEvent, CloudEventError> {
    use base64::Engine;
    let mode = Mode::Structured;
    let whole: &serde_json::value::RawValue =
        serde_json::from_slice(body).map_err(|e| CloudEventError::NotJson(e.to_string()))?;
    if !whole.get().starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(whole.get()).unwrap_or_default();
        return Err(CloudEventError::NotAnObject(json_kind(&value)));
    }
    let Members(members) =
        serde_json::from_str(whole.get()).map_err(|e| CloudEventError::NotJson(e.to_string()))?;
    if members.len() > MAX_ATTRIBUTES + 2 {
        return Err(CloudEventError::TooMany(members.len()));
    }
    let mut map = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    let (mut data, mut data_base64) = (None, None);
    for (name, raw) in members {
        if !seen.insert(name.clone()) {
            return Err(CloudEventError::Twice(At::new(&shorten(&name), mode)));
        }
        let value: serde_json::Value =
            serde_json::from_str(raw.get()).map_err(|e| CloudEventError::NotJson(e.to_string()))?;
        match name.as_str() {
            "data" => {
                data = Some((raw, value));
                continue;
            }
            "data_base64" => {
                data_base64 = match value {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s),
                    other => {
                        return Err(CloudEventError::DataBase64(format!(
                            "is {}, not a string",
                            json_kind(&other)
                        )))
                    }
                };
                continue;
            }
            _ => {}
        }
        if !valid_name(&name) {
            return Err(CloudEventError::Name {
                name: shorten(&name),
                mode,
            });
        }
        let at = At::new(&name, mode);
        let text = match value {
            // Null is unset (the JSON format).
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            _ if CORE.contains(&name.as_str()) => {
                return Err(CloudEventError::Value {
                    at,
                    why: format!("is {}: it must be a JSON string", json_kind(&value)),
                })
            }
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => match n.as_i64().filter(|i| i32::try_from(*i).is_ok()) {
                Some(i) => i.to_string(),
                None => {
                    return Err(CloudEventError::Value {
                        at,
                        why: format!("is the number {n}: an attribute's number is a 32-bit integer; send anything else as a string"),
                    })
                }
            },
            other => {
                return Err(CloudEventError::Value {
                    at,
                    why: format!(
                        "is {}: an attribute is a string, an integer or a boolean",
                        json_kind(&other)
                    ),
                })
            }
        };
        map.insert(name, text);
    }
    if data.is_some() && !map.contains_key("datacontenttype") {
        // `data` without a content type is JSON (the JSON format), and an
        // event carried on says so explicitly: the same event in binary
        // mode says `Content-Type: application/json`.
        map.insert("datacontenttype".into(), "application/json".into());
    }
    let attributes = check(map, mode, limits)?;
    let content_type = attributes.get("datacontenttype");
    let data = match (data, data_base64) {
        (Some(_), Some(_)) => return Err(CloudEventError::DataTwice),
        (None, Some(encoded)) => {
            let lenient = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            let bytes = lenient
                .decode(encoded.as_bytes())
                .map_err(|e| CloudEventError::DataBase64(format!("is not base64 ({e})")))?;
            if attributes.data_is_json() {
                json_checked(&bytes, &attributes, mode)?;
            }
            bytes::Bytes::from(bytes)
        }
        (Some((raw, value)), None) => match content_type {
            Some(ct) if !declares_json(ct) => match value {
                serde_json::Value::String(s) => bytes::Bytes::from(s),
                other => {
                    return Err(CloudEventError::DataNotString {
                        kind: json_kind(&other),
                        content_type: shorten(ct),
                    })
                }
            },
            // JSON: the text as sent, byte for byte (`7.0` stays `7.0`).
            _ => bytes::Bytes::copy_from_slice(raw.get().as_bytes()),
        },
        (None, None) => bytes::Bytes::new(),
    };
    Ok(CloudEvent {
        mode,
        attributes,
        data,
    })
}

/// Checks what every event must be: its size, its required attributes,
/// each value's type.
fn check(
    map: BTreeMap<String, String>,
    mode: Mode,
    limits: Limits,
) -> Result<Attributes, CloudEventError> {
    if map.len() > MAX_ATTRIBUTES {
        return Err(CloudEventError::TooMany(map.len()));
    }
    for (name, value) in &map {
        let at = || At::new(name, mode);
        if value.len() > limits.max_value_bytes {
            return Err(CloudEventError::TooLong {
                at: at(),
                len: value.len(),
                max: limits.max_value_bytes,
            });
        }
        if let Some((what, code)) = forbidden_character(value) {
            return Err(CloudEventError::Character {
                at: at(),
                what,
                code,
            });
        }
    }
    let at = |name: &str| At::new(name, mode);
    match map.get("specversion") {
        None => return Err(CloudEventError::Missing(at("specversion"))),
        Some(v) if v != SPEC_VERSION => {
            return Err(CloudEventError::SpecVersion {
                at: at("specversion"),
                version: shorten(v),
            })
        }
        Some(_) => {}
    }
    for required in ["id", "source", "type"] {
        match map.get(required) {
            None => return Err(CloudEventError::Missing(at(required))),
            Some(v) if v.is_empty() => return Err(CloudEventError::Empty(at(required))),
            Some(_) => {}
        }
    }
    if map.get("subject").is_some_and(String::is_empty) {
        return Err(CloudEventError::Empty(at("subject")));
    }
    if let Some(time) = map.get("time") {
        if !rfc3339(time) {
            return Err(CloudEventError::Time {
                at: at("time"),
                value: shorten(time),
            });
        }
    }
    if let Some(ct) = map.get("datacontenttype") {
        if !media_type(ct) {
            return Err(CloudEventError::Value {
                at: at("datacontenttype"),
                why: format!(
                    "is `{}`, not a media type: write type/subtype, e.g. application/json",
                    shorten(ct)
                ),
            });
        }
    }
    if let Some(schema) = map.get("dataschema") {
        if !absolute_uri(schema) {
            return Err(CloudEventError::Value {
                at: at("dataschema"),
                why: format!(
                    "is `{}`, not an absolute URI: write e.g. https://example.com/schema.json",
                    shorten(schema)
                ),
            });
        }
    }
    Ok(Attributes(map))
}

#[cfg(test)]
#[path = "cloudevent_tests.rs"]
mod tests;
