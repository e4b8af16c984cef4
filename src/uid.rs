//! The names of a run and of its parts, each its own type so that one is
//! never passed where another is expected (a function uid used as a
//! request uid vouches for what it should not):
//! - [`RequestUid`]: a run's uid, `r-<uuid>` (the Python-compatible
//!   `requestUid`);
//! - [`FunctionUid`]: one manifest's uid in a run, `f-<uuid>-<request uid>`,
//!   the credential its function posts its response with (it never reaches
//!   a log whole: see `telemetry::uid_prefix`);
//! - [`IdempotencyKey`]: a publish's `Idempotency-Key` header.
//!
//! Each is a string in JSON (`#[serde(transparent)]`): stored records and
//! API answers are as they were. Made by gitfaas with `new`, or taken from a
//! request once, at the HTTP edge, with `parse`. A leaf: it uses nothing of
//! the crate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a uid or key taken from a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UidError {
    /// Nothing was sent.
    #[error("empty")]
    Empty,
    /// Longer than accepted.
    #[error("longer than {0} bytes")]
    TooLong(usize),
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Its text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Its text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl From<$name> for String {
            fn from(uid: $name) -> String {
                uid.0
            }
        }

        // The unit tests name their runs and functions by hand ("r-1").
        #[cfg(test)]
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        #[cfg(test)]
        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
    };
}

string_newtype!(
    /// A run's uid: `r-<uuid>` as gitfaas makes it.
    RequestUid
);

// As the string's: what logs and test failures showed before the type.
impl fmt::Debug for RequestUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// As [`prefix`]: a `{:?}` of anything that holds one (a record, an error,
/// a test's failure) never shows the credential whole. Display writes it
/// whole, for where it must go whole (its function's environment, a URL).
impl fmt::Debug for FunctionUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&prefix(&self.0), f)
    }
}

/// A function uid as logs and debug output show it: its first 10
/// characters (`f-` and 8 hex digits of its first uuid), enough to tell
/// runs apart, far too little to post a response with (the rest holds 200
/// random bits); `…` marks the cut.
pub fn prefix(uid: &str) -> String {
    let head: String = uid.chars().take(10).collect();
    if head.len() < uid.len() {
        format!("{head}…")
    } else {
        head
    }
}

string_newtype!(
    /// One function's (manifest's) uid in a run: `f-<uuid>-<request uid>`
    /// as gitfaas makes it. The credential its function answers with: log
    /// only its prefix (`telemetry::uid_prefix`).
    FunctionUid
);

string_newtype!(
    /// An `Idempotency-Key` as sent (trimmed): 1 to 255 visible ASCII
    /// characters.
    IdempotencyKey
);

/// A request uid named by hand, in the unit tests.
#[cfg(test)]
pub(crate) fn rid(s: &str) -> RequestUid {
    RequestUid(s.to_string())
}

impl RequestUid {
    /// A fresh one, `r-<uuid>`.
    pub fn new() -> Self {
        RequestUid(format!("r-{}", uuid::Uuid::new_v4()))
    }

    /// A run's uid as a request names it (a path segment). Its shape is
    /// not checked: any uid is looked up, as before there was a type (older
    /// and hand-made uids included), and an unknown one answers 404; only
    /// an empty one is refused.
    pub fn parse(s: &str) -> Result<Self, UidError> {
        if s.is_empty() {
            return Err(UidError::Empty);
        }
        Ok(RequestUid(s.to_string()))
    }
}

impl Default for RequestUid {
    fn default() -> Self {
        Self::new()
    }
}

impl FunctionUid {
    /// A fresh one for a function of `run`: `f-<uuid>-<request uid>`.
    pub fn new(run: &RequestUid) -> Self {
        FunctionUid(format!("f-{}-{}", uuid::Uuid::new_v4(), run))
    }

    /// A function uid as a request names it (a path segment, a header). As
    /// [`RequestUid::parse`], its shape is not checked here (an unknown uid
    /// answers as one); [`Self::is_well_formed`] says whether it has the
    /// shape gitfaas gives.
    pub fn parse(s: &str) -> Result<Self, UidError> {
        if s.is_empty() {
            return Err(UidError::Empty);
        }
        Ok(FunctionUid(s.to_string()))
    }

    /// Whether it is `f-<uuid>-r-<uuid>`, the form every function uid
    /// gitfaas makes has.
    pub fn is_well_formed(&self) -> bool {
        let uuid = |u: &str| u.len() == 36 && uuid::Uuid::parse_str(u).is_ok();
        self.0.len() == 77
            && self.0.strip_prefix("f-").is_some_and(|rest| {
                rest.get(..36).is_some_and(uuid)
                    && rest.get(36..39) == Some("-r-")
                    && rest.get(39..).is_some_and(uuid)
            })
    }
}

impl IdempotencyKey {
    /// The most bytes a key may have.
    pub const MAX_LEN: usize = 255;

    /// An `Idempotency-Key` header's value, trimmed (its characters are
    /// checked visible ASCII where the header is read): 1 to
    /// [`Self::MAX_LEN`] bytes.
    pub fn parse(s: &str) -> Result<Self, UidError> {
        if s.is_empty() {
            return Err(UidError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(UidError::TooLong(Self::MAX_LEN));
        }
        Ok(IdempotencyKey(s.to_string()))
    }

    /// The key a schedule's tick publishes under, `<topic>@<tick>`: one
    /// per (topic, scheduled time), so that a tick fired twice (by two
    /// replicas across a change of leader) is one run.
    pub fn for_tick(topic: &str, scheduled_time: &str) -> Self {
        IdempotencyKey(format!("{topic}@{scheduled_time}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_uids_keep_their_formats() {
        let r = RequestUid::new();
        assert!(r.as_str().starts_with("r-") && r.as_str().len() == 38);
        let f = FunctionUid::new(&r);
        assert_eq!(f.as_str().len(), 77);
        assert!(f.as_str().ends_with(r.as_str()));
        assert!(f.is_well_formed());
        assert!(!FunctionUid::parse(r.as_str())
            .expect("parsed")
            .is_well_formed());
    }

    #[test]
    fn uids_are_strings_in_json() {
        let r = RequestUid::parse("r-1").expect("parsed");
        assert_eq!(serde_json::to_string(&r).expect("json"), r#""r-1""#);
        let back: RequestUid = serde_json::from_str(r#""r-1""#).expect("read");
        assert_eq!(back, r);
        assert_eq!(format!("{r} {r:?}"), r#"r-1 "r-1""#);
    }

    #[test]
    fn a_function_uid_debugs_as_its_prefix_only() {
        let f = FunctionUid::new(&RequestUid::new());
        let shown = format!("{f:?} {:?}", Some(&f));
        assert!(!shown.contains(f.as_str()), "{shown}");
        assert!(
            shown.starts_with(&format!("\"{}…\"", &f.as_str()[..10])),
            "{shown}"
        );
        assert_eq!(format!("{f}"), f.as_str(), "Display is whole");
        assert_eq!(format!("{:?}", FunctionUid::from("f-1")), r#""f-1""#);
    }

    #[test]
    fn parse_refuses_only_what_the_edge_refused() {
        assert_eq!(RequestUid::parse(""), Err(UidError::Empty));
        assert!(RequestUid::parse("anything-at-all").is_ok());
        assert_eq!(FunctionUid::parse(""), Err(UidError::Empty));
        assert!(FunctionUid::parse("f-1-r-1").is_ok());
        assert_eq!(IdempotencyKey::parse(""), Err(UidError::Empty));
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)),
            Err(UidError::TooLong(255))
        );
    }
}
