//! `{{body.…}}` variables: a field of a JSON body as a template value.
//!
//! `{{body.city}}`, `{{body.a.b}}` and `{{body.items.0}}` name a field of
//! the body (a key of an object, an index of a list). The body is JSON when
//! it parses as JSON, whatever its Content-Type (a run queued or re-run
//! keeps its body, not its headers). A field's value is its scalar as
//! received: a string as is, a number or a boolean as its JSON text (`7.0`
//! stays `7.0`, `1e3` stays `1e3`: read from the raw text with serde_json's
//! `RawValue`, never printed again from a parsed number). A missing field,
//! `null`, an object, a list, or a body that is not JSON cannot fill one,
//! and the publish is refused before anything is applied, naming the path
//! and why. The value then goes through the structure check like any other:
//! a field's content is data, never YAML.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::value::RawValue;

use crate::template::BODY_PREFIX;

/// A `{{body.…}}` variable the body cannot fill, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The variable, `body.a.b`.
    pub path: String,
    /// Why, for people.
    pub reason: String,
}

/// An object or a list of the body, its members still raw.
enum Node<'b> {
    Object(BTreeMap<String, &'b RawValue>),
    List(Vec<&'b RawValue>),
}

/// What a raw JSON value is, by its first character.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Number,
    Bool,
    Null,
    Object,
    List,
}

impl Kind {
    fn of(raw: &RawValue) -> Kind {
        match json_trim(raw.get()).as_bytes().first() {
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::List,
            _ => Kind::Number,
        }
    }

    fn described(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Bool => "a boolean",
            Kind::Null => "null",
            Kind::Object => "an object",
            Kind::List => "a list",
        }
    }
}

