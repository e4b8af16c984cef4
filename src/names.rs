//! Kubernetes' object name rules, checked on every rendered object before
//! anything is sent to the API server.
//!
//! A name comes from the repository and, through a `{{variable}}`, from an
//! HTTP caller. Checked here, a name can never carry `?`, `/`, `%` or an empty
//! string into a request path — the ways a value could turn a call on one
//! object into a call on another object or on a whole collection. The rules
//! are Kubernetes' own for each kind (`k8s.io/apimachinery`'s
//! `NameIsDNSSubdomain`, `NameIsDNSLabel`, `IsPathSegmentName`, as the kinds'
//! validation in `k8s.io/kubernetes/pkg/apis/*/validation` uses them), so a
//! name refused here is one the API server would refuse too, only later.

use serde_json::Value;

/// A Kubernetes name rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// RFC 1123 subdomain: lowercase letters, digits, `-` and `.`, starting
    /// and ending with a letter or digit, at most 253 characters. Most kinds.
    Subdomain,
    /// RFC 1123 label: lowercase letters, digits and `-`, starting and ending
    /// with a letter or digit, at most 63 characters. Namespaces, Services,
    /// StatefulSets, and every `metadata.namespace`.
    Label,
    /// A path segment: anything but `.`, `..`, `/` and `%`. RBAC kinds (which
    /// allow names like `system:reader`); gitfaas also refuses control
    /// characters, spaces, `?` and `#` in them, which no sane name holds.
    PathSegment,
}

impl Rule {
    /// The rule in words, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Rule::Subdomain => "an RFC 1123 subdomain: at most 253 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit",
            Rule::Label => "an RFC 1123 label: at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit",
            Rule::PathSegment => "a path segment: not `.` or `..`, and without `/`, `%`, `?`, `#`, spaces or control characters",
        }
    }

    /// Whether `name` follows the rule. With `prefix` (a `generateName`), a
    /// trailing `-` is allowed, as the API server allows it there.
    pub fn accepts(self, name: &str, prefix: bool) -> bool {
        let name = match (prefix, self) {
            (true, Rule::Subdomain | Rule::Label) => name.strip_suffix('-').unwrap_or(name),
            _ => name,
        };
        match self {
            Rule::Subdomain => is_subdomain(name),
            Rule::Label => is_label(name),
            Rule::PathSegment => is_path_segment(name),
        }
    }
}

/// The rule for the name of a `kind` of `api_version`.
pub fn rule_for(api_version: &str, kind: &str) -> Rule {
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("", "Namespace") | ("", "Service") | ("apps", "StatefulSet") => Rule::Label,
        (
            "rbac.authorization.k8s.io",
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding",
        ) => Rule::PathSegment,
        _ => Rule::Subdomain,
    }
}

/// A name that breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value} is not valid: it must be {}", .rule.describe())]
pub struct NameError {
    /// `metadata.name`, `metadata.namespace` or `metadata.generateName`.
    pub field: &'static str,
    /// The value, quoted and shortened.
    pub value: String,
    /// The rule it breaks.
    pub rule: Rule,
}

/// Checks `metadata.name`, `metadata.generateName` and `metadata.namespace`
/// of a rendered object (those that are present; a missing name is reported
/// where the object's target is resolved).
pub fn check_object(object: &Value) -> Result<(), NameError> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let rule = rule_for(api_version, kind);
    let Some(meta) = object.get("metadata") else {
        return Ok(());
    };
    let fields: [(&'static str, Rule, bool); 3] = [
        ("metadata.name", rule, false),
        ("metadata.generateName", rule, true),
        ("metadata.namespace", Rule::Label, false),
    ];
    for (field, rule, prefix) in fields {
        let key = field.trim_start_matches("metadata.");
        let value = match meta.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(NameError {
                    field,
                    value: shorten(&other.to_string()),
                    rule,
                })
            }
        };
        if !rule.accepts(value, prefix) {
            return Err(NameError {
                field,
                value: shorten(value),
                rule,
            });
        }
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        format!("{:?}…", s.chars().take(MAX).collect::<String>())
    }
}

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_subdomain(s: &str) -> bool {
    // Each dot-separated part is a label; the whole is at most 253.
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label)
}

