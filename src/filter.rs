//! Topic filters: a topic's `"filter"` in config.json, a CEL expression
//! over the request that decides whether a publish runs at all.
//!
//! A filter is compiled when a commit is synced ([`Filter::compile`]; one
//! that does not compile is a problem of the commit) and evaluated on each
//! publish of its topic before anything is rendered ([`Filter::evaluate`]).
//! It sees four variables ([`Input`]):
//! - `body`: the body parsed as JSON, `null` when it is empty or not JSON;
//! - `params`: the query parameters that are template variables (strings);
//! - `headers`: the request headers, lower-cased names to values, without
//!   the ones that carry credentials ([`hidden_header`]), so that a filter,
//!   which any committer writes, can neither branch on nor leak a secret;
//! - `ce`: the CloudEvent attributes of the request (strings), empty for a
//!   plain publish.
//!
//! # Bounded cost
//!
//! The expression comes from the repository and the input from whoever
//! publishes; neither may make an evaluation explode. The CEL interpreter
//! has no cost limit of its own, so the cost is bounded by what a filter
//! may be, checked when it is compiled:
//! - at most [`MAX_FILTER_BYTES`], nested at most [`MAX_NESTING`] deep in
//!   the parser and [`MAX_DEPTH`] in its syntax tree (the interpreter
//!   recurses once per level: the stack it needs is bounded too);
//! - a macro that loops (`all`, `exists`, `exists_one`, `map`, `filter`) may
//!   not hold another one, neither in its body nor in its range: nested or
//!   chained loops multiply (`body.items.map(x, x + x).map(…)` doubles at
//!   each step);
//! - inside a loop's body, only the loop's own variables, `params` and
//!   `headers` (small, bounded by the request's head) may be used, not
//!   `body` nor `ce`: each iteration then works on one element, and a loop
//!   costs what its range holds;
//! - the pattern of `matches` is a string literal that compiles to a small
//!   program (the interpreter compiles it at each call).
//!
//! So an evaluation costs about the size of the body times the size of the
//! expression. The body's size is `--max-payload-bytes` and its nesting is
//! bounded by the JSON parser (128 levels); a large body is evaluated on
//! the blocking pool (see `publish::workflow`), never on an HTTP worker.
//!
//! This module knows nothing of HTTP nor of publishes: the HTTP layer
//! builds its [`Envelope`], the publish workflow decides what a result means.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use cel::common::ast::{Expr, IdedExpr, LiteralValue};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use cel::{Context, Env, ExecutionError};

/// The longest filter, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;

/// How deep a filter's expressions may nest in the parser (parentheses,
/// arguments, list elements: its recursion limit, 96 by default).
pub const MAX_NESTING: u16 = 16;

/// How deep a filter's syntax tree may be (a chain `a + b + c` is as deep
/// as it is long): the interpreter recurses once per level, on the thread
/// of the publish, and takes some 60 KiB of stack per level in a debug
/// build; 24 levels fit a 2 MiB thread with room to spare.
pub const MAX_DEPTH: usize = 24;

/// The stack of the thread a filter is parsed on: the generated (ANTLR)
/// parser takes some 150 KiB per level of nesting in a debug build, more
/// than a 2 MiB thread has at [`MAX_NESTING`].
const PARSE_STACK: usize = 16 * 1024 * 1024;

/// The largest program a `matches` pattern may compile to, in bytes.
const MAX_REGEX_PROGRAM: usize = 64 * 1024;

/// The variables a filter sees.
const INPUTS: &[&str] = &["body", "params", "headers", "ce"];

/// The inputs whose size is the sender's (the body, and a CloudEvent's
/// attributes, which structured mode carries in the body): not usable
/// inside a loop.
const UNBOUNDED_INPUTS: &[&str] = &["body", "ce"];

/// Names CEL resolves to types, and the `optional` namespace: identifiers
/// a filter may use besides its inputs.
const TYPE_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
    "optional",
    "optional_type",
];