fn json_trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// The value of every variable of `paths` (each `body.…`), or every one
/// the body cannot fill and why.
pub fn resolve<'p>(
    body: &[u8],
    paths: impl IntoIterator<Item = &'p str>,
) -> Result<BTreeMap<String, String>, Vec<FieldError>> {
    let paths: BTreeSet<&str> = paths.into_iter().collect();
    if paths.is_empty() {
        return Ok(BTreeMap::new());
    }
    let all = |reason: String| -> Vec<FieldError> {
        paths
            .iter()
            .map(|p| FieldError {
                path: (*p).to_string(),
                reason: reason.clone(),
            })
            .collect()
    };
    let not_json = "a {{body.…}} variable needs a JSON body (an object whose fields it names)";
    let text = std::str::from_utf8(body)
        .map_err(|_| all(format!("the body is not JSON (not UTF-8 text): {not_json}")))?;
    if json_trim(text).is_empty() {
        return Err(all(format!("the body is empty: {not_json}")));
    }
    let root: &RawValue = serde_json::from_str(text)
        .map_err(|e| all(format!("the body is not JSON ({e}): {not_json}")))?;
    let mut nodes: HashMap<String, Node<'_>> = HashMap::new();
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for path in paths {
        match field(root, path, &mut nodes) {
            Ok(value) => {
                values.insert(path.to_string(), value);
            }
            Err(reason) => errors.push(FieldError {
                path: path.to_string(),
                reason,
            }),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// The value at `path` (`body.a.0.b`); each object or list on the way is
/// parsed once (`nodes`, by its own path), however many variables it holds.
fn field<'b>(
    root: &'b RawValue,
    path: &str,
    nodes: &mut HashMap<String, Node<'b>>,
) -> Result<String, String> {
    let segments = path.strip_prefix(BODY_PREFIX).unwrap_or(path).split('.');
    let mut at = root;
    let mut here = String::from("body");
    for segment in segments {
        let kind = Kind::of(at);
        if !matches!(kind, Kind::Object | Kind::List) {
            return Err(format!(
                "`{here}` is {}, not an object or a list: it has no field `{segment}`",
                kind.described()
            ));
        }
        if !nodes.contains_key(&here) {
            let node = match kind {
                Kind::Object => serde_json::from_str(at.get()).map(Node::Object),
                _ => serde_json::from_str(at.get()).map(Node::List),
            }
            .map_err(|e| format!("`{here}` cannot be read: {e}"))?;
            nodes.insert(here.clone(), node);
        }
        at = match nodes.get(&here) {
            Some(Node::Object(fields)) => *fields
                .get(segment)
                .ok_or_else(|| format!("`{here}` has no field `{segment}`"))?,
            Some(Node::List(items)) => {
                let index = segment.parse::<usize>().map_err(|_| {
                    format!("`{here}` is a list: name one of its items by its index (`{here}.0`)")
                })?;
                *items.get(index).ok_or_else(|| {
                    format!("`{here}` has no item {index} (it has {})", items.len())
                })?
            }
            None => return Err(format!("`{here}` cannot be read")),
        };
        here.push('.');
        here.push_str(segment);
    }
    let scalar = "a {{body.…}} value must be a string, a number or a boolean";
    match Kind::of(at) {
        Kind::String => serde_json::from_str::<String>(at.get())
            .map_err(|e| format!("`{here}` cannot be read: {e}")),
        Kind::Number | Kind::Bool => Ok(json_trim(at.get()).to_string()),
        Kind::Null => Err(format!(
            "`{here}` is null: {scalar} (send the field with a value)"
        )),
        Kind::Object => Err(format!(
            "`{here}` is an object: {scalar}; name one of its fields (`{here}.…`)"
        )),
        Kind::List => Err(format!(
            "`{here}` is a list: {scalar}; name one of its items (`{here}.0`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str, path: &str) -> Result<String, String> {
        resolve(body.as_bytes(), [path])
            .map(|mut v| v.remove(path).unwrap_or_default())
            .map_err(|e| e[0].reason.clone())
    }

    #[test]
    fn a_field_is_its_scalar_as_received() {
        let body = r#"{"city": "Paris", "a": {"b": "deep"}, "items": ["zero", "one"],
            "n": 7.0, "e": 1E3, "neg": -0, "big": 123456789012345678901234567890,
            "t": true, "f": false, "esc": "a\"b\nc\u2028d\u0085", "k-1": {"x_y": "z"},
            "dup": 1, "dup": 2, "0": "key zero"}"#;
        for (path, want) in [
            ("body.city", "Paris"),
            ("body.a.b", "deep"),
            ("body.items.0", "zero"),
            ("body.items.1", "one"),
            ("body.n", "7.0"),
            ("body.e", "1E3"),
            ("body.neg", "-0"),
            ("body.big", "123456789012345678901234567890"),
            ("body.t", "true"),
            ("body.f", "false"),
            ("body.esc", "a\"b\nc\u{2028}d\u{85}"),
            ("body.k-1.x_y", "z"),
            ("body.dup", "2"),
            ("body.0", "key zero"),
        ] {
            assert_eq!(one(body, path).as_deref(), Ok(want), "{path}");
        }
        let all = resolve(body.as_bytes(), ["body.city", "body.a.b", "body.items.0"])
            .expect("all resolve");
        assert_eq!(all.len(), 3);
        assert_eq!(one(r#"[{"a": 1}]"#, "body.0.a").as_deref(), Ok("1"));
    }

    #[test]
    fn what_cannot_fill_a_variable_is_named_with_why() {
        let body = r#"{"a": {"b": 1}, "n": null, "l": [1], "s": "x"}"#;
        for (path, part) in [
            ("body.missing", "`body` has no field `missing`"),
            ("body.a.c", "`body.a` has no field `c`"),
            ("body.n", "`body.n` is null"),
            ("body.a", "`body.a` is an object"),
            ("body.l", "`body.l` is a list"),
            ("body.l.1", "`body.l` has no item 1 (it has 1)"),
            (
                "body.l.x",
                "`body.l` is a list: name one of its items by its index",
            ),
            ("body.s.x", "`body.s` is a string, not an object or a list"),
            ("body.a.b.c", "`body.a.b` is a number"),
        ] {
            let why = one(body, path).expect_err(path);
            assert!(why.contains(part), "{path}: {why}");
        }
        for (body, part) in [
            ("", "the body is empty"),
            ("  \n", "the body is empty"),
            ("city=Paris", "the body is not JSON"),
            ("{\"a\": ", "the body is not JSON"),
        ] {
            let why = one(body, "body.a").expect_err(body);
            assert!(why.contains(part), "{body:?}: {why}");
        }
        assert!(resolve(b"\xff\xfe", ["body.a"]).is_err());
        let errors = resolve(body.as_bytes(), ["body.n", "body.missing", "body.a.b"])
            .expect_err("two cannot");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["body.missing", "body.n"], "every one is named");
    }

    #[test]
    fn a_deeply_nested_body_is_refused_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(one(&deep, "body.0").is_err());
        let deep_object = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert!(one(&deep_object, "body.a").is_err());
    }
}
