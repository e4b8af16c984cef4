//! The YAML context of each placeholder (plain, key, quoted, block), found
//! once from the events of the placeholder render, and the rewriting of a
//! multi-line double-quoted scalar that holds one on a single line.

use std::collections::BTreeMap;

use granit_parser::{Event, Parser, ScalarStyle};

use super::check::holds_placeholder;
use super::encode::{double_quoted, YamlContext};
use super::syntax::Segment;

/// Where a placeholder is in the placeholder render.
pub(super) struct Placed {
    pub(super) segment: usize,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// An open collection while reading events: whether its next node is a key.
struct Open {
    mapping: bool,
    key_next: bool,
    /// The collection is (inside) a mapping key.
    in_key: bool,
}

/// What the events of the placeholder render say about its placeholders.
pub(super) struct Found {
    /// The context of each placeholder found in a scalar, by segment.
    pub(super) contexts: Vec<(usize, YamlContext)>,
    /// The multi-line double-quoted scalars that hold placeholders.
    pub(super) unfold: Vec<Unfold>,
}

/// A multi-line double-quoted scalar to write on one line.
pub(super) struct Unfold {
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
pub(super) fn contexts_of(text: &str, at: &[Placed]) -> Found {
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
                        _ if key => Some(YamlContext::Key),
                        ScalarStyle::Plain => Some(YamlContext::Plain),
                        ScalarStyle::DoubleQuoted => Some(YamlContext::DoubleQuoted),
                        ScalarStyle::SingleQuoted => Some(single_quoted(text, p.start, p.end)),
                        ScalarStyle::Literal => block_indent(text, p.start, span.indent)
                            .map(|indent| YamlContext::Literal { indent }),
                        ScalarStyle::Folded => Some(YamlContext::Folded),
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
pub(super) fn unfolded(
    segments: &[Segment],
    contexts: &[YamlContext],
    placeholders: &BTreeMap<String, String>,
    unfold: &[Unfold],
) -> Option<(Vec<Segment>, Vec<YamlContext>)> {
    fn push_text(out: &mut Vec<Segment>, contexts: &mut Vec<YamlContext>, text: &str) {
        if let Some(Segment::Literal(last)) = out.last_mut() {
            last.push_str(text);
        } else if !text.is_empty() {
            out.push(Segment::Literal(text.to_string()));
            contexts.push(YamlContext::Plain);
        }
    }
    let mut out: Vec<Segment> = Vec::with_capacity(segments.len());
    let mut new_contexts: Vec<YamlContext> = Vec::with_capacity(segments.len());
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
                        new_contexts.push(YamlContext::DoubleQuoted);
                        let mut escaped = String::new();
                        double_quoted(&mut escaped, u.pieces.get(*k)?);
                        push_text(&mut out, &mut new_contexts, &escaped);
                        *k += 1;
                    }
                    _ => new_contexts.push(contexts.get(i).cloned().unwrap_or(YamlContext::Plain)),
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

/// The context of a placeholder at `start..end` of `text` in a
/// single-quoted scalar.
fn single_quoted(text: &str, start: usize, end: usize) -> YamlContext {
    let before = text.get(..start).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count());
    let white = |c: Option<char>| matches!(c, Some(' ' | '\t' | '\n' | '\r'));
    YamlContext::SingleQuoted {
        indent: " ".repeat(column.max(1)).into(),
        white_before: white(before.chars().next_back()),
        white_after: white(text.get(end..).and_then(|s| s.chars().next())),
    }
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
