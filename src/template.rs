//! Manifest templates: parsing `{{NAME}}` substitutions, strict rendering, and
//! the structure check that makes injection through a value impossible.
//!
//! Templates are parsed with handlebars (so `{{NAME}}`, `{{{NAME}}}`, `{{!
//! comments}}`, `\{{` escapes and `{{~ … ~}}` whitespace control behave as
//! users of the Python gitfaas' mustache templates expect), but only plain
//! substitutions are accepted: no helpers, blocks or partials. That keeps a
//! rendered manifest a pure function of its variables, which the structure
//! check relies on. Rendering concatenates literal text and raw values: there
//! is no HTML escaping. A template made only of text and `{{NAME}}` (most of
//! them) is split by a plain scan that gives the same result as handlebars
//! without its parser's cost; anything else goes through handlebars.
//!
//! The structure check: every template is rendered once at sync time with
//! inert placeholder values and parsed to validate it, without building the
//! documents ([`check_documents`]; they are built and kept on first use,
//! `Template::placeholder_docs`); a
//! publish renders it with the real values, parses that, and requires the same
//! shape — the same documents, the same keys, the same sequence lengths, every
//! literal scalar unchanged, and every scalar that held a placeholder still a
//! scalar. A value that adds a key, a document or a list item, opens a flow
//! mapping or an alias, is rejected whatever characters it used.
//!
//! This module does not know which variables exist (see `publish`) nor what
//! may be applied (see `policy`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use handlebars::template::{Parameter, TemplateElement};
use serde_json::Value;

/// Prefix of every placeholder value; it is what marks a scalar as variable.
/// Lowercase letters and digits only, so a placeholder is valid wherever a
/// real value could be: an object name, a label, a number field.
const PLACEHOLDER_PREFIX: &str = "gitfaasvar";

/// Errors of parsing, rendering and checking one template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The text is not a valid template.
    #[error("line {line}: {reason}")]
    Syntax {
        /// 1-based line of the problem, 0 when unknown.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The template uses something other than plain `{{NAME}}` substitutions.
    #[error("line {line}: `{found}` is not supported: gitfaas templates only substitute variables, written {{{{NAME}}}} (no helpers, blocks or partials; write \\{{{{ for a literal {{{{)")]
    Unsupported {
        /// 1-based line of the expression, 0 when unknown.
        line: usize,
        /// The expression as written.
        found: String,
    },
    /// Variables the template uses have no value.
    #[error("missing template variable{}: {}", if .0.len() == 1 { "" } else { "s" }, .0.join(", "))]
    Missing(Vec<String>),
    /// The rendered text is not valid YAML.
    #[error("the rendered manifest is not valid YAML: {0}")]
    Yaml(String),
    /// A rendered document is not a Kubernetes object.
    #[error("document {doc}: {reason}")]
    NotAnObject {
        /// 1-based index of the document in the file.
        doc: usize,
        /// What is missing.
        reason: String,
    },
    /// A value changed the structure of the manifest.
    #[error("a variable's value changes the structure of the manifest at {path}: {what}")]
    Injection {
        /// Where the first difference is, e.g. `doc 1: spec.template.spec`.
        path: String,
        /// What differs.
        what: String,
    },
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Var(String),
}

/// A parsed template: literal text and variable substitutions, plus the
/// documents it renders to with placeholders (the shape a real render must keep).
#[derive(Debug)]
pub struct Template {
    segments: Vec<Segment>,
    variables: BTreeSet<String>,
    /// Parsed at sync to validate, then dropped; parsed again on first use
    /// and kept. Parsed documents take about ten times the memory of their
    /// text, and a repository of thousands of manifests publishes few of them.
    placeholder_docs: OnceLock<Vec<Value>>,
}