fn is_path_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s
            .chars()
            .any(|c| matches!(c, '/' | '%' | '?' | '#') || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_rule_accepts_and_refuses_what_kubernetes_does() {
        let long_label = "a".repeat(63);
        let too_long_label = "a".repeat(64);
        let long_subdomain = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "a".repeat(61));
        let too_long_subdomain = format!("{long_subdomain}a");
        assert_eq!(long_subdomain.len(), 253);
        let cases: &[(Rule, &str, bool)] = &[
            (Rule::Subdomain, "collect-abc123", true),
            (Rule::Subdomain, "a.b.c", true),
            (Rule::Subdomain, "0abc", true),
            (Rule::Subdomain, &long_subdomain, true),
            (Rule::Subdomain, &too_long_subdomain, false),
            (Rule::Subdomain, "", false),
            (Rule::Subdomain, "cache-victim?", false),
            (Rule::Subdomain, "?", false),
            (Rule::Subdomain, "a/b", false),
            (Rule::Subdomain, "a%2Fb", false),
            (Rule::Subdomain, "..", false),
            (Rule::Subdomain, "a..b", false),
            (Rule::Subdomain, ".a", false),
            (Rule::Subdomain, "a.", false),
            (Rule::Subdomain, "-a", false),
            (Rule::Subdomain, "a-", false),
            (Rule::Subdomain, "A", false),
            (Rule::Subdomain, "a_b", false),
            (Rule::Subdomain, "a b", false),
            (Rule::Subdomain, "é", false),
            (Rule::Subdomain, "a\u{85}", false),
            (Rule::Label, &long_label, true),
            (Rule::Label, &too_long_label, false),
            (Rule::Label, "a.b", false),
            (Rule::Label, "team-a", true),
            (Rule::Label, "9", true),
            (Rule::PathSegment, "system:reader", true),
            (Rule::PathSegment, "Mixed_Case", true),
            (Rule::PathSegment, ".", false),
            (Rule::PathSegment, "..", false),
            (Rule::PathSegment, "a/b", false),
            (Rule::PathSegment, "a%b", false),
            (Rule::PathSegment, "a?b", false),
            (Rule::PathSegment, "a#b", false),
            (Rule::PathSegment, "a b", false),
            (Rule::PathSegment, "a\nb", false),
            (Rule::PathSegment, "", false),
        ];
        for (rule, name, ok) in cases {
            assert_eq!(rule.accepts(name, false), *ok, "{rule:?} {name:?}");
        }
    }

    #[test]
    fn a_generate_name_may_end_with_a_dash() {
        assert!(Rule::Subdomain.accepts("job-", true));
        assert!(!Rule::Subdomain.accepts("job-", false));
        assert!(!Rule::Subdomain.accepts("job?-", true));
        assert!(!Rule::Subdomain.accepts("-", true));
        assert!(Rule::Label.accepts("svc-", true));
    }

    #[test]
    fn kinds_get_their_own_rule() {
        assert_eq!(rule_for("batch/v1", "Job"), Rule::Subdomain);
        assert_eq!(rule_for("v1", "ConfigMap"), Rule::Subdomain);
        assert_eq!(rule_for("v1", "Service"), Rule::Label);
        assert_eq!(rule_for("v1", "Namespace"), Rule::Label);
        assert_eq!(rule_for("apps/v1", "StatefulSet"), Rule::Label);
        assert_eq!(rule_for("apps/v1", "Deployment"), Rule::Subdomain);
        assert_eq!(
            rule_for("rbac.authorization.k8s.io/v1", "Role"),
            Rule::PathSegment
        );
        // A CRD's kind named like a core one is not the core kind.
        assert_eq!(rule_for("example.com/v1", "Service"), Rule::Subdomain);
    }

    #[test]
    fn an_object_is_checked_on_name_generate_name_and_namespace() {
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "cache-a", "namespace": "team-a"}});
        assert_eq!(check_object(&ok), Ok(()));
        let cases: &[(Value, &str)] = &[
            (json!({"name": "cache-victim?"}), "metadata.name"),
            (json!({"name": "?"}), "metadata.name"),
            (json!({"name": ""}), "metadata.name"),
            (json!({"name": 7}), "metadata.name"),
            (
                json!({"name": "a", "namespace": "a/b"}),
                "metadata.namespace",
            ),
            (
                json!({"name": "a", "namespace": "a.b"}),
                "metadata.namespace",
            ),
            (json!({"name": "a", "namespace": ""}), "metadata.namespace"),
            (json!({"generateName": "x?"}), "metadata.generateName"),
        ];
        for (meta, field) in cases {
            let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta});
            let err = check_object(&object).expect_err(&meta.to_string());
            assert_eq!(err.field, *field, "{meta}");
        }
        let err = check_object(&json!({"apiVersion": "v1", "kind": "Service",
                                       "metadata": {"name": "a.b"}}))
        .expect_err("a Service name is a label");
        assert_eq!(err.rule, Rule::Label);
        assert!(err.to_string().contains("RFC 1123 label"), "{err}");
    }
}
