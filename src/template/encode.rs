//! A value written for the YAML context of its placeholder so that YAML
//! reads it back as exactly the value (escapes in double quotes, `''` and
//! line breaks written as empty lines in single quotes, the block's
//! indentation in a literal block), or refused with the fix when the
//! context cannot carry it verbatim.

use super::TemplateError;

/// Whether YAML 1.2 accepts `c` in a document only as an escape in double
/// quotes: outside `c-printable` (C0 controls but tab and line breaks, DEL,
/// C1 controls but NEL, U+FFFE, U+FFFF; surrogates cannot be in a `str`).
pub(super) fn unprintable(c: char) -> bool {
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

/// The YAML context a placeholder is in, which decides how a value is
/// written there so that YAML reads it back as exactly the value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum YamlContext {
    /// A plain scalar, or anything not classified (a comment, a tag, an
    /// anchor): the value raw; the structure check refuses what YAML reads
    /// otherwise.
    Plain,
    /// A mapping key (whatever its style): raw, as plain.
    Key,
    /// `"…"`: every character can be written, by escapes. (A multi-line
    /// one is written on one line at parse, see `Template::unfold`.)
    DoubleQuoted,
    /// `'…'`: only `'` can be escaped (`''`); a line break is written as
    /// a break and an empty line (a lone break folds into a space), the
    /// next line indented by `indent`, the placeholder's column (at least
    /// the scalar's own indentation, whatever encloses it). `white_before`
    /// and `white_after`: the template puts a space, a tab or a line break
    /// right before or after the placeholder, which YAML would trim at a
    /// line break the value starts or ends with.
    SingleQuoted {
        indent: Box<str>,
        white_before: bool,
        white_after: bool,
    },
    /// `|`: text verbatim; a line break in the value continues the block
    /// with `indent`, the indentation of its content lines.
    Literal { indent: Box<str> },
    /// `>`: text verbatim on one line; line breaks are folded.
    Folded,
}

impl YamlContext {
    /// Appends `value` to `out` written for this context, or refuses a value
    /// the context cannot carry verbatim.
    pub(super) fn encode(
        &self,
        out: &mut String,
        name: &str,
        value: &str,
    ) -> Result<(), TemplateError> {
        match self {
            YamlContext::Plain | YamlContext::Key => out.push_str(value),
            YamlContext::DoubleQuoted => double_quoted(out, value),
            YamlContext::SingleQuoted {
                indent,
                white_before,
                white_after,
            } => {
                let refuse = |reason: String| TemplateError::Unencodable {
                    name: name.into(),
                    context: "a single-quoted scalar",
                    reason,
                    fix: double_quote_fix(name),
                };
                if let Some(c) = value.chars().find(|&c| c == '\r' || unprintable(c)) {
                    return Err(refuse(if c == '\r' {
                        format!("it holds {}, which a single-quoted scalar reads as a line feed, and single quotes have no escapes", describe_char(c))
                    } else {
                        format!("it holds {}, which YAML only accepts escaped, and single quotes have no escapes", describe_char(c))
                    }));
                }
                if value.contains('\n')
                    && (white_next_to_break(value)
                        || (*white_before && value.starts_with('\n'))
                        || (*white_after && value.ends_with('\n')))
                {
                    return Err(refuse(
                        "it holds a space or a tab next to a line break (in the value, or around the placeholder in the template), which a single-quoted scalar trims at the break".into(),
                    ));
                }
                single_quoted(out, value, indent);
            }
            YamlContext::Literal { indent } => {
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
            YamlContext::Folded => {
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

/// Writes `value` inside single quotes: `'` doubled, and each run of line
/// breaks as one break more (YAML folds a lone break into a space, and
/// reads each empty line after it as a line feed), the next content
/// indented by `indent` (spaces at a line start are indentation, not
/// text). The caller refused spaces and tabs next to a break: YAML trims
/// them there.
fn single_quoted(out: &mut String, value: &str, indent: &str) {
    let mut previous_empty = false;
    for (i, line) in value.split('\n').enumerate() {
        if i > 0 {
            if i == 1 || !previous_empty {
                out.push('\n');
            }
            out.push('\n');
            if !line.is_empty() {
                out.push_str(indent);
            }
        }
        for (j, part) in line.split('\'').enumerate() {
            if j > 0 {
                out.push_str("''");
            }
            out.push_str(part);
        }
        previous_empty = line.is_empty();
    }
    if value.ends_with('\n') {
        // What follows the value (the closing quote, or text) starts a line.
        out.push_str(indent);
    }
}

/// Whether a space or a tab is next to a line feed in `value`.
fn white_next_to_break(value: &str) -> bool {
    let white = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    let bytes = value.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        *b == b'\n'
            && (white(i.checked_sub(1).and_then(|j| bytes.get(j))) || white(bytes.get(i + 1)))
    })
}

pub(super) fn is_break(c: char) -> bool {
    c == '\n' || c == '\r'
}

/// Writes `value` inside double quotes, escaping what YAML would read as
/// syntax (`\\`, `"`), fold (line breaks, and tabs, which YAML trims at a
/// fold) or cannot hold raw; the YAML 1.1 line breaks (NEL, U+2028, U+2029)
/// and the BOM are escaped too, for consumers that still read them so.
pub(super) fn double_quoted(out: &mut String, value: &str) {
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
