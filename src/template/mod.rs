//! Manifest templates: parsing `{{NAME}}` substitutions, strict rendering, and
//! the structure check that makes injection through a value impossible.
//!
//! Templates are parsed with handlebars (so `{{NAME}}`, `{{{NAME}}}`, `{{!
//! comments}}`, `\{{` escapes and `{{~ … ~}}` whitespace control behave as
//! users of the Python gitfaas' mustache templates expect), but only plain
//! substitutions are accepted: no helpers, blocks or partials. That keeps a
//! rendered manifest a pure function of its variables, which the structure
//! check relies on. A template made only of text and `{{NAME}}` (most of
//! them) is split by a plain scan that gives the same result as handlebars
//! without its parser's cost; anything else goes through handlebars.
//!
//! Values are data, never syntax: rendering concatenates literal text and
//! each value encoded for the YAML context of its placeholder (there is no
//! HTML escaping). The context (double-quoted, single-quoted, literal or
//! folded block, plain, or a mapping key) is found once, when the template is
//! parsed, from the YAML events of the placeholder render (`YamlContext`). In
//! double quotes every value is carried, by escapes; a multi-line
//! double-quoted scalar is rewritten on one line then, so that no value meets
//! a line fold, which trims spaces. Single quotes and block scalars have no
//! escapes: a value they cannot hold verbatim is refused, with the fix
//! ([`TemplateError::Unencodable`]). Plain scalars and keys take the value
//! raw, and the structure check decides.
//!
//! The structure check: every template is rendered once at sync time with
//! inert placeholder values and parsed to validate it, without building the
//! documents ([`check_documents`]; they are built and kept on first use,
//! `Template::placeholder_docs`); a
//! publish renders it with the real values, parses that, and requires the same
//! shape — the same documents, the same keys, the same sequence lengths, every
//! literal scalar unchanged, and every scalar that held a placeholder still a
//! scalar. A value that adds a key, a document or a list item, opens a flow
//! mapping or an alias, is rejected whatever characters it used. The check
//! compares with the raw values, not the encoded ones, so it also proves
//! the encoding: a value that does not read back as itself is refused.
//!
//! This module does not give the built-in variables their values (see
//! `publish`) nor know what may be applied (see `policy`); it lists their
//! names ([`RESERVED`]), which the catalog checks a schedule's parameters
//! against and a publish its query parameters.
//!
//! # Layout
//! - `syntax`: the template text to segments (plain scan or handlebars).
//! - `yaml`: the YAML context of each placeholder, from the parser's events,
//!   and multi-line double-quoted scalars rewritten on one line.
//! - `encode`: a value written for the context of its placeholder.
//! - `documents`: YAML text to Kubernetes objects, built or only checked.
//! - `check`: the structure (injection) check of a real render.

/// Built-in variables: gitfaas sets them (a publish, each its own value);
/// no query parameter or schedule parameter may name them.
pub const RESERVED: &[&str] = &[
    "PAYLOAD",
    "MESSAGE",
    "FUNCTION_UID",
    "REQUEST_UID",
    "REQUEST_UUID",
    "RANDOM",
    "TOPIC",
    "GITFAAS_URL",
    "PAYLOAD_SECRET",
    "TRACEPARENT",
    "SCHEDULED_TIME",
    // A CloudEvent's attributes (`crate::cloudevent::VARIABLES`).
    "CE_ID",
    "CE_SOURCE",
    "CE_TYPE",
    "CE_SUBJECT",
    "CE_TIME",
];

/// The built-in variable a schedule's tick sets, and only it: the tick's
/// time, RFC 3339 in UTC (`2026-03-29T01:00:00Z`).
pub const SCHEDULED_TIME: &str = "SCHEDULED_TIME";

mod check;
mod documents;
mod encode;
mod substitute;
mod syntax;
#[cfg(test)]
mod tests;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::Value;

