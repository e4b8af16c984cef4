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
//! parsed, from the YAML events of the placeholder render (`Context`). In
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
//! This module does not know which variables exist (see `publish`) nor what
//! may be applied (see `policy`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use granit_parser::{Event, Parser, ScalarStyle};
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
}

/// The segments a real render uses and the YAML context of each one's
/// placeholder, by index (a literal's entry is unused; empty when the
/// template has no variable, and every value is then raw). The segments are
/// the parsed ones, but with multi-line double-quoted scalars that hold a
/// placeholder written on one line (see [`Template::unfold`]).
#[derive(Debug)]
struct Encoded {
    segments: Vec<Segment>,
    contexts: Vec<Context>,
}

/// Concatenates `segments`, each variable's value encoded for its context.
fn render_segments<'a>(
    segments: &[Segment],
    contexts: &[Context],
    lookup: impl Fn(&str) -> Option<&'a str>,
) -> Result<String, TemplateError> {
    let mut out = String::new();
    for (i, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Literal(text) => out.push_str(text),
            Segment::Var(name) => {
                let value = lookup(name).unwrap_or_default();
                let context = contexts.get(i).unwrap_or(&Context::Plain);
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
        let (segments, variables) = match plain_segments(source) {
            Some(found) => found,
            None => handlebars_segments(source)?,
        };
        let template = Template {
            segments,
            variables,
            encoded: OnceLock::new(),
            placeholder_docs: OnceLock::new(),
        };
        // Validate now without building the documents (see `placeholder_docs`).
        check_documents(&template.render_placeholders()?)?;
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
        let mut contexts = vec![Context::Plain; self.segments.len()];
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

/// The YAML context a placeholder is in, which decides how a value is
/// written there so that YAML reads it back as exactly the value.
#[derive(Debug, Clone, PartialEq)]
enum Context {
    /// A plain scalar, or anything not classified (a comment, a tag, an
    /// anchor): the value raw; the structure check refuses what YAML reads
    /// otherwise.
    Plain,
    /// A mapping key (whatever its style): raw, as plain.
    Key,
    /// `"…"`: every character can be written, by escapes. (A multi-line
    /// one is written on one line at parse, see `Template::unfold`.)
    DoubleQuoted,
    /// `'…'`: only `'` can be escaped (`''`).
    SingleQuoted,
    /// `|`: text verbatim; a line break in the value continues the block
    /// with `indent`, the indentation of its content lines.
    Literal { indent: Box<str> },
    /// `>`: text verbatim on one line; line breaks are folded.
    Folded,
}

/// Where a placeholder is in the placeholder render.
struct Placed {
    segment: usize,
    start: usize,
    end: usize,
}

/// An open collection while reading events: whether its next node is a key.
struct Open {
    mapping: bool,
    key_next: bool,
    /// The collection is (inside) a mapping key.
    in_key: bool,
}

/// What the events of the placeholder render say about its placeholders.
struct Found {
    /// The context of each placeholder found in a scalar, by segment.
    contexts: Vec<(usize, Context)>,
    /// The multi-line double-quoted scalars that hold placeholders.
    unfold: Vec<Unfold>,
}

/// A multi-line double-quoted scalar to write on one line.
struct Unfold {
    /// Its byte range in the placeholder render, quotes included.
    start: usize,
    end: usize,
    /// Its text as YAML reads it, split at its placeholders: one piece more
    /// than it has placeholders.
    pieces: Vec<String>,
}

/// The context of each placeholder of `at` (in text order) in `text`, by the
/// events of serde-saphyr's parser: the scalar whose span holds it. One pass;
/// a placeholder outside every scalar, or not found, is left out (plain).
fn contexts_of(text: &str, at: &[Placed]) -> Found {
    let mut found = Found {
        contexts: Vec::with_capacity(at.len()),
        unfold: Vec::new(),
    };
    let mut next = 0;
    let mut open: Vec<Open> = Vec::new();
    let is_key = |open: &[Open]| {
        open.last()
            .is_some_and(|o| o.in_key || (o.mapping && o.key_next))
    };
    let done = |open: &mut [Open]| {
        if let Some(o) = open.last_mut() {
            o.key_next = o.mapping && !o.key_next;
        }
    };
    let options = granit_parser::options! { emit_comments: false };
    for event in Parser::new_from_str_with_options(text, options) {
        // `Template::parse` checked this text with the same parser; were it
        // to fail here, the placeholders left are plain.
        let Ok((event, span)) = event else { break };
        match event {
            Event::Scalar(value, style, _, _) => {
                let key = is_key(&open);
                done(&mut open);
                let (Some(start), Some(end)) = (span.start.byte_offset(), span.end.byte_offset())
                else {
                    continue;
                };
                // Placeholders before this scalar are in none (a comment, a tag).
                while at.get(next).is_some_and(|p| p.start < start) {
                    next += 1;
                }
                let first = next;
                while let Some(p) = at.get(next).filter(|p| p.end <= end) {
                    let context = match style {
                        _ if key => Some(Context::Key),
                        ScalarStyle::Plain => Some(Context::Plain),
                        ScalarStyle::DoubleQuoted => Some(Context::DoubleQuoted),
                        ScalarStyle::SingleQuoted => Some(Context::SingleQuoted),
                        ScalarStyle::Literal => block_indent(text, p.start, span.indent)
                            .map(|indent| Context::Literal { indent }),
                        ScalarStyle::Folded => Some(Context::Folded),
                    };
                    if let Some(context) = context {
                        found.contexts.push((p.segment, context));
                    }
                    next += 1;
                }
                let inside = at.get(first..next).unwrap_or_default();
                let multiline = || {
                    text.get(start..end)
                        .is_some_and(|s| s.contains(['\n', '\r']))
                };
                if !key && style == ScalarStyle::DoubleQuoted && !inside.is_empty() && multiline() {
                    if let Some(unfold) = split_at_placeholders(text, &value, inside, start, end) {
                        found.unfold.push(unfold);
                    }
                }
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                let in_key = is_key(&open);
                open.push(Open {
                    mapping: matches!(event, Event::MappingStart(..)),
                    key_next: true,
                    in_key,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                open.pop();
                done(&mut open);
            }
            Event::Alias(_) | Event::UnresolvedAlias(_) => done(&mut open),
            _ => {}
        }
        if next == at.len() {
            break;
        }
    }
    found
}

/// The scalar read as `value`, spanning `start..end` of `text` and holding
/// the placeholders `inside`, as an [`Unfold`]; `None` if its text does not
/// hold exactly those placeholders, in that order (template text that looks
/// like a placeholder), and it is then left as written.
fn split_at_placeholders(
    text: &str,
    value: &str,
    inside: &[Placed],
    start: usize,
    end: usize,
) -> Option<Unfold> {
    let mut pieces = Vec::with_capacity(inside.len() + 1);
    let mut rest = value;
    for p in inside {
        let placeholder = text.get(p.start..p.end)?;
        let (piece, after) = rest.split_once(placeholder)?;
        pieces.push(piece.to_string());
        rest = after;
    }
    pieces.push(rest.to_string());
    if pieces.iter().any(|piece| holds_placeholder(piece)) {
        return None;
    }
    Some(Unfold { start, end, pieces })
}

/// `segments` and their contexts with each scalar of `unfold` (in text
/// order) rewritten on one line: its opening quote, its pieces escaped
/// around its placeholders, its closing quote. `None` if the segments do
/// not cut the text where `unfold` says (and nothing is rewritten).
fn unfolded(
    segments: &[Segment],
    contexts: &[Context],
    placeholders: &BTreeMap<String, String>,
    unfold: &[Unfold],
) -> Option<(Vec<Segment>, Vec<Context>)> {
    fn push_text(out: &mut Vec<Segment>, contexts: &mut Vec<Context>, text: &str) {
        if let Some(Segment::Literal(last)) = out.last_mut() {
            last.push_str(text);
        } else if !text.is_empty() {
            out.push(Segment::Literal(text.to_string()));
            contexts.push(Context::Plain);
        }
    }
    let mut out: Vec<Segment> = Vec::with_capacity(segments.len());
    let mut new_contexts: Vec<Context> = Vec::with_capacity(segments.len());
    let mut scalars = unfold.iter().peekable();
    // Within a scalar being rewritten: the index of its next piece.
    let mut piece: Option<usize> = None;
    let mut offset = 0;
    for (i, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Var(name) => {
                offset += placeholders.get(name).map_or(0, String::len);
                out.push(segment.clone());
                match (&mut piece, scalars.peek()) {
                    (Some(k), Some(u)) => {
                        new_contexts.push(Context::DoubleQuoted);
                        let mut escaped = String::new();
                        double_quoted(&mut escaped, u.pieces.get(*k)?);
                        push_text(&mut out, &mut new_contexts, &escaped);
                        *k += 1;
                    }
                    _ => new_contexts.push(contexts.get(i).cloned().unwrap_or(Context::Plain)),
                }
            }
            Segment::Literal(text) => {
                let (start, end) = (offset, offset + text.len());
                offset = end;
                let mut cursor = start;
                while let Some(u) = scalars.peek() {
                    if piece.is_some() {
                        if u.end > end {
                            break;
                        }
                        // The scalar ends in this text: all its pieces used.
                        if piece != Some(u.pieces.len()) {
                            return None;
                        }
                        push_text(&mut out, &mut new_contexts, "\"");
                        cursor = u.end;
                        piece = None;
                        scalars.next();
                    } else if u.start < end {
                        push_text(
                            &mut out,
                            &mut new_contexts,
                            text.get(cursor - start..u.start.checked_sub(start)?)?,
                        );
                        let mut escaped = String::from("\"");
                        double_quoted(&mut escaped, u.pieces.first()?);
                        push_text(&mut out, &mut new_contexts, &escaped);
                        cursor = u.start;
                        piece = Some(1);
                    } else {
                        break;
                    }
                }
                if piece.is_none() {
                    push_text(&mut out, &mut new_contexts, text.get(cursor - start..)?);
                }
            }
        }
    }
    (piece.is_none() && scalars.peek().is_none()).then_some((out, new_contexts))
}

/// The indentation of a literal block's content lines, as the parser gives
/// it, if the line of the placeholder at `at` starts with it (else the
/// placeholder is left plain).
fn block_indent(text: &str, at: usize, indent: Option<usize>) -> Option<Box<str>> {
    let indent = indent.filter(|n| *n > 0)?;
    let line_start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let lead = text.get(line_start..line_start.checked_add(indent)?)?;
    (line_start + indent <= at && lead.bytes().all(|b| b == b' ')).then(|| lead.into())
}

/// Whether YAML 1.2 accepts `c` in a document only as an escape in double
/// quotes: outside `c-printable` (C0 controls but tab and line breaks, DEL,
/// C1 controls but NEL, U+FFFE, U+FFFF; surrogates cannot be in a `str`).
fn unprintable(c: char) -> bool {
    !matches!(
        u32::from(c),
        0x09 | 0x0A | 0x0D | 0x20..=0x7E | 0x85 | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x1_0000..
    )
}

/// What a character is, for an error message.
fn describe_char(c: char) -> String {
    match c {
        '\n' => "a line break (\\n)".into(),
        '\r' => "a carriage return (\\r)".into(),
        _ => format!("the character U+{:04X}", u32::from(c)),
    }
}

fn double_quote_fix(name: &str) -> String {
    format!("quote the placeholder with double quotes in the manifest: \"{{{{{name}}}}}\"")
}

impl Context {
    /// Appends `value` to `out` written for this context, or refuses a value
    /// the context cannot carry verbatim.
    fn encode(&self, out: &mut String, name: &str, value: &str) -> Result<(), TemplateError> {
        match self {
            Context::Plain | Context::Key => out.push_str(value),
            Context::DoubleQuoted => double_quoted(out, value),
            Context::SingleQuoted => {
                if let Some(c) = value.chars().find(|&c| is_break(c) || unprintable(c)) {
                    let reason = if is_break(c) {
                        format!("it holds {}, which a single-quoted scalar folds into a space (trimming the spaces around it)", describe_char(c))
                    } else {
                        format!("it holds {}, which YAML only accepts escaped, and single quotes have no escapes", describe_char(c))
                    };
                    return Err(TemplateError::Unencodable {
                        name: name.into(),
                        context: "a single-quoted scalar",
                        reason,
                        fix: double_quote_fix(name),
                    });
                }
                // NEL, U+2028, U+2029 and the BOM stay raw: YAML 1.2 reads
                // them as text in quotes (serde-saphyr keeps them verbatim).
                for (i, part) in value.split('\'').enumerate() {
                    if i > 0 {
                        out.push_str("''");
                    }
                    out.push_str(part);
                }
            }
            Context::Literal { indent } => {
                if let Some(c) = value.chars().find(|&c| c == '\r' || unprintable(c)) {
                    let reason = if c == '\r' {
                        format!(
                            "it holds {}, which a literal block scalar reads as a line feed",
                            describe_char(c)
                        )
                    } else {
                        format!("it holds {}, which YAML only accepts escaped, and block scalars have no escapes", describe_char(c))
                    };
                    return Err(TemplateError::Unencodable {
                        name: name.into(),
                        context: "a literal block scalar (|)",
                        reason,
                        fix: double_quote_fix(name),
                    });
                }
                for (i, line) in value.split('\n').enumerate() {
                    if i > 0 {
                        out.push('\n');
                        out.push_str(indent);
                    }
                    out.push_str(line);
                }
            }
            Context::Folded => {
                if let Some(c) = value.chars().find(|&c| is_break(c) || unprintable(c)) {
                    let (reason, fix) = if is_break(c) {
                        (
                            format!("it holds {}, which a folded block scalar folds into a space", describe_char(c)),
                            format!("write the block as a literal one (|), which keeps line breaks, or {}", double_quote_fix(name)),
                        )
                    } else {
                        (
                            format!("it holds {}, which YAML only accepts escaped, and block scalars have no escapes", describe_char(c)),
                            double_quote_fix(name),
                        )
                    };
                    return Err(TemplateError::Unencodable {
                        name: name.into(),
                        context: "a folded block scalar (>)",
                        reason,
                        fix,
                    });
                }
                out.push_str(value);
            }
        }
        Ok(())
    }
}

fn is_break(c: char) -> bool {
    c == '\n' || c == '\r'
}

/// Writes `value` inside double quotes, escaping what YAML would read as
/// syntax (`\\`, `"`), fold (line breaks, and tabs, which YAML trims at a
/// fold) or cannot hold raw; the YAML 1.1 line breaks (NEL, U+2028, U+2029)
/// and the BOM are escaped too, for consumers that still read them so.
fn double_quoted(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            '\u{FEFF}' => out.push_str("\\uFEFF"),
            c if unprintable(c) && u32::from(c) <= 0xFF => {
                out.push_str(&format!("\\x{:02X}", u32::from(c)));
            }
            c if unprintable(c) => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
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
        // Plain scalars take values raw: the structure check refuses these.
        // (In quotes and blocks they are data: see the next test.)
        let cases: &[(&str, &str, &str)] = &[
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
            ("alias", "PAYLOAD", "*x"),
            ("anchor", "PAYLOAD", "&a x"),
            ("tag", "PAYLOAD", "!!binary eA=="),
            ("comment without newline", "tag", "1 # note"),
            ("trailing space in a plain scalar", "tag", "1 "),
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
    fn values_that_broke_out_of_quotes_and_blocks_are_now_data() {
        let t = Template::parse(JOB).expect("valid template");
        let base = values(&[]);
        let baseline = t
            .render_checked(|n| base.get(n).map(String::as_str))
            .expect("baseline");
        // Each was refused as an injection while values were inserted raw;
        // encoded for their context, they land verbatim and change nothing.
        let cases: &[(&str, &str, &str)] = &[
            (
                "newline and quote in double quotes",
                "team",
                "x\"\n    admin: \"true",
            ),
            ("escape in double quotes", "msg", "a\\nb"),
            ("double quote closes the string", "msg", "a\", \"b"),
            ("single quote closes the string", "note", "a', 'b: c"),
            (
                "document separator in a literal block",
                "script",
                "x\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}",
            ),
            (
                "more-indented line in a literal block",
                "script",
                "a\n              b",
            ),
            (
                "dedent in a literal block",
                "script",
                "x\n          extra: 1",
            ),
        ];
        for (what, var, value) in cases {
            let v = values(&[(var, value)]);
            let docs = t
                .render_checked(|n| v.get(n).map(String::as_str))
                .unwrap_or_else(|e| panic!("{what}: {value:?} for {var} refused: {e}"));
            assert!(
                structure_equal(&baseline, &docs),
                "{what}: structure changed"
            );
            let c = &docs[0]["spec"]["template"]["spec"]["containers"][0];
            let (landed, expected) = match *var {
                "team" => (&docs[0]["metadata"]["labels"]["team"], value.to_string()),
                "msg" => (&c["args"][1], value.to_string()),
                "note" => (&c["env"][1]["value"], value.to_string()),
                _ => (&c["command"][2], format!("echo {value}\n")),
            };
            assert_eq!(landed.as_str(), Some(expected.as_str()), "{what}");
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

    /// A ConfigMap whose top-level `value` is written by `field`.
    fn config_map(field: &str) -> String {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n{field}")
    }

    /// The context found for the placeholder of variable `name`.
    fn context_of<'t>(t: &'t Template, name: &str) -> &'t Context {
        let encoded = t.encoded();
        let at = encoded
            .segments
            .iter()
            .position(|s| *s == Segment::Var(name.into()))
            .unwrap_or_else(|| panic!("no {name}"));
        &encoded.contexts[at]
    }

    #[test]
    fn each_placeholder_gets_the_context_of_its_scalar() {
        let src = concat!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n",
            "  name: \"n-{{a}}\"\n",
            "  labels:\n    {{k}}: '{{b}}'\n    \"q-{{kq}}\": x\n",
            "data:\n",
            "  lit: |\n    first {{c}}\n      deeper {{d}}\n",
            "  folded: >-\n    {{e}}\n",
            "  plain: x-{{f}}\n",
            "  multi: \"one {{g}}\n    two\"\n",
            "  flow: [{{h}}, \"{{i}}\", { {{j}}: '{{l}}'}]\n",
            "  # a comment {{m}}\n",
            "  tagged: !!str {{n}}\n",
            "  explicit: |2\n      {{o}}\n",
        );
        let t = Template::parse(src).expect("valid");
        let lit = |n: usize| Context::Literal {
            indent: " ".repeat(n).into(),
        };
        for (name, want) in [
            ("a", Context::DoubleQuoted),
            ("k", Context::Key),
            ("kq", Context::Key),
            ("b", Context::SingleQuoted),
            ("c", lit(4)),
            ("d", lit(4)),
            ("e", Context::Folded),
            ("f", Context::Plain),
            ("g", Context::DoubleQuoted),
            ("h", Context::Plain),
            ("i", Context::DoubleQuoted),
            ("j", Context::Key),
            ("l", Context::SingleQuoted),
            ("m", Context::Plain),
            ("n", Context::Plain),
            // `|2` under a key at column 2: content at column 4, whatever
            // the line's own indentation.
            ("o", lit(4)),
        ] {
            assert_eq!(context_of(&t, name), &want, "{name}");
        }
        let none = Template::parse(&config_map("value: x\n")).expect("valid");
        assert!(none.encoded().contexts.is_empty());
    }

    /// Every template of [`values_are_carried_or_refused_per_context`]: what
    /// it is, the `value` field, and the text around the value in the
    /// parsed string.
    const CONTEXTS: [(&str, &str, &str, &str); 11] = [
        ("double-quoted", "value: \"{{v}}\"\n", "", ""),
        (
            "double-quoted mid",
            "value: \"pre-{{v}}-post\"\n",
            "pre-",
            "-post",
        ),
        ("single-quoted", "value: '{{v}}'\n", "", ""),
        (
            "single-quoted mid",
            "value: 'pre-{{v}}-post'\n",
            "pre-",
            "-post",
        ),
        ("literal", "value: |\n  {{v}}\n", "", "\n"),
        (
            "literal with text",
            "value: |\n  first\n  {{v}} tail\n",
            "first\n",
            " tail\n",
        ),
        (
            "literal mid",
            "value: |\n  pre-{{v}}-post\n",
            "pre-",
            "-post\n",
        ),
        ("folded", "value: >\n  {{v}}\n", "", "\n"),
        (
            "folded mid",
            "value: >\n  pre-{{v}}-post\n",
            "pre-",
            "-post\n",
        ),
        ("plain", "value: {{v}}\n", "", ""),
        ("plain mid", "value: pre-{{v}}-post\n", "pre-", "-post"),
    ];

    #[test]
    fn values_are_carried_or_refused_per_context() {
        let long = "long-".repeat(800);
        // One letter per template of CONTEXTS, in order: `c` carried verbatim,
        // `u` refused as unencodable (with the fix), `i` refused by the
        // structure check. The two double-quoted columns are all `c`.
        let cases: &[(&str, &str)] = &[
            ("He said \"hi\"", "ccccccccccc"),
            ("back\\slash", "ccccccccccc"),
            ("a\nb", "ccuucccuuii"),
            ("crlf\r\nx", "ccuuuuuuuii"),
            ("tab\tx", "ccccccccccc"),
            // `#` starts a comment only after a space.
            ("# not a comment", "cccccccccic"),
            ("key: value", "cccccccccii"),
            ("---", "ccccccccccc"),
            ("{{", "cccccccccic"),
            ("a&b\"c<d>", "ccccccccccc"),
            ("x\u{85}y", "ccccccccccc"),
            ("a\u{85}\u{85}b", "ccccccccccc"),
            ("\u{2028}", "ccccccccccc"),
            ("\u{2029}", "ccccccccccc"),
            ("😀", "ccccccccccc"),
            (long.as_str(), "ccccccccccc"),
            ("'quoted'", "cccccccccic"),
            // Leading spaces on a block's first line are taken for its
            // indentation; a plain scalar is trimmed.
            ("  pad  ", "cccciccicic"),
            // Alone in a block, an empty value leaves the block empty.
            ("", "ccccicciccc"),
            // A trailing line break is chomped by `|` at the end of a block.
            ("multi\nline\n", "ccuuiccuuii"),
            ("a\n  b", "ccuucccuuii"),
            ("bell\u{7}", "ccuuuuuuuii"),
            // Plain: YAML refuses a BOM at the start of a scalar.
            ("\u{FEFF}bom", "cccccccccic"),
            ("nonchar\u{FFFE}", "ccuuuuuuuii"),
        ];
        let mut wrong = Vec::new();
        for (value, outcomes) in cases {
            assert_eq!(outcomes.len(), CONTEXTS.len(), "{value:?}");
            for ((what, field, pre, post), outcome) in CONTEXTS.iter().zip(outcomes.chars()) {
                let t = Template::parse(&config_map(field)).expect("valid");
                let res = t.render_checked(|_| Some(value));
                let want = format!("{pre}{value}{post}");
                let got = match &res {
                    Ok(docs)
                        if docs.len() == 1 && docs[0].as_object().map(|m| m.len()) == Some(4) =>
                    {
                        // An empty plain scalar is null, which reads as "".
                        let landed = &docs[0]["value"];
                        if landed.as_str() == Some(want.as_str())
                            || (landed.is_null() && want.is_empty())
                        {
                            'c'
                        } else {
                            '!'
                        }
                    }
                    Ok(_) => '!',
                    Err(TemplateError::Unencodable { name, .. }) if name == "v" => 'u',
                    Err(TemplateError::Injection { .. }) => 'i',
                    Err(_) => '?',
                };
                if got != outcome {
                    wrong.push(format!(
                        "{value:?} in {what}: {got}, want {outcome}: {res:?}"
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn refusals_say_which_variable_why_and_the_fix() {
        let cases = [
            (
                "value: '{{who}}'\n",
                "a\nb",
                ["`who`", "single-quoted", "line break", "\"{{who}}\""],
            ),
            (
                "value: '{{who}}'\n",
                "a\u{1}",
                ["`who`", "single-quoted", "U+0001", "\"{{who}}\""],
            ),
            (
                "value: |\n  {{who}}\n",
                "a\r\nb",
                ["`who`", "literal block", "carriage return", "\"{{who}}\""],
            ),
            (
                "value: >\n  {{who}}\n",
                "a\nb",
                ["`who`", "folded block", "literal one (|)", "\"{{who}}\""],
            ),
        ];
        for (field, value, needles) in cases {
            let t = Template::parse(&config_map(field)).expect("valid");
            let err = t.render_checked(|_| Some(value)).expect_err("refused");
            let msg = err.to_string();
            for needle in needles {
                assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn crlf_templates_carry_values_too() {
        let src =
            config_map("value: |\n  first\n  {{v}}\nquoted: \"{{v}}\"\n").replace('\n', "\r\n");
        let t = Template::parse(&src).expect("valid");
        let docs = t.render_checked(|_| Some("a\n  b\tc")).expect("carried");
        assert_eq!(docs[0]["value"], "first\na\n  b\tc\n");
        assert_eq!(docs[0]["quoted"], "a\n  b\tc");
    }

    #[test]
    fn placeholders_render_raw_to_the_placeholder_documents() {
        let src = config_map("a: \"{{a}}\"\nb: '{{b}}'\nc: |\n  {{c}}\nd: >\n  {{d}}\ne: {{e}}\n\"{{f}}\": x\ng: \"x {{g}}\n  y\"\n");
        let t = Template::parse(&src).expect("valid");
        let placeholders = t.placeholder_values();
        let raw: String = t
            .encoded()
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => text.as_str(),
                Segment::Var(name) => placeholders[name].as_str(),
            })
            .collect();
        assert_eq!(t.render(&placeholders).expect("renders"), raw);
        let docs = t
            .render_checked(|n| placeholders.get(n).map(String::as_str))
            .expect("renders");
        assert_eq!(docs, t.placeholder_docs());
        assert_eq!(docs[0]["c"], format!("{}\n", placeholders["c"]));
    }

    /// Double-quoted placeholders of every shape: (field, text before, between
    /// and after the two occurrences of the value).
    const DOUBLE_QUOTED: [(&str, &str, &str, &str); 5] = [
        ("value: \"{{v}}\"\nother: \"{{v}}\"\n", "", "", ""),
        ("value: \"pre-{{v}}-{{v}}-post\"\n", "pre-", "-", "-post"),
        // Folded: the line break between the two is one space; spaces at a
        // value's ends meet the fold and must survive it.
        ("value: \"one {{v}}\n  {{v}} two\"\n", "one ", " ", " two"),
        // An escaped line break joins the lines without a space.
        ("value: \"one {{v}}\\\n  {{v}} two\"\n", "one ", "", " two"),
        ("value: [\"{{v}}\", {k: \"<{{v}}>\"}]\n", "", "", ""),
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]
        /// Any string is carried byte for byte by a double-quoted
        /// placeholder: no value is refused there.
        #[test]
        fn any_string_is_carried_by_double_quotes(
            value in prop_oneof![
                any::<String>(),
                "[\\\\\"'\t\n\r \\x00-\\x1f\\x7f-\\x9f\u{85}\u{2028}\u{2029}\u{feff}\u{fffe}\u{ffff}a#:{}&*!|>%@`-]{0,24}",
            ],
            shape in 0..DOUBLE_QUOTED.len(),
        ) {
            let (field, pre, mid, post) = DOUBLE_QUOTED[shape];
            let t = Template::parse(&config_map(field)).expect("valid");
            let docs = t.render_checked(|_| Some(value.as_str()));
            prop_assert!(docs.is_ok(), "{:?} in {:?}: {:?}", value, field, docs.err().map(|e| e.to_string()));
            let docs = docs.unwrap_or_default();
            let landed = match shape {
                0 => vec![(&docs[0]["value"], pre.to_string() + &value), (&docs[0]["other"], value.clone())],
                4 => vec![(&docs[0]["value"][0], value.clone()), (&docs[0]["value"][1]["k"], format!("<{value}>"))],
                _ => vec![(&docs[0]["value"], format!("{pre}{value}{mid}{value}{post}"))],
            };
            for (got, want) in landed {
                prop_assert_eq!(got.as_str(), Some(want.as_str()), "in {:?}", field);
            }
        }

        /// A single-quoted placeholder carries exactly the values without a
        /// line break or a character YAML only takes escaped, and refuses
        /// the others by name.
        #[test]
        fn single_quotes_carry_all_they_can_and_refuse_the_rest(
            value in prop_oneof![
                any::<String>(),
                "['\"\\\\\t\n\r \\x01\\x7f\u{85}\u{2028}\u{feff}\u{fffe}a#:-]{0,16}",
            ],
            mid in any::<bool>(),
        ) {
            let field = if mid { "value: 'pre-{{v}}-post'\n" } else { "value: '{{v}}'\n" };
            let t = Template::parse(&config_map(field)).expect("valid");
            let res = t.render_checked(|_| Some(value.as_str()));
            let carriable = !value.chars().any(|c| is_break(c) || unprintable(c));
            match res {
                Ok(docs) => {
                    prop_assert!(carriable, "{:?} accepted", value);
                    let want = if mid { format!("pre-{value}-post") } else { value.clone() };
                    prop_assert_eq!(docs[0]["value"].as_str(), Some(want.as_str()));
                }
                Err(TemplateError::Unencodable { name, .. }) => {
                    prop_assert!(!carriable && name == "v", "{:?} refused", value);
                }
                Err(other) => prop_assert!(false, "{:?}: {}", value, other),
            }
        }

        /// Inside a literal block (after its first line) every value without
        /// a carriage return or a character YAML only takes escaped is
        /// carried, over as many lines as it has.
        #[test]
        fn literal_blocks_carry_multi_line_values(
            value in prop_oneof![
                any::<String>(),
                "(a|b c|#|- |: |---|\\.\\.\\.|'|\"|\\\\|\t| |\n|\n  |\r|\u{85}|\u{feff}){0,16}",
            ],
        ) {
            let t = Template::parse(&config_map("value: |\n  first\n  {{v}} tail\n")).expect("valid");
            let res = t.render_checked(|_| Some(value.as_str()));
            let carriable = !value.chars().any(|c| c == '\r' || unprintable(c));
            match res {
                Ok(docs) => {
                    prop_assert!(carriable, "{:?} accepted", value);
                    let want = format!("first\n{value} tail\n");
                    prop_assert_eq!(docs[0]["value"].as_str(), Some(want.as_str()));
                }
                Err(TemplateError::Unencodable { .. }) => prop_assert!(!carriable, "{:?} refused", value),
                Err(other) => prop_assert!(false, "{:?}: {}", value, other),
            }
        }
    }

    #[test]
    fn multi_line_double_quoted_scalars_are_written_on_one_line() {
        let src = config_map(concat!(
            "value: \"one {{v}}\n  {{v}}\n\n  two \\\n  {{v}}\"\n",
            "flow: [\"a {{v}}\n  b\", \"c\n  {{v}} d\"]\n",
        ));
        let t = Template::parse(&src).expect("valid");
        assert!(
            t.encoded()
                .segments
                .iter()
                .all(|s| !matches!(s, Segment::Literal(text) if text.contains("one \n"))),
            "{:?}",
            t.encoded().segments
        );
        let placeholders = t.placeholder_values();
        let original = parse_documents(&src.replace("{{v}}", &placeholders["v"])).expect("parses");
        assert_eq!(t.placeholder_docs(), original.as_slice());
        for value in ["", " ", "  x  ", "\t", "a\nb", "\\"] {
            let docs = t.render_checked(|_| Some(value)).expect("carried");
            assert_eq!(
                docs[0]["value"],
                format!("one {value} {value}\ntwo {value}")
            );
            assert_eq!(docs[0]["flow"][0], format!("a {value} b"));
            assert_eq!(docs[0]["flow"][1], format!("c {value} d"));
        }
        // Text that reads like a placeholder: the scalar is left as written.
        let odd = config_map("value: \"gitfaasvar0x {{v}}\n  two\"\n");
        let t = Template::parse(&odd).expect("valid");
        assert!(t
            .encoded()
            .segments
            .iter()
            .any(|s| matches!(s, Segment::Literal(text) if text.contains("\n  two"))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]
        /// Written on one line, a multi-line double-quoted scalar reads as
        /// before with placeholders, and carries any values.
        #[test]
        fn unfolding_keeps_the_scalar_and_carries_any_value(
            body in prop::collection::vec(prop::sample::select(vec![
                "a", " ", "  ", "\n", "\n  ", "\n\n  ", "\\\n  ", "\\t", "\\ ", "\\\\", "\t", "#", "'", "{{v}}", "{{w}}",
            ]), 0..14),
            v in "(?s).{0,6}",
            w in "[ \t\na\\\\\"]{0,4}",
        ) {
            let body: String = body.concat();
            prop_assume!(body.contains("{{"));
            let src = config_map(&format!("value: \"{body}\"\n"));
            let Ok(t) = Template::parse(&src) else {
                return Ok(());
            };
            let placeholders = t.placeholder_values();
            let mut raw = src.clone();
            for (name, placeholder) in &placeholders {
                raw = raw.replace(&format!("{{{{{name}}}}}"), placeholder);
            }
            let original = parse_documents(&raw);
            prop_assert!(original.is_ok(), "{:?}", raw);
            let original = original.unwrap_or_default();
            prop_assert_eq!(t.placeholder_docs(), original.as_slice());
            let values: Vec<&str> = t.variables().iter().map(|n| if n == "v" { v.as_str() } else { w.as_str() }).collect();
            let docs = t.render_checked(|n| Some(if n == "v" { v.as_str() } else { w.as_str() }));
            prop_assert!(docs.is_ok(), "{:?} with {:?}, {:?}: {:?}", body, v, w, docs.err().map(|e| e.to_string()));
            let want = expand(original[0]["value"].as_str().unwrap_or_default(), &values);
            let docs = docs.unwrap_or_default();
            prop_assert_eq!(docs[0]["value"].as_str(), Some(want.as_str()));
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