/// The environment every filter is compiled and evaluated with: CEL's
/// standard library and macros, and optional values (`body.?a.orValue("")`).
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Why a filter does not compile: a problem of the commit.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Longer than [`MAX_FILTER_BYTES`].
    #[error("the filter is {0} bytes long; at most {MAX_FILTER_BYTES} are accepted: write a shorter expression")]
    TooLong(usize),
    /// Not CEL.
    #[error("the filter is not a valid CEL expression: {0}")]
    Syntax(String),
    /// CEL, but outside what a filter may be (see the module's doc).
    #[error("the filter {0}")]
    Unsupported(String),
}

/// Why a filter could not decide on one request: the request's problem
/// (400), which names the expression and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct EvalError {
    /// What went wrong, for people.
    pub reason: String,
}

/// What a filter sees of a request besides its body and parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Request headers, lower-cased names, without the credentials
    /// ([`hidden_header`]); a repeated header's values joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// CloudEvent attributes (`id`, `source`, `type`, …); empty for a plain
    /// publish.
    pub ce: BTreeMap<String, String>,
}

/// One evaluation's input.
pub struct Input<'a> {
    /// The body as received.
    pub body: &'a [u8],
    /// The query parameters that are template variables.
    pub params: &'a BTreeMap<String, String>,
    /// Headers and CloudEvent attributes.
    pub envelope: &'a Envelope,
}

/// Whether a header is kept from filters: credentials and capabilities
/// (`Authorization`, `Cookie`, API keys and tokens, webhook signatures,
/// `Gitfaas-Parent`, which only a run's own functions hold). Any name
/// that says it holds a secret is hidden, not only the well-known ones:
/// `X-Vault-Token`, `X-Functions-Key` and the like.
pub fn hidden_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    const MARKS: &[&str] = &[
        "auth",
        "cookie",
        "token",
        "secret",
        "signature",
        "password",
        "passwd",
        "credential",
        "session",
        "key",
    ];
    name == "gitfaas-parent" || MARKS.iter().any(|m| name.contains(m))
}