impl Template {
    /// Parses `source` and validates that it renders, with placeholder values, to
    /// one or more YAML documents that are each a Kubernetes object.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let (segments, variables) = match plain_segments(source) {
            Some(found) => found,
            None => handlebars_segments(source)?,
        };
        let template = Template {
            segments,
            variables,
            placeholder_docs: OnceLock::new(),
        };
        // Validate now without building the documents (see `placeholder_docs`).
        check_documents(&template.render(&template.placeholder_values())?)?;
        Ok(template)
    }

    fn render_placeholder_docs(&self) -> Result<Vec<Value>, TemplateError> {
        let placeholders = self.placeholder_values();
        let text = self.render(&placeholders)?;
        parse_documents(&text)
    }

    /// The names of the variables the template uses.
    pub fn variables(&self) -> &BTreeSet<String> {
        &self.variables
    }

    /// The documents rendered with placeholder values.
    pub fn placeholder_docs(&self) -> &[Value] {
        self.placeholder_docs.get_or_init(|| {
            // `parse` rendered and parsed the same text successfully, and both
            // are deterministic; were it to fail, no document would match and
            // every publish would be refused rather than go unchecked.
            self.render_placeholder_docs().unwrap_or_default()
        })
    }

    /// Placeholder values: one distinct inert value per variable.
    pub fn placeholder_values(&self) -> BTreeMap<String, String> {
        self.variables
            .iter()
            .enumerate()
            .map(|(i, v)| (v.clone(), format!("{PLACEHOLDER_PREFIX}{i}x")))
            .collect()
    }

    /// Renders with `values`; every variable must have one.
    pub fn render(&self, values: &BTreeMap<String, String>) -> Result<String, TemplateError> {
        self.render_with(|name| values.get(name).map(String::as_str))
    }

    /// Renders, looking each variable up with `lookup`; the error names every
    /// variable without a value, not only the first.
    pub fn render_with<'a>(
        &self,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<String, TemplateError> {
        let missing: Vec<String> = self
            .variables
            .iter()
            .filter(|v| lookup(v).is_none())
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(TemplateError::Missing(missing));
        }
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Var(name) => out.push_str(lookup(name).unwrap_or_default()),
            }
        }
        Ok(out)
    }

    /// Renders with real values, parses, and checks the result has the shape of
    /// the placeholder render. Returns the documents.
    pub fn render_checked<'a>(
        &self,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Vec<Value>, TemplateError> {
        let text = self.render_with(&lookup)?;
        let values: Vec<&str> = self
            .variables
            .iter()
            .map(|v| lookup(v).unwrap_or_default())
            .collect();
        let docs =
            serde_saphyr::from_multiple::<Value>(&text).map_err(|e| TemplateError::Injection {
                path: "the whole file".into(),
                what: format!(
                    "the rendered text no longer parses as YAML ({})",
                    first_line(&e.to_string())
                ),
            })?;
        same_shape_docs(self.placeholder_docs(), &docs, &values)?;
        Ok(docs)
    }
}

/// Segments and variables of a template, by handlebars' own parser: for the
/// templates [`plain_segments`] leaves to it (comments, escapes, whitespace
/// control, and anything unsupported, which is refused here with its line).
fn handlebars_segments(source: &str) -> Result<(Vec<Segment>, BTreeSet<String>), TemplateError> {
    let compiled = handlebars::Template::compile(source).map_err(|e| TemplateError::Syntax {
        line: e.pos().map(|(l, _)| l).unwrap_or(0),
        reason: e.reason().to_string(),
    })?;
    let mut segments = Vec::with_capacity(compiled.elements.len());
    let mut variables = BTreeSet::new();
    for (i, element) in compiled.elements.iter().enumerate() {
        let line = compiled.mapping.get(i).map(|m| m.0).unwrap_or(0);
        match element {
            TemplateElement::RawString(text) => push_literal(&mut segments, text),
            TemplateElement::Comment(_) => {}
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h)
                if h.params.is_empty() && h.hash.is_empty() && !h.block =>
            {
                let name = match &h.name {
                    Parameter::Name(n) => Some(n.clone()),
                    Parameter::Path(handlebars::Path::Relative((_, raw))) => Some(raw.clone()),
                    _ => None,
                };
                match name {
                    Some(n) if is_variable_name(&n) => {
                        variables.insert(n.clone());
                        segments.push(Segment::Var(n));
                    }
                    _ => {
                        return Err(TemplateError::Unsupported {
                            line,
                            found: describe(element),
                        })
                    }
                }
            }
            other => {
                return Err(TemplateError::Unsupported {
                    line,
                    found: describe(other),
                })
            }
        }
    }
    Ok((segments, variables))
}

