//! A real render built from the placeholder documents, without parsing:
//! each placeholder's value put into the scalar that held it.
//!
//! Parsing the rendered YAML and checking its shape was most of a
//! publish's own CPU (issue 28's profile). For values that cannot change
//! how YAML reads the text around them, the parse's result is known in
//! advance: the placeholder documents with each `gitfaasvar<i>x` replaced
//! by value `i`. This module says when that holds, conservatively, and
//! builds those documents; every other render is parsed and checked as
//! before (`Template::render_checked`). Built this way a value cannot add
//! a key, an item or a document: it only ever becomes part of one string.
//!
//! When it holds, decided once per template ([`Substitutable::of`]) and
//! once per value ([`Substitutable::takes`]):
//! - every placeholder is in a scalar of the documents, once per place the
//!   template writes it (not in a comment, a tag, an anchor or a key; not
//!   repeated by an alias), and no literal text of the template looks like
//!   a placeholder;
//! - a value is not empty and has no white space, quote, backslash or
//!   control character, so a quoted or block scalar reads it verbatim and
//!   no fold or trim around it changes (the placeholder had none either);
//! - a variable written in a plain scalar somewhere takes only letters,
//!   digits and `._/+=-`, and each scalar it is in must then read as a
//!   string: start with a letter and not be a word YAML or a float parser
//!   gives another type (`true`, `null`, `inf`, …).
//!
//! The property test in `tests.rs` holds this against the parse it
//! replaces.

use serde_json::{Map, Value};

use super::check::{expand, holds_placeholder, placeholder_index};
use super::encode::YamlContext;
use super::syntax::Segment;
use super::PLACEHOLDER_PREFIX;

/// A template whose real renders can be built from its placeholder
/// documents: which variables (by index) are written in a plain scalar.
#[derive(Debug)]
pub(super) struct Substitutable {
    plain: Vec<bool>,
}

impl Substitutable {
    /// Whether `segments` (with their `contexts`, by segment index) render
    /// to `docs` with placeholders that can be substituted; `index` gives a
    /// variable's index among the template's variables.
    pub(super) fn of(
        segments: &[Segment],
        contexts: &[YamlContext],
        docs: &[Value],
        variables: usize,
        index: impl Fn(&str) -> Option<usize>,
    ) -> Option<Self> {
        if docs.is_empty() {
            return None;
        }
        let mut plain = vec![false; variables];
        let mut written = vec![0usize; variables];
        for (i, segment) in segments.iter().enumerate() {
            match segment {
                Segment::Literal(text) => {
                    if text.contains(PLACEHOLDER_PREFIX) {
                        return None;
                    }
                }
                Segment::Var(name) => {
                    let v = index(name)?;
                    match contexts.get(i)? {
                        YamlContext::Key => return None,
                        YamlContext::Plain => plain[v] = true,
                        YamlContext::DoubleQuoted
                        | YamlContext::SingleQuoted { .. }
                        | YamlContext::Literal { .. }
                        | YamlContext::Folded => {}
                    }
                    written[v] += 1;
                }
            }
        }
        let mut found = vec![0usize; variables];
        for doc in docs {
            if !count(doc, &mut found) {
                return None;
            }
        }
        (found == written).then_some(Substitutable { plain })
    }

    /// Whether `values` (by variable index) can be substituted.
    pub(super) fn takes(&self, values: &[&str]) -> bool {
        values.len() == self.plain.len()
            && values.iter().zip(&self.plain).all(|(value, plain)| {
                !value.is_empty()
                    && if *plain {
                        value.bytes().all(|b| {
                            b.is_ascii_alphanumeric()
                                || matches!(b, b'.' | b'_' | b'/' | b'+' | b'=' | b'-')
                        })
                    } else {
                        value
                            .bytes()
                            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'))
                    }
            })
    }

    /// The documents with every placeholder replaced by its value; None
    /// when a plain variable's scalar would not read as a string.
    pub(super) fn render(&self, docs: &[Value], values: &[&str]) -> Option<Vec<Value>> {
        docs.iter().map(|doc| self.fill(doc, values)).collect()
    }

    fn fill(&self, value: &Value, values: &[&str]) -> Option<Value> {
        Some(match value {
            Value::String(s) if holds_placeholder(s) => {
                let filled = expand(s, values);
                if self.holds_plain(s) && !reads_as_string(&filled) {
                    return None;
                }
                Value::String(filled)
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.fill(item, values))
                    .collect::<Option<_>>()?,
            ),
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                for (k, v) in map {
                    out.insert(k.clone(), self.fill(v, values)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    /// Whether `s` holds the placeholder of a variable written in a plain
    /// scalar somewhere.
    fn holds_plain(&self, s: &str) -> bool {
        placeholders(s).any(|i| self.plain.get(i).copied().unwrap_or(true))
    }
}

/// The variable indexes of the placeholders in `s`.
fn placeholders(s: &str) -> impl Iterator<Item = usize> + '_ {
    s.match_indices(PLACEHOLDER_PREFIX)
        .filter_map(move |(at, _)| placeholder_index(&s[at + PLACEHOLDER_PREFIX.len()..]))
        .map(|(i, _)| i)
}

/// Counts the placeholders in the strings of `value`, by variable index;
/// false if a key holds one.
fn count(value: &Value, found: &mut [usize]) -> bool {
    match value {
        Value::String(s) => {
            for i in placeholders(s) {
                match found.get_mut(i) {
                    Some(n) => *n += 1,
                    None => return false,
                }
            }
            true
        }
        Value::Array(items) => items.iter().all(|item| count(item, found)),
        Value::Object(map) => map
            .iter()
            .all(|(k, v)| !holds_placeholder(k) && count(v, found)),
        _ => true,
    }
}

/// Whether a plain scalar reading `s` is the string `s` for YAML and for
/// the parser behind it: it starts with a letter and is no word of
/// another type (YAML 1.1's and 1.2's booleans and null, and what a float
/// parser takes: `inf`, `infinity`, `nan`).
fn reads_as_string(s: &str) -> bool {
    const WORDS: [&str; 12] = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "inf", "infinity", "nan",
    ];
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && !WORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
}