/// A compiled filter.
pub struct Filter {
    source: String,
    expr: IdedExpr,
    /// Whether the expression reads `body` (else the body is not parsed).
    uses_body: bool,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Filter {
    /// Compiles `source` and checks it keeps to what a filter may be.
    pub fn compile(source: &str) -> Result<Filter, FilterError> {
        if source.len() > MAX_FILTER_BYTES {
            return Err(FilterError::TooLong(source.len()));
        }
        if source.trim().is_empty() {
            return Err(FilterError::Syntax(
                "it is empty: write a CEL expression that is true for the requests to run (e.g. body.action == \"opened\"), or leave filter out".into(),
            ));
        }
        let expr = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("filter-parse".into())
                .stack_size(PARSE_STACK)
                .spawn_scoped(scope, || parse(source))
                .map_err(|e| FilterError::Syntax(format!("the parser could not start: {e}")))?
                .join()
                .unwrap_or_else(|_| Err(FilterError::Syntax("the parser failed on it".into())))
        })?;
        let mut check = Check {
            scope: Vec::new(),
            uses_body: false,
        };
        check
            .walk(&expr, Where::Top, 1)
            .map_err(FilterError::Unsupported)?;
        Ok(Filter {
            source: source.to_string(),
            uses_body: check.uses_body,
            expr,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `body` is a variable of the expression.
    pub fn uses_body(&self) -> bool {
        self.uses_body
    }

    /// Evaluates the filter on one request: true runs it, false skips it;
    /// an error (a missing field, a wrong type, a result that is not a
    /// boolean) is the request's problem.
    pub fn evaluate(&self, input: &Input<'_>) -> Result<bool, EvalError> {
        // Parsed only when used; not JSON is `null` (serde_json bounds the
        // nesting at 128, so the conversion below recurses at most as deep).
        let json = if self.uses_body {
            serde_json::from_slice::<serde_json::Value>(input.body).ok()
        } else {
            None
        };
        let mut ctx = Context::with_env(Arc::clone(&ENV));
        ctx.add_variable_as_val("body", json.as_ref().map_or_else(null, to_val));
        ctx.add_variable_as_val("params", strings(input.params));
        ctx.add_variable_as_val("headers", strings(&input.envelope.headers));
        ctx.add_variable_as_val("ce", strings(&input.envelope.ce));
        match cel::Value::resolve(&self.expr, &ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(EvalError {
                reason: format!(
                    "it evaluated to a value of type {}, not a boolean: a filter must be true or false",
                    other.type_of()
                ),
            }),
            Err(e) => Err(EvalError {
                reason: explain(&e, self.uses_body && json.is_none()),
            }),
        }
    }
}

/// Parses `source` with the filters' environment (its macros) and the
/// parser's recursion limit.
fn parse(source: &str) -> Result<IdedExpr, FilterError> {
    ENV.parser()
        .max_recursion_depth(MAX_NESTING)
        .parse_with_source_info(source)
        .map(|(expr, _)| expr)
        .map_err(|errors| {
            FilterError::Syntax(
                errors
                    .errors
                    .iter()
                    .map(|e| format!("{}:{}: {}", e.pos.0, e.pos.1, e.msg))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
}

/// An evaluation error, for people, with the fix where there is one.
fn explain(e: &ExecutionError, body_not_json: bool) -> String {
    let mut reason = e.to_string();
    if matches!(e, ExecutionError::NoSuchKey(_)) {
        reason.push_str(" (test for a field first with has(body.field), or give it a default with body.?field.orValue(\"…\"))");
    }
    if body_not_json {
        reason = format!("the body is not JSON, so `body` is null ({reason})");
    }
    reason
}

fn null<'a>() -> Box<dyn Val + 'a> {
    Box::new(CelNull)
}

/// A map of strings as a CEL map, borrowing its strings.
fn strings<'a>(map: &'a BTreeMap<String, String>) -> Box<dyn Val + 'a> {
    let entries: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = map
        .iter()
        .map(|(k, v)| {
            (
                CelMapKey::from(k.as_str()),
                Box::new(CelString::from(v.as_str())) as Box<dyn Val + 'a>,
            )
        })
        .collect();
    Box::new(CelMap::from(entries))
}

/// A JSON value as a CEL value, borrowing its strings: integers are `int`
/// (`uint` beyond it, `double` beyond that), other numbers `double`.
fn to_val(value: &serde_json::Value) -> Box<dyn Val + '_> {
    use serde_json::Value as J;
    match value {
        J::Null => null(),
        J::Bool(b) => Box::new(CelBool::from(*b)),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Box::new(CelInt::from(i)),
            (None, Some(u), _) => Box::new(CelUInt::from(u)),
            (None, None, f) => Box::new(CelDouble::from(f.unwrap_or(f64::NAN))),
        },
        J::String(s) => Box::new(CelString::from(s.as_str())),
        J::Array(items) => Box::new(CelList::from(items.iter().map(to_val).collect::<Vec<_>>())),
        J::Object(fields) => Box::new(CelMap::from(
            fields
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), to_val(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

/// Where in the expression a node is, for the cost rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Where {
    /// Evaluated once.
    Top,
    /// In the range (or the initial accumulator) of a loop: evaluated once,
    /// but another loop there would be chained to it.
    Range,
    /// In a loop's body: evaluated once per element.
    Body,
}

/// The compile-time checks of a filter (see the module's doc).
struct Check {
    /// Variables bound by the enclosing macros, innermost last.
    scope: Vec<String>,
    uses_body: bool,
}

impl Check {
    /// Checks `e`, at `depth` in the tree (1 for the root); stops as soon
    /// as the tree is deeper than [`MAX_DEPTH`], so it recurses no deeper.
    fn walk(&mut self, e: &IdedExpr, at: Where, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "nests more than {MAX_DEPTH} levels deep (a chain like a + b + c counts one level per term): write a simpler expression"
            ));
        }
        let next = depth + 1;
        match &e.expr {
            Expr::Ident(name) => self.ident(name, at),
            Expr::Literal(_) | Expr::Unspecified => Ok(()),
            Expr::Select(s) => self.walk(&s.operand, at, next),
            Expr::List(l) => l.elements.iter().try_for_each(|x| self.walk(x, at, next)),
            Expr::Map(m) => m.entries.iter().try_for_each(|entry| match &entry.expr {
                cel::common::ast::EntryExpr::MapEntry(me) => {
                    self.walk(&me.key, at, next)?;
                    self.walk(&me.value, at, next)
                }
                cel::common::ast::EntryExpr::StructField(f) => self.walk(&f.value, at, next),
            }),
            Expr::Struct(s) => Err(format!(
                "builds a message (`{}{{…}}`): a filter has no message types; compare fields instead",
                s.type_name
            )),
            Expr::Call(call) => {
                if call.func_name == "matches" {
                    let pattern = match &call.target {
                        Some(_) => call.args.first(),
                        None => call.args.get(1),
                    };
                    check_pattern(pattern)?;
                }
                if let Some(target) = &call.target {
                    self.walk(target, at, next)?;
                }
                call.args.iter().try_for_each(|x| self.walk(x, at, next))
            }
            Expr::Comprehension(c) => {
                // A macro's binding (`optMap`'s): a "loop" over no element,
                // its value computed once.
                let binds = matches!(&c.iter_range.expr, Expr::List(l) if l.elements.is_empty());
                if binds {
                    self.walk(&c.accu_init, at, next)?;
                    self.scope.push(c.accu_var.clone());
                    let inner = self
                        .walk(&c.loop_step, at, next)
                        .and_then(|()| self.walk(&c.result, at, next));
                    self.scope.pop();
                    return inner;
                }
                if at != Where::Top {
                    return Err(
                        "holds a macro that loops (all, exists, exists_one, map, filter) inside another one: nested or chained loops multiply their cost; write one loop (e.g. body.items.exists(i, i.a > 1 && i.b == \"x\"))"
                            .into(),
                    );
                }
                self.walk(&c.iter_range, Where::Range, next)?;
                self.walk(&c.accu_init, Where::Range, next)?;
                let bound = 1 + usize::from(c.iter_var2.is_some()) + 1;
                self.scope.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    self.scope.push(v.clone());
                }
                self.scope.push(c.accu_var.clone());
                let inner = self
                    .walk(&c.loop_cond, Where::Body, next)
                    .and_then(|()| self.walk(&c.loop_step, Where::Body, next))
                    .and_then(|()| self.walk(&c.result, Where::Body, next));
                self.scope.truncate(self.scope.len() - bound);
                inner
            }
        }
    }

