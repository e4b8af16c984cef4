//! Template syntax: the text of a template to its segments (literal text
//! and `{{NAME}}` substitutions) and the variables it uses, by a plain scan
//! when the text holds nothing but `{{NAME}}`, else by handlebars' parser,
//! which refuses helpers, blocks and partials; and what a variable name is
//! (a query parameter's or built-in's name, or a field of the body).

use std::collections::BTreeSet;

use handlebars::template::{Parameter, TemplateElement};

use super::TemplateError;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Segment {
    Literal(String),
    Var(String),
}

/// Segments and variables of a template, by handlebars' own parser: for the
/// templates [`plain_segments`] leaves to it (comments, escapes, whitespace
/// control, and anything unsupported, which is refused here with its line).
pub(super) fn handlebars_segments(
    source: &str,
) -> Result<(Vec<Segment>, BTreeSet<String>), TemplateError> {
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
                    Some(n) if is_variable_name(&n) || is_body_path(&n) => {
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
pub(super) fn plain_segments(source: &str) -> Option<(Vec<Segment>, BTreeSet<String>)> {
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
            || !(is_variable_name(name) || is_body_path(name))
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

/// What a `{{body.…}}` variable starts with.
pub const BODY_PREFIX: &str = "body.";

/// The longest `{{body.…}}` variable.
pub const MAX_BODY_PATH: usize = 256;

/// A field of a JSON body (`body.city`, `body.a.b`, `body.items.0`): `body`
/// and one or more keys or list indexes, each of letters, digits, `_` and
/// `-`, separated by dots; at most [`MAX_BODY_PATH`] long. A key with any
/// other character cannot be named (handlebars' `body.[a b]` is refused).
pub fn is_body_path(name: &str) -> bool {
    name.len() <= MAX_BODY_PATH
        && name.strip_prefix(BODY_PREFIX).is_some_and(|path| {
            path.split('.').all(|segment| {
                !segment.is_empty()
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
        })
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