/// Names that handlebars may read as something other than a variable
/// (literals, `this`, the `as` keyword): left to [`handlebars_segments`].
const NOT_PLAIN_NAMES: &[&str] = &["true", "false", "null", "undefined", "this", "as"];

/// Segments and variables of a template that uses nothing but `{{NAME}}`
/// (`{{ NAME }}`), found by a plain scan; `None` as soon as the text holds
/// anything else handlebars gives a meaning to (`{{{`, `{{!`, `{{~`, `{{#`,
/// `\{{`, a name handlebars reads otherwise, an unclosed `{{`), and then
/// [`handlebars_segments`] decides. The result is the same as handlebars'
/// (see the test `plain_scan_agrees_with_handlebars`) at next to no cost,
/// where handlebars' parser took 60 % of parsing a template (perf, a
/// repository of 10,000 manifests, all parsed at every new commit).
fn plain_segments(source: &str) -> Option<(Vec<Segment>, BTreeSet<String>)> {
    let mut segments = Vec::new();
    let mut variables = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("{{") {
        let before = &rest[..at];
        if before.ends_with('\\') {
            return None;
        }
        let after = &rest[at + 2..];
        let close = after.find("}}")?;
        let name = after[..close].trim_matches(' ');
        let first = name.chars().next()?;
        if !(first.is_ascii_alphabetic() || first == '_')
            || !is_variable_name(name)
            || NOT_PLAIN_NAMES.contains(&name)
            // `{{else…}}` is an `else` chain to handlebars, even `{{elsewhere}}`.
            || name.starts_with("else")
        {
            return None;
        }
        if !before.is_empty() {
            push_literal(&mut segments, before);
        }
        variables.insert(name.to_string());
        segments.push(Segment::Var(name.to_string()));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        push_literal(&mut segments, rest);
    }
    Some((segments, variables))
}

fn push_literal(segments: &mut Vec<Segment>, text: &str) {
    if let Some(Segment::Literal(last)) = segments.last_mut() {
        last.push_str(text);
    } else {
        segments.push(Segment::Literal(text.to_string()));
    }
}

/// A name a query parameter or built-in can have: letters, digits, `_` and `-`.
pub fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn describe(element: &TemplateElement) -> String {
    match element {
        TemplateElement::HelperBlock(h) => format!("{{{{#{}}}}}", param_name(&h.name)),
        TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
            let mut s = param_name(&h.name);
            for p in &h.params {
                s.push(' ');
                s.push_str(&param_name(p));
            }
            format!("{{{{{s}}}}}")
        }
        TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => {
            "a partial ({{> …}})".into()
        }
        TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => {
            "a decorator ({{* …}})".into()
        }
        _ => "an unsupported construct".into(),
    }
}