    fn ident(&mut self, name: &str, at: Where) -> Result<(), String> {
        if self.scope.iter().any(|s| s == name) {
            return Ok(());
        }
        if INPUTS.contains(&name) {
            if at == Where::Body && UNBOUNDED_INPUTS.contains(&name) {
                return Err(format!(
                    "uses `{name}` inside a macro's loop (all, exists, exists_one, map, filter): each element would then cost as much as the whole input; use the loop's variable, params and headers there, and `{name}` outside (e.g. body.items.exists(i, i.id == params.id))"
                ));
            }
            self.uses_body |= name == "body";
            return Ok(());
        }
        if TYPE_NAMES.contains(&name) {
            return Ok(());
        }
        Err(format!(
            "uses `{name}`, which is not a variable: a filter sees body, params, headers and ce (e.g. body.{name}, params.{name} or headers[\"{name}\"])"
        ))
    }
}

/// The pattern of `matches`: a string literal (the interpreter compiles it
/// at each call, so it must be small, and not the sender's).
fn check_pattern(pattern: Option<&IdedExpr>) -> Result<(), String> {
    let Some(Expr::Literal(LiteralValue::String(p))) = pattern.map(|p| &p.expr) else {
        return Err(
            "calls matches() with a pattern that is not a string literal: write the regular expression in the filter (e.g. body.ref.matches(\"^refs/tags/v[0-9]+\"))"
                .into(),
        );
    };
    regex::RegexBuilder::new(p.inner())
        .size_limit(MAX_REGEX_PROGRAM)
        .build()
        .map(|_| ())
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => format!(
                "has a matches() pattern that compiles to more than {MAX_REGEX_PROGRAM} bytes: write a simpler one (it is compiled at every call)"
            ),
            other => format!("has a matches() pattern that is not a valid regular expression: {other}"),
        })
}

#[cfg(test)]
mod tests;
