//! Which Secrets of its namespace a pod of the repository may use. Any pod
//! can read every Secret of its namespace (the API server checks the
//! creator's right to create the pod, not to read the Secret), so the
//! repository, trusted less than the cluster, gets only what the cluster
//! admin lists in `--allowed-secrets`, and the payload Secret gitfaas
//! creates for the very request being applied (`{{PAYLOAD_SECRET}}`).
//!
//! That payload Secret is known by the object's `gitfaas.io/request-uid`
//! label, which gitfaas sets itself (overwriting what a manifest wrote)
//! before the policy runs, on a publish and again on a queued run's apply.
//! Another request's payload Secret is refused whatever the allow-list
//! says: a pattern such as `gitfaas-*` must not open other callers' bodies.

use std::fmt;

use serde_json::Value;

use crate::object::{payload_secret_name, LABEL_REQUEST_UID, PAYLOAD_SECRET_PREFIX};

/// An entry of `--allowed-secrets`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum AllowedSecret {
    /// This name.
    Name(String),
    /// Every name starting with this (written `prefix*`; `*` alone: any).
    Prefix(String),
}

impl AllowedSecret {
    fn allows(&self, name: &str) -> bool {
        match self {
            AllowedSecret::Name(n) => n == name,
            AllowedSecret::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

impl fmt::Display for AllowedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedSecret::Name(n) => f.write_str(n),
            AllowedSecret::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// `--allowed-secrets`: Secret names, or prefixes written `prefix*`
/// (`*` alone allows any Secret but other requests' payload Secrets);
/// blank entries are skipped.
pub fn parse_allowed_secrets<'a>(
    entries: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<AllowedSecret>, String> {
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let parsed = match entry.strip_suffix('*') {
            Some(prefix) => {
                let valid = prefix.len() < 253
                    && prefix.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    });
                if !valid {
                    return Err(format!(
                        "`{entry}` is not a Secret name prefix: before the `*`, use lowercase letters, digits, `-` and `.` (a `*` only at the end)"
                    ));
                }
                AllowedSecret::Prefix(prefix.to_string())
            }
            None => {
                if !crate::names::Rule::Subdomain.accepts(entry, false) {
                    return Err(format!(
                        "`{entry}` is not a Secret name ({}); list names or prefixes (`name*`) separated by commas, without a namespace",
                        crate::names::Rule::Subdomain.describe()
                    ));
                }
                AllowedSecret::Name(entry.to_string())
            }
        };
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}

/// The payload Secret of the request `object` is applied for, by the
/// request-uid label gitfaas set on it.
pub(super) fn own_payload_secret(object: &Value) -> Option<String> {
    object
        .get("metadata")?
        .get("labels")?
        .get(LABEL_REQUEST_UID)?
        .as_str()
        .filter(|uid| !uid.is_empty())
        .map(payload_secret_name)
}

/// Whether a pod of the request whose payload Secret is `own` may use the
/// Secret `name`.
pub(super) fn allowed(list: &[AllowedSecret], own: Option<&str>, name: &str) -> bool {
    own == Some(name)
        || (!name.starts_with(PAYLOAD_SECRET_PREFIX) && list.iter().any(|a| a.allows(name)))
}

/// Why the Secret `name` is refused, when more than "not on the list": a
/// payload Secret refused is another request's (a request's own is
/// always allowed).
pub(super) fn why(name: &str) -> &'static str {
    if name.starts_with(PAYLOAD_SECRET_PREFIX) {
        ": it is another request's payload Secret, and no allow-list opens those"
    } else {
        ""
    }
}

/// What is allowed, in words.
pub(super) fn describe_allowed(list: &[AllowedSecret], own: Option<&str>) -> String {
    let mut words: Vec<String> = Vec::with_capacity(list.len() + 1);
    words.push(match own {
        Some(own) => format!("this request's payload Secret `{own}`"),
        None => "this request's payload Secret".to_string(),
    });
    words.extend(list.iter().map(|a| format!("`{a}`")));
    words.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_names_or_prefixes() {
        let list =
            parse_allowed_secrets(["team-a ", " ", "shared-*", "*", "team-a"]).expect("valid");
        assert_eq!(
            list,
            [
                AllowedSecret::Name("team-a".into()),
                AllowedSecret::Prefix("shared-".into()),
                AllowedSecret::Prefix(String::new()),
            ]
        );
        assert_eq!(list[1].to_string(), "shared-*");
        for (bad, says) in [
            ("ns/secret", "is not a Secret name"),
            ("Upper", "is not a Secret name"),
            ("a*b", "is not a Secret name"),
            ("a*b*", "is not a Secret name prefix"),
            ("UP*", "is not a Secret name prefix"),
        ] {
            let e = parse_allowed_secrets([bad]).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn only_the_own_payload_secret_and_the_list_are_allowed() {
        let list = parse_allowed_secrets(["db", "shared-*"]).expect("valid");
        let own = payload_secret_name("r-1111");
        assert!(allowed(&list, Some(&own), &own));
        assert!(allowed(&list, Some(&own), "db"));
        assert!(allowed(&list, Some(&own), "shared-x"));
        assert!(!allowed(&list, Some(&own), "db2"));
        assert!(!allowed(&[], None, "db"));
        assert_eq!(why("db2"), "");
        // Another request's, even when a pattern would match it.
        let any = parse_allowed_secrets(["*", "gitfaas-payload-2222"]).expect("valid");
        let other = payload_secret_name("r-2222");
        assert!(!allowed(&any, Some(&own), &other));
        assert!(!allowed(&any, None, &other));
        assert!(why(&other).contains("another request's payload Secret"));
        assert!(allowed(&any, None, "anything"));
    }
}