fn param_name(p: &Parameter) -> String {
    match p {
        Parameter::Name(n) => n.clone(),
        Parameter::Path(handlebars::Path::Relative((_, raw))) => raw.clone(),
        Parameter::Path(_) => "@…".into(),
        Parameter::Literal(v) => v.to_string(),
        _ => "(…)".into(),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Parses YAML text into its non-empty documents, each required to be a
/// Kubernetes object (a mapping with string `apiVersion` and `kind` and a
/// `metadata` mapping).
pub fn parse_documents(text: &str) -> Result<Vec<Value>, TemplateError> {
    let docs = serde_saphyr::from_multiple::<Value>(text)
        .map_err(|e| TemplateError::Yaml(first_line(&e.to_string()).to_string()))?;
    let shapes: Vec<Shape> = docs.iter().map(Shape::of).collect();
    object_problems(&shapes)?;
    Ok(docs)
}

/// What [`parse_documents`] checks, by the same parser, without building the
/// documents: at sync, where thousands of templates are validated and their
/// documents would be dropped at once (building them is most of the cost).
pub fn check_documents(text: &str) -> Result<(), TemplateError> {
    let shapes = serde_saphyr::from_multiple::<Shape>(text)
        .map_err(|e| TemplateError::Yaml(first_line(&e.to_string()).to_string()))?;
    object_problems(&shapes)
}

fn object_problems(shapes: &[Shape]) -> Result<(), TemplateError> {
    if shapes.is_empty() {
        return Err(TemplateError::NotAnObject {
            doc: 1,
            reason: "the file holds no YAML document".into(),
        });
    }
    for (i, shape) in shapes.iter().enumerate() {
        let reason = match shape {
            Shape::Object {
                api_version: false, ..
            } => Some("`apiVersion` is missing or not a string"),
            Shape::Object { kind: false, .. } => Some("`kind` is missing or not a string"),
            Shape::Object {
                metadata: false, ..
            } => Some("`metadata` is missing or not a mapping"),
            Shape::Object { .. } => None,
            Shape::Other => Some("a Kubernetes object must be a mapping"),
        };
        if let Some(reason) = reason {
            return Err(TemplateError::NotAnObject {
                doc: i + 1,
                reason: reason.into(),
            });
        }
    }
    Ok(())
}

/// Whether a document is a Kubernetes object, and which of its required
/// fields are right.
#[derive(Debug, PartialEq)]
enum Shape {
    Object {
        api_version: bool,
        kind: bool,
        metadata: bool,
    },
    Other,
}

impl Shape {
    fn of(doc: &Value) -> Shape {
        match doc {
            Value::Object(map) => Shape::Object {
                api_version: map.get("apiVersion").is_some_and(Value::is_string),
                kind: map.get("kind").is_some_and(Value::is_string),
                metadata: map.get("metadata").is_some_and(Value::is_object),
            },
            _ => Shape::Other,
        }
    }
}

/// The kind of a YAML node, read without keeping it.
#[derive(PartialEq)]
enum NodeKind {
    String,
    Mapping,
    Other,
}

/// Visits any node as `serde_json::Value` would (the same calls on the
/// deserializer, so the same errors), keeping only what [`Shape`] needs.
struct Skim<const TOP: bool>;

macro_rules! skim_scalars {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<E: serde::de::Error>(self, _: $ty) -> Result<Self::Value, E> {
            Ok(SkimOut::Other)
        }
    )*};
}

enum SkimOut {
    Shape(Shape),
    Kind(NodeKind),
    Other,
}

impl<'de, const TOP: bool> serde::de::Visitor<'de> for Skim<TOP> {
    type Value = SkimOut;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    skim_scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64,
        visit_i128: i128, visit_u128: u128, visit_bytes: &[u8]);

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SkimOut, E> {
        Ok(SkimOut::Kind(NodeKind::String))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<SkimOut, E> {
        Ok(SkimOut::Other)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<SkimOut, E> {
        Ok(SkimOut::Other)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<SkimOut, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<SkimOut, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<SkimOut, A::Error> {
        while seq.next_element::<Skimmed>()?.is_some() {}
        Ok(SkimOut::Other)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SkimOut, A::Error> {
        let (mut api_version, mut kind, mut metadata) = (false, false, false);
        // Keys as `Value` reads them: strings (it refuses any other key).
        while let Some(key) = map.next_key::<String>()? {
            let node = map.next_value::<Skimmed>()?.0;
            if TOP {
                match key.as_str() {
                    "apiVersion" => api_version = node == NodeKind::String,
                    "kind" => kind = node == NodeKind::String,
                    "metadata" => metadata = node == NodeKind::Mapping,
                    _ => {}
                }
            }
        }
        Ok(match TOP {
            true => SkimOut::Shape(Shape::Object {
                api_version,
                kind,
                metadata,
            }),
            false => SkimOut::Kind(NodeKind::Mapping),
        })
    }
}

/// A node below the top of a document.
struct Skimmed(NodeKind);

impl<'de> serde::Deserialize<'de> for Skimmed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Skimmed(match d.deserialize_any(Skim::<false>)? {
            SkimOut::Kind(k) => k,
            SkimOut::Shape(_) | SkimOut::Other => NodeKind::Other,
        }))
    }
}

impl<'de> serde::Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match d.deserialize_any(Skim::<true>)? {
            SkimOut::Shape(shape) => shape,
            SkimOut::Kind(_) | SkimOut::Other => Shape::Other,
        })
    }
}