use check::same_shape_docs;
pub use documents::{check_documents, parse_documents};
use encode::YamlContext;
use substitute::Substitutable;
use syntax::{handlebars_segments, plain_segments, Segment};
pub use syntax::{is_body_path, is_variable_name, BODY_PREFIX, MAX_BODY_PATH};
use yaml::{contexts_of, unfolded, Placed, Unfold};

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
    /// A value holds what the YAML context of its placeholder cannot carry
    /// verbatim (single quotes and block scalars have no escapes).
    #[error("the value of `{name}` cannot be carried in {context}: {reason}; {fix}")]
    Unencodable {
        /// The variable.
        name: String,
        /// Where its placeholder is, e.g. `a single-quoted scalar`.
        context: &'static str,
        /// What in the value that context cannot hold.
        reason: String,
        /// How to write the template so that it can.
        fix: String,
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

/// A parsed template: literal text and variable substitutions, plus the
/// documents it renders to with placeholders (the shape a real render must keep).
#[derive(Debug)]
pub struct Template {
    /// As parsed: what placeholder renders concatenate.
    segments: Vec<Segment>,
    variables: BTreeSet<String>,
    /// What real values are rendered with: found on first use (an event
    /// parse of the placeholder render), not at sync, where thousands of
    /// templates are parsed and few are ever published.
    encoded: OnceLock<Encoded>,
    /// Parsed at sync to validate, then dropped; parsed again on first use
    /// and kept. Parsed documents take about ten times the memory of their
    /// text, and a repository of thousands of manifests publishes few of them.
    placeholder_docs: OnceLock<Vec<Value>>,
    /// Whether real renders can be built from the placeholder documents
    /// without a parse (see `substitute`): found on first use.
    substitutable: OnceLock<Option<Substitutable>>,
}

/// The segments a real render uses and the YAML context of each one's
/// placeholder, by index (a literal's entry is unused; empty when the
/// template has no variable, and every value is then raw). The segments are
/// the parsed ones, but with multi-line double-quoted scalars that hold a
/// placeholder written on one line (see [`Template::unfold`]).
#[derive(Debug)]
struct Encoded {
    segments: Vec<Segment>,
    contexts: Vec<YamlContext>,
}

/// Concatenates `segments`, each variable's value encoded for its context.
fn render_segments<'a>(
    segments: &[Segment],
    contexts: &[YamlContext],
    lookup: impl Fn(&str) -> Option<&'a str>,
) -> Result<String, TemplateError> {
    let mut out = String::new();
    for (i, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Literal(text) => out.push_str(text),
            Segment::Var(name) => {
                let value = lookup(name).unwrap_or_default();
                let context = contexts.get(i).unwrap_or(&YamlContext::Plain);
                context.encode(&mut out, name, value)?;
            }
        }
    }
    Ok(out)
}

