//! The structure (injection) check: a real render must have the shape of
//! the placeholder render (the same documents, keys and list lengths, every
//! literal unchanged) and every value must read back as itself.

use serde_json::Value;

use super::{TemplateError, PLACEHOLDER_PREFIX};

pub(super) fn same_shape_docs(
    expected: &[Value],
    actual: &[Value],
    values: &[&str],
) -> Result<(), TemplateError> {
    if expected.len() != actual.len() {
        return Err(TemplateError::Injection {
            path: "the whole file".into(),
            what: format!(
                "{} YAML documents instead of {}",
                actual.len(),
                expected.len()
            ),
        });
    }
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        let mut path = Vec::new();
        same_shape(e, a, values, &mut path).map_err(|what| TemplateError::Injection {
            path: format!(
                "document {}{}{}",
                i + 1,
                if path.is_empty() { "" } else { ": " },
                path.iter().map(Step::text).collect::<Vec<_>>().join(".")
            ),
            what,
        })?;
    }
    Ok(())
}

pub(super) fn holds_placeholder(s: &str) -> bool {
    s.contains(PLACEHOLDER_PREFIX)
}

/// The text a placeholder scalar must read as once the real values are in:
/// each `gitfaasvar<i>x` replaced by value `i`, verbatim.
pub(super) fn expand(s: &str, values: &[&str]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(PLACEHOLDER_PREFIX) {
        out.push_str(&rest[..at]);
        let after = &rest[at + PLACEHOLDER_PREFIX.len()..];
        match placeholder_index(after).and_then(|(i, len)| Some((values.get(i)?, len))) {
            Some((v, len)) => {
                out.push_str(v);
                rest = &after[len..];
            }
            None => {
                out.push_str(PLACEHOLDER_PREFIX);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The variable index of a placeholder whose prefix `after` follows
/// (`<i>x…`), and how many bytes of `after` it takes (`<i>x`).
pub(super) fn placeholder_index(after: &str) -> Option<(usize, usize)> {
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if !after[digits..].starts_with('x') {
        return None;
    }
    Some((after[..digits].parse().ok()?, digits + 1))
}

/// Whether YAML read `actual` as exactly the text `expected`: a value is
/// inserted verbatim, or it was reinterpreted (anchor, tag, comment, escape,
/// trimmed or folded whitespace, a number that lost digits) and the publish
/// is refused.
pub(super) fn reads_as(actual: &Value, expected: &str) -> bool {
    match actual {
        Value::String(s) => s == expected,
        Value::Bool(b) => expected == if *b { "true" } else { "false" },
        // Another spelling of the same number (`1.50`, `1e3`) is fine; a
        // number rounded to a float (`99999999999999999999`, `1e-400`) is not.
        Value::Number(n) => {
            n.to_string() == expected
                || (!expected.starts_with(['0', '+'])
                    && !expected.starts_with("-0")
                    && decimal(expected).is_some_and(|d| Some(d) == decimal(&n.to_string())))
        }
        Value::Null => matches!(expected, "" | "~" | "null" | "Null" | "NULL"),
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// The exact value of a decimal `-?digits[.digits][(e|E)[+-]digits]`: its
/// sign, its significant digits (no leading or trailing zeros) and the power
/// of ten of the last one.
fn decimal(s: &str) -> Option<(bool, String, i64)> {
    let (negative, s) = s.strip_prefix('-').map_or((false, s), |rest| (true, rest));
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (m, e.parse::<i64>().ok()?)
        }
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let significant = digits.trim_end_matches('0');
    let zeros = i64::try_from(digits.len() - significant.len()).ok()?;
    let frac_len = i64::try_from(frac.len()).ok()?;
    let exponent = exponent.checked_sub(frac_len)?.checked_add(zeros)?;
    Some((negative, significant.to_string(), exponent))
}

fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        format!("{:?}…", s.chars().take(MAX).collect::<String>())
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// One step of the path to a difference: a key or a list index. Kept as
/// borrowed steps and written out only for an error: a string per key of
/// every publish was a tenth of its instructions (issue 28's profile).
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl Step<'_> {
    fn text(&self) -> String {
        match self {
            Step::Key(k) => (*k).to_string(),
            Step::Index(i) => format!("[{i}]"),
        }
    }
}

/// Compares a placeholder render with a real one; on a difference, `path`
/// holds where it is and the error says what.
fn same_shape<'a>(
    expected: &Value,
    actual: &'a Value,
    values: &[&str],
    path: &mut Vec<Step<'a>>,
) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            if e.len() != a.len() {
                return Err(format!("{} keys instead of {}", a.len(), e.len()));
            }
            // Maps keep document order (serde_json's preserve_order), so keys
            // built from a variable are matched by position.
            for ((ek, ev), (ak, av)) in e.iter().zip(a.iter()) {
                // Most keys hold no variable: compared as they are.
                let same = if holds_placeholder(ek) {
                    expand(ek, values) == *ak
                } else {
                    ek == ak
                };
                if !same {
                    return Err(format!(
                        "key {} where the template gives {}",
                        shorten(ak),
                        shorten(&expand(ek, values))
                    ));
                }
                path.push(Step::Key(ak));
                same_shape(ev, av, values, path)?;
                path.pop();
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!("{} list items instead of {}", a.len(), e.len()));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                path.push(Step::Index(i));
                same_shape(ev, av, values, path)?;
                path.pop();
            }
            Ok(())
        }
        (Value::String(s), a) if holds_placeholder(s) => match a {
            Value::Array(_) | Value::Object(_) => {
                Err(format!("{} where the template has a value", kind_of(a)))
            }
            _ => {
                let want = expand(s, values);
                if reads_as(a, &want) {
                    Ok(())
                } else {
                    Err(format!(
                        "YAML reads {} where the value gives {}; a value must be inserted verbatim (quote the variable in the template, or avoid YAML syntax such as anchors, tags, comments and escapes in the value)",
                        shorten(&scalar_text(a)),
                        shorten(&want)
                    ))
                }
            }
        },
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!(
            "{} where the template has the literal {}",
            kind_of(a),
            e
        )),
    }
}