fn same_shape_docs(
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
                path.join(".")
            ),
            what,
        })?;
    }
    Ok(())
}

fn holds_placeholder(s: &str) -> bool {
    s.contains(PLACEHOLDER_PREFIX)
}

/// The text a placeholder scalar must read as once the real values are in:
/// each `gitfaasvar<i>x` replaced by value `i`, verbatim.
fn expand(s: &str, values: &[&str]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(PLACEHOLDER_PREFIX) {
        out.push_str(&rest[..at]);
        let after = &rest[at + PLACEHOLDER_PREFIX.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let index = after[..digits].parse::<usize>().ok();
        match (
            index.and_then(|i| values.get(i)),
            after[digits..].starts_with('x'),
        ) {
            (Some(v), true) => {
                out.push_str(v);
                rest = &after[digits + 1..];
            }
            _ => {
                out.push_str(PLACEHOLDER_PREFIX);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether YAML read `actual` as exactly the text `expected`: a value is
/// inserted verbatim, or it was reinterpreted (anchor, tag, comment, escape,
/// trimmed or folded whitespace, a number that lost digits) and the publish
/// is refused.
fn reads_as(actual: &Value, expected: &str) -> bool {
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

/// Compares a placeholder render with a real one; on a difference, `path`
/// holds where it is and the error says what.
fn same_shape(
    expected: &Value,
    actual: &Value,
    values: &[&str],
    path: &mut Vec<String>,
) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            if e.len() != a.len() {
                return Err(format!("{} keys instead of {}", a.len(), e.len()));
            }
            // Maps keep document order (serde_json's preserve_order), so keys
            // built from a variable are matched by position.
            for ((ek, ev), (ak, av)) in e.iter().zip(a.iter()) {
                let want = expand(ek, values);
                if &want != ak {
                    return Err(format!(
                        "key {} where the template gives {}",
                        shorten(ak),
                        shorten(&want)
                    ));
                }
                path.push(ak.clone());
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
                path.push(format!("[{i}]"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const JOB: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: job-{{RANDOM}}
  labels:
    team: "{{team}}"
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: busybox:{{tag}}
          args: ["echo", "{{msg}}"]
          env:
            - name: PAYLOAD
              value: {{PAYLOAD}}
            - name: NOTE
              value: '{{note}}'
          command:
            - sh
            - -c
            - |
              echo {{script}}
"#;

    fn values(overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = [
            ("RANDOM", "abc123"),
            ("team", "data"),
            ("tag", "1.36"),
            ("msg", "hello"),
            ("PAYLOAD", "aGVsbG8="),
            ("note", "n"),
            ("script", "done"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in overrides {
            m.insert(k.to_string(), v.to_string());
        }
        m
    }

    #[test]
    fn renders_values_without_html_escaping() {
        let t = Template::parse(JOB).expect("valid template");
        let v = values(&[("msg", "a<b>&'c'")]);
        let docs = t
            .render_checked(|n| v.get(n).map(String::as_str))
            .expect("renders");
        let args = &docs[0]["spec"]["template"]["spec"]["containers"][0]["args"];
        assert_eq!(args[1], "a<b>&'c'");
        assert_eq!(docs[0]["metadata"]["name"], "job-abc123");
    }

    #[test]
    fn lists_every_variable_it_uses() {
        let t = Template::parse(JOB).expect("valid template");
        let vars: Vec<&str> = t.variables().iter().map(String::as_str).collect();
        assert_eq!(
            vars,
            ["PAYLOAD", "RANDOM", "msg", "note", "script", "tag", "team"]
        );
    }

    #[test]
    fn a_missing_variable_is_an_error_naming_all_of_them() {
        let t = Template::parse(JOB).expect("valid template");
        let mut v = values(&[]);
        v.remove("team");
        v.remove("tag");
        let err = t.render(&v).expect_err("must fail");
        assert_eq!(err.to_string(), "missing template variables: tag, team");
    }

    #[test]
    fn hostile_values_are_rejected_as_injection() {
        let t = Template::parse(JOB).expect("valid template");
        let cases: &[(&str, &str, &str)] = &[
            ("newline adds a key", "team", "x\"\n    admin: \"true"),
            (
                "newline in plain scalar adds a key",
                "tag",
                "1\n          securityContext: {privileged: true}",
            ),
            ("colon-space in plain scalar makes a mapping", "tag", "x: y"),
            ("flow mapping", "PAYLOAD", "{privileged: true}"),
            ("flow sequence", "PAYLOAD", "[a, b]"),
            (
                "comment then newline",
                "tag",
                "1 #\n          privileged: true",
            ),
            (
                "document separator",
                "script",
                "x\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}",
            ),
            ("alias", "PAYLOAD", "*x"),
            ("anchor", "PAYLOAD", "&a x"),
            ("tag", "PAYLOAD", "!!binary eA=="),
            (
                "multi-line value that YAML folds",
                "script",
                "a\n              b",
            ),
            ("comment without newline", "tag", "1 # note"),
            ("escape in double quotes", "msg", "a\\nb"),
            ("trailing space in a plain scalar", "tag", "1 "),
            ("double quote closes the string", "msg", "a\", \"b"),
            ("single quote closes the string", "note", "a', 'b: c"),
            ("block scalar dedent", "script", "x\n          extra: 1"),
            ("list item injection", "tag", "1\n        - name: sidecar"),
        ];
        for (what, var, value) in cases {
            let v = values(&[(var, value)]);
            let res = t.render_checked(|n| v.get(n).map(String::as_str));
            assert!(
                matches!(res, Err(TemplateError::Injection { .. })),
                "{what}: value {value:?} for {var} was not rejected: {res:?}"
            );
        }
    }

    #[test]
    fn benign_values_with_special_characters_pass_where_they_stay_scalars() {
        let t = Template::parse(JOB).expect("valid template");
        let cases: &[(&str, &str, &str)] = &[
            ("hash inside a quoted string", "team", "a#b"),
            ("colon without space", "tag", "1:2"),
            ("braces in a double-quoted string", "msg", "{x}"),
            (
                "colon-space and hash inside the block scalar",
                "script",
                "a: b # c",
            ),
            ("a number where the template has a plain scalar", "tag", "3"),
            ("empty value", "note", ""),
        ];
        for (what, var, value) in cases {
            let v = values(&[(var, value)]);
            let res = t.render_checked(|n| v.get(n).map(String::as_str));
            assert!(
                res.is_ok(),
                "{what}: {value:?} for {var} was rejected: {res:?}"
            );
        }
    }

    #[test]
    fn helpers_blocks_and_partials_are_refused() {
        for src in [
            "{{#if x}}a{{/if}}",
            "{{> other}}",
            "{{lookup a b}}",
            "{{a.b}}",
            "{{../x}}",
        ] {
            let full = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: \"{src}\"\n"
            );
            let res = Template::parse(&full);
            assert!(
                matches!(res, Err(TemplateError::Unsupported { line: 6, .. })),
                "{src}: {res:?}"
            );
        }
    }

    #[test]
    fn comments_and_escapes_are_supported() {
        let src = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x{{! a comment }}\ndata:\n  a: \"\\{{literal}}\"\n";
        let t = Template::parse(src).expect("valid");
        assert!(t.variables().is_empty());
        let docs = t.render_checked(|_| None).expect("renders");
        assert_eq!(docs[0]["data"]["a"], "{{literal}}");
        assert_eq!(docs[0]["metadata"]["name"], "x");
    }

    #[test]
    fn invalid_templates_and_non_objects_are_reported_with_a_line() {
        let err = Template::parse("a: {{x\n").expect_err("unclosed");
        assert!(
            matches!(err, TemplateError::Syntax { line, .. } if line > 0),
            "{err:?}"
        );
        let err = Template::parse("just a string\n").expect_err("not an object");
        assert!(
            matches!(err, TemplateError::NotAnObject { doc: 1, .. }),
            "{err:?}"
        );
        let err = Template::parse("apiVersion: v1\nkind: [a\n").expect_err("bad yaml");
        assert!(matches!(err, TemplateError::Yaml(_)), "{err:?}");
        let err = Template::parse("# only a comment\n").expect_err("empty");
        assert!(matches!(err, TemplateError::NotAnObject { .. }), "{err:?}");
    }

    #[test]
    fn several_documents_keep_their_count() {
        let src = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b-{{x}}}\n";
        let t = Template::parse(src).expect("valid");
        assert_eq!(t.placeholder_docs().len(), 2);
        let docs = t.render_checked(|_| Some("1")).expect("renders");
        assert_eq!(docs[1]["metadata"]["name"], "b-1");
    }

    #[test]
    fn numbers_must_keep_every_digit() {
        let t = Template::parse(JOB).expect("valid template");
        // Found by fuzzing (fuzz/harness.rs, target `render`): these parse as
        // floats that are not the number written, yet were accepted.
        for value in [
            "99999999999999999999",
            "18446744073709551616",
            "-9223372036854775809",
            "1e-400",
            "1.00000000000000000001",
            "123456789012345678901234567890",
        ] {
            let v = values(&[("PAYLOAD", value)]);
            let res = t.render_checked(|n| v.get(n).map(String::as_str));
            assert!(
                matches!(res, Err(TemplateError::Injection { .. })),
                "{value}: {res:?}"
            );
        }
        for value in [
            "12", "-3", "1.50", "1e3", "1E3", ".5", "5.", "-.5e1", "2.5e-3", "0.0",
        ] {
            let v = values(&[("PAYLOAD", value)]);
            let res = t.render_checked(|n| v.get(n).map(String::as_str));
            assert!(res.is_ok(), "{value}: {res:?}");
        }
    }

    #[test]
    fn plain_scan_agrees_with_handlebars() {
        let plain = [
            JOB,
            "",
            "no variables at all\n",
            "{{a}}",
            "x{{a}}y{{ b }}z{{a}}",
            "{{a-b}} {{_x}} {{A1_b-2}} {{PAYLOAD}}",
            "a: }} {{x}}}} } {",
            "{{x}}}",
            "{{ trueish }} {{nullable}} {{thisone}} {{asx}}",
        ];
        for src in plain {
            let fast = plain_segments(src).unwrap_or_else(|| panic!("{src:?} not plain"));
            let slow = handlebars_segments(src)
                .unwrap_or_else(|e| panic!("{src:?}: handlebars refused it: {e:?}"));
            assert_eq!(fast, slow, "{src:?}");
        }
        let left_to_handlebars = [
            "{{{a}}}",
            "{{! comment }}",
            "{{!-- comment --}}",
            "\\{{a}}",
            "{{~a~}}",
            "{{#if a}}x{{/if}}",
            "{{> p}}",
            "{{a b}}",
            "{{a.b}}",
            "{{../a}}",
            "{{@index}}",
            "{{1}}",
            "{{true}}",
            "{{this}}",
            "{{else}}",
            "{{elsewhere}}",
            "{{as}}",
            "{{a",
            "{{}}",
            "{{\na}}",
        ];
        for src in left_to_handlebars {
            assert!(plain_segments(src).is_none(), "{src:?} taken as plain");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whenever the plain scan accepts a text, handlebars reads the same
        /// segments and variables from it.
        #[test]
        fn plain_scan_never_differs_from_handlebars(src in r#"(\{\{|\}\}|\{\{ | \}\}|a|b_1|x-y|else|true|null|this|as|[\\{}!~#>&@./ \n:"-]){0,24}"#) {
            if let Some(fast) = plain_segments(&src) {
                let slow = handlebars_segments(&src);
                prop_assert!(slow.is_ok(), "{:?}: handlebars refused what the scan accepted: {:?}", src, slow.err());
                prop_assert_eq!(Some(fast), slow.ok(), "{:?}", src);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// Whatever a value holds, a render either keeps the template's
        /// structure exactly or is rejected: never a changed structure.
        #[test]
        fn random_values_never_change_structure(value in prop_oneof!["(?s).{0,40}", "[a-z0-9 :#{}\\[\\],&*!|>'\"\n\t%@`-]{0,30}"], var in prop::sample::select(vec!["team", "tag", "msg", "PAYLOAD", "note", "script"])) {
            let t = Template::parse(JOB).expect("valid template");
            let v = values(&[(var, value.as_str())]);
            if let Ok(docs) = t.render_checked(|n| v.get(n).map(String::as_str)) {
                let base = values(&[]);
                let baseline = t.render_checked(|n| base.get(n).map(String::as_str)).expect("baseline");
                prop_assert!(structure_equal(&baseline, &docs), "structure changed by {:?} in {}", value, var);
                let c = &docs[0]["spec"]["template"]["spec"]["containers"][0];
                prop_assert_eq!(c.as_object().map(|m| m.len()), Some(5));
                prop_assert_eq!(docs[0]["kind"].as_str(), Some("Job"));
                // Accepted values land verbatim where the template put them.
                let (landed, expected) = match var {
                    "team" => (&docs[0]["metadata"]["labels"]["team"], value.clone()),
                    "tag" => (&c["image"], format!("busybox:{value}")),
                    "msg" => (&c["args"][1], value.clone()),
                    "PAYLOAD" => (&c["env"][0]["value"], value.clone()),
                    "note" => (&c["env"][1]["value"], value.clone()),
                    _ => (&c["command"][2], format!("echo {value}\n")),
                };
                prop_assert!(reads_as(landed, &expected), "{:?} landed as {:?}", expected, landed);
            }
        }
    }

    /// What an outcome of parsing means to a user: YAML error messages name
    /// the target type, so only their kind is compared.
    fn outcome(r: Result<(), TemplateError>) -> String {
        match r {
            Ok(()) => "ok".into(),
            Err(TemplateError::Yaml(_)) => "yaml error".into(),
            Err(e) => e.to_string(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// The sync's check (no documents built) accepts exactly what a
        /// publish's parse accepts, with the same problem.
        #[test]
        fn checking_agrees_with_parsing(
            head in prop::sample::select(vec!["", "apiVersion: v1\nkind: K\n", "apiVersion: v1\nkind: K\nmetadata:\n  name: n\n"]),
            body in r#"(apiVersion|kind|metadata|name|x|1|1.5|true|null|~|: |:|- |---\n|\n|  |\[|\]|\{|\}|,|"|'|&a |\*a|!t |!!str |<<: |\? |# c|\|\n|>\n){0,24}"#,
        ) {
            let src = format!("{head}{body}");
            let parsed = outcome(parse_documents(&src).map(|_| ()));
            let checked = outcome(check_documents(&src));
            prop_assert_eq!(parsed, checked, "{:?}", src);
        }
    }

    #[test]
    fn checking_agrees_with_parsing_on_objects_and_non_objects() {
        for src in [
            JOB,
            "",
            "---\n",
            "a: 1",
            "- a",
            "apiVersion: 1\nkind: K\nmetadata: {}",
            "apiVersion: v1\nkind: [K]\nmetadata: {}",
            "apiVersion: v1\nkind: K\nmetadata: x",
            "apiVersion: v1\nkind: K\nmetadata: {}\n---\n- a",
            "apiVersion: v1\nkind: K\nmetadata: &m {a: 1}\n---\napiVersion: v1\nkind: K\nmetadata: *m",
            "apiVersion: v1\napiVersion: 2\nkind: K\nmetadata: {}",
            "? [a]\n: b",
            "1: x\napiVersion: v1\nkind: K\nmetadata: {}",
        ] {
            assert_eq!(
                outcome(parse_documents(src).map(|_| ())),
                outcome(check_documents(src)),
                "{src:?}"
            );
        }
    }

    /// Structural equality ignoring scalar values: same keys, same lengths.
    fn structure_equal(a: &[Value], b: &[Value]) -> bool {
        fn eq(a: &Value, b: &Value) -> bool {
            match (a, b) {
                (Value::Object(x), Value::Object(y)) => {
                    x.len() == y.len()
                        && x.iter()
                            .zip(y)
                            .all(|((ka, va), (kb, vb))| ka == kb && eq(va, vb))
                }
                (Value::Array(x), Value::Array(y)) => {
                    x.len() == y.len() && x.iter().zip(y).all(|(p, q)| eq(p, q))
                }
                (Value::Array(_) | Value::Object(_), _)
                | (_, Value::Array(_) | Value::Object(_)) => false,
                _ => true,
            }
        }
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| eq(x, y))
    }
}