impl Template {
    /// Parses `source` and validates that it renders, with placeholder values, to
    /// one or more YAML documents that are each a Kubernetes object.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let template = Self::unchecked(source)?;
        // Validate now without building the documents (see `placeholder_docs`).
        check_documents(&template.render_placeholders()?)?;
        Ok(template)
    }

    /// `source` split into its segments and variables, its caches empty;
    /// what it renders is not checked yet (the two parses check it).
    fn unchecked(source: &str) -> Result<Self, TemplateError> {
        let (segments, variables) = match plain_segments(source) {
            Some(found) => found,
            None => handlebars_segments(source)?,
        };
        Ok(Template {
            segments,
            variables,
            encoded: OnceLock::new(),
            placeholder_docs: OnceLock::new(),
            substitutable: OnceLock::new(),
        })
    }

    /// What the template is, without the caches built on first use: two
    /// templates parsed from the same text have the same outline (the
    /// catalog's property test compares reused templates with fresh ones).
    #[cfg(test)]
    pub(crate) fn outline(&self) -> String {
        format!("{:?} {:?}", self.segments, self.variables)
    }

    /// As [`parse`](Self::parse), for a lint that renders the template next
    /// (`gitfaas validate`): the parse that validates it also builds the
    /// placeholder documents a render checks against, instead of a second
    /// parse of the same text on first use. The same templates are accepted
    /// with the same errors: when the documents do not build, the check
    /// `parse` makes decides.
    pub fn parse_keeping_documents(source: &str) -> Result<Self, TemplateError> {
        let template = Self::unchecked(source)?;
        let text = template.render_placeholders()?;
        match parse_documents(&text) {
            Ok(docs) => {
                let _ = template.placeholder_docs.set(docs);
            }
            Err(_) => check_documents(&text)?,
        }
        Ok(template)
    }

    /// The placeholder render: the parsed segments, raw (placeholders are
    /// letters and digits, so no context changes them).
    fn render_placeholders(&self) -> Result<String, TemplateError> {
        let placeholders = self.placeholder_values();
        render_segments(&self.segments, &[], |name| {
            placeholders.get(name).map(String::as_str)
        })
    }

    /// The segments and contexts real values are rendered with.
    fn encoded(&self) -> &Encoded {
        self.encoded.get_or_init(|| {
            let mut encoded = Encoded {
                segments: self.segments.clone(),
                contexts: Vec::new(),
            };
            if self.variables.is_empty() {
                return encoded;
            }
            // `parse` rendered this text and validated it; were it to fail
            // now, every value would be raw and the structure check decides.
            if let Ok(text) = self.render_placeholders() {
                let placeholders = self.placeholder_values();
                self.find_contexts(&mut encoded, &text, &placeholders);
            }
            encoded
        })
    }

    /// Sets the context of every placeholder from `text`, the placeholder
    /// render (renders are concatenations, so each one's byte range is
    /// known), and writes multi-line double-quoted scalars that hold one on
    /// a single line.
    fn find_contexts(
        &self,
        encoded: &mut Encoded,
        text: &str,
        placeholders: &BTreeMap<String, String>,
    ) {
        let mut at = Vec::with_capacity(self.segments.len());
        let mut offset = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            let len = match segment {
                Segment::Literal(text) => text.len(),
                Segment::Var(name) => {
                    let len = placeholders.get(name).map_or(0, String::len);
                    at.push(Placed {
                        segment: i,
                        start: offset,
                        end: offset + len,
                    });
                    len
                }
            };
            offset += len;
        }
        let found = contexts_of(text, &at);
        let mut contexts = vec![YamlContext::Plain; self.segments.len()];
        for (segment, context) in found.contexts {
            if let Some(slot) = contexts.get_mut(segment) {
                *slot = context;
            }
        }
        encoded.contexts = contexts;
        if !found.unfold.is_empty() {
            Self::unfold(encoded, text, placeholders, &found.unfold);
        }
    }

    /// Rewrites each scalar of `unfold` on one line, its folds resolved and
    /// its text escaped around its placeholders: where a double-quoted
    /// scalar spans lines, YAML trims the spaces at each line break and
    /// turns breaks into spaces, so a value with spaces at an end, or an
    /// empty one, would read otherwise; on one line every value reads as
    /// itself. Kept only if the placeholder render still reads the same.
    fn unfold(
        encoded: &mut Encoded,
        text: &str,
        placeholders: &BTreeMap<String, String>,
        unfold: &[Unfold],
    ) {
        let Some((segments, contexts)) =
            unfolded(&encoded.segments, &encoded.contexts, placeholders, unfold)
        else {
            return;
        };
        let rendered = render_segments(&segments, &contexts, |name| {
            placeholders.get(name).map(String::as_str)
        });
        let same = match (rendered, parse_documents(text)) {
            (Ok(new), Ok(old)) => parse_documents(&new).is_ok_and(|new| new == old),
            _ => false,
        };
        if same {
            encoded.segments = segments;
            encoded.contexts = contexts;
        }
    }

    fn render_placeholder_docs(&self) -> Result<Vec<Value>, TemplateError> {
        parse_documents(&self.render_placeholders()?)
    }

    /// Whether real renders can skip the parse, found on first use.
    fn substitutable(&self) -> Option<&Substitutable> {
        self.substitutable
            .get_or_init(|| {
                let encoded = self.encoded();
                Substitutable::of(
                    &encoded.segments,
                    &encoded.contexts,
                    self.placeholder_docs(),
                    self.variables.len(),
                    |name| self.variables.iter().position(|v| v == name),
                )
            })
            .as_ref()
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

    /// Renders, looking each variable up with `lookup` and encoding its value
    /// for the context of its placeholder; the error names every variable
    /// without a value, not only the first.
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
        let encoded = self.encoded();
        render_segments(&encoded.segments, &encoded.contexts, lookup)
    }

    /// Renders with real values, parses, and checks the result has the shape of
    /// the placeholder render, every value read back as itself (compared with
    /// the raw values, so the check also proves their encoding). Returns the
    /// documents.
    ///
    /// Values that cannot change how YAML reads the text around them are
    /// put into the placeholder documents instead, which is what that parse
    /// and check would give, without either (see `substitute`).
    pub fn render_checked<'a>(
        &self,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Vec<Value>, TemplateError> {
        let given: Option<Vec<&str>> = self.variables.iter().map(|v| lookup(v)).collect();
        if let (Some(values), Some(substitutable)) = (given, self.substitutable()) {
            if substitutable.takes(&values) {
                if let Some(docs) = substitutable.render(self.placeholder_docs(), &values) {
                    return Ok(docs);
                }
            }
        }
        self.render_parsed(lookup)
    }

    /// What [`render_checked`](Self::render_checked) does for any value:
    /// render the text, parse it, check its shape.
    fn render_parsed<'a>(
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

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
