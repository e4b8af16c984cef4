//! The fuzz harness shared by the AFL++ targets (`fuzz/src/bin/*.rs`) and by
//! the corpus replay test (`tests/fuzz_corpus.rs`), which includes this file
//! with `#[path]` and needs neither AFL nor the fuzz crate.
//!
//! Every invariant is a panic, so AFL++ reports a violation as a crash.
//!
//! Inputs are split deterministically at 0xFF bytes (never part of UTF-8):
//! - `render`: the first byte picks one of [`templates`]; the following parts
//!   are the values of the template's variables in sorted name order (a
//!   variable without a part gets a benign default).
//! - `config`: the first part is `config.json`, part `i` (from 1) the file
//!   `m<i>.yaml`; a valid `job.yaml`, a directory `dir` and a symlink
//!   `link.yaml` always exist. Every part is also parsed as a template.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use gitfaas::catalog::{self, CatalogError, FileError, FileTree, RepoPath, TopicName};
use gitfaas::template::{is_variable_name, Template, TemplateError};
use serde_json::Value;

/// Plain, double-quoted, single-quoted, block-literal and flow contexts.
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

/// Keys built from variables, folded scalars, numbers, flow mappings and
/// sequences holding plain, single- and double-quoted values.
const COLLECT: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: "{{TOPIC}}-{{RANDOM}}"
  namespace: {{ns}}
  labels:
    app: collect
    team-{{team}}: "true"
  annotations:
    "note/{{key}}": '{{note}}'
    description: >
      Collects {{source}} data
      for {{team}}.
spec:
  backoffLimit: {{retries}}
  ttlSecondsAfterFinished: 600
  template:
    metadata:
      labels: {app: collect, source: {{source}}, run: "{{RANDOM}}"}
    spec:
      restartPolicy: Never
      containers:
        - name: collect
          image: "registry.example.com/collect:{{tag}}"
          args: [--source, {{source}}, "--payload={{PAYLOAD}}", '--note={{note}}']
          env:
            - {name: MESSAGE, value: "{{MESSAGE}}"}
            - name: CALLBACK
              value: {{GITFAAS_URL}}/responses/{{REQUEST_UID}}
          command:
            - /bin/sh
            - -c
            - >-
              echo start {{source}} &&
              collect --all
"#;

/// Two documents, a whole key from a variable, block scalars with keep and
/// indentation indicators, variables in comments, a document end marker.
const MULTI: &str = r#"# {{TOPIC}}: the configuration and the job that reads it
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg-{{RANDOM}}
data:
  {{key}}: {{value}}
  run.sh: |
    #!/bin/sh
    echo "{{msg}}"
    exit 0
  raw.txt: |2
      indented {{value}}
  kept.txt: |+
    {{msg}}

---
apiVersion: batch/v1
kind: Job
metadata:
  name: job-{{RANDOM}}  # was {{old}}
spec:
  parallelism: {{n}}
  template:
    spec:
      restartPolicy: Never
      volumes: [{name: cfg, configMap: {name: cfg-{{RANDOM}}}}]
      containers:
      - name: main
        image: busybox
        args:
        - "{{msg}}"
        - '{{value}}'
        - {{value}}
...
"#;

/// Anchors and aliases in the template, triple-stash, whitespace control,
/// escapes and multi-line quoted and plain scalars.
const CRON: &str = r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly-{{TOPIC}}
  labels: &labels
    app: nightly
    topic: "{{TOPIC}}"
spec:
  schedule: "{{schedule}}"
  jobTemplate:
    metadata:
      labels: *labels
      annotations:
        run: "pre- {{~who~}} -post"
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
            - name: run
              image: alpine:3.20
              env:
                - name: PAYLOAD
                  value: {{{PAYLOAD}}}
                - name: WHO
                  value: "hello,\t{{who}}\u00e9"
                - name: MULTI
                  value: "first line {{who}}
                    continued {{x}}"
                - name: PLAIN
                  value: plain {{x}}
                    continued plain
              command: ["sh", "-c", 'echo ''{{who}}'' > /tmp/out']
"#;

/// A document written in flow style over several lines.
const FLOW: &str = r#"{apiVersion: v1, kind: Pod,
 metadata: {name: "pod-{{RANDOM}}", labels: {app: {{app}}, {{lk}}-label: x}},
 spec: {
   restartPolicy: Never, activeDeadlineSeconds: {{secs}}, hostNetwork: {{flag}},
   containers: [
     {name: c, image: "{{image}}",
      args: [{{a}}, "{{b}}", '{{c}}']}
   ]}}
"#;

/// The realistic templates the `render` target fills with fuzzed values.
pub fn templates() -> &'static [Template] {
    static TEMPLATES: OnceLock<Vec<Template>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let crlf = JOB.replace('\n', "\r\n");
        [JOB, COLLECT, MULTI, CRON, FLOW, crlf.as_str()]
            .iter()
            .enumerate()
            .map(|(i, src)| {
                Template::parse(src).unwrap_or_else(|e| panic!("template {i} must parse: {e}"))
            })
            .collect()
    })
}

/// Splits an input at 0xFF bytes.
pub fn split(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == 0xFF).collect()
}

/// A value that must be accepted anywhere the templates put a variable: a
/// lowercase letter then lowercase letters and digits, except the words YAML
/// reads as a boolean or null (`yes` is `true` for the YAML parser, so it
/// cannot land verbatim in a plain scalar and is refused there).
fn benign(v: &str) -> bool {
    const WORDS: [&str; 7] = ["y", "n", "yes", "no", "on", "off", "null"];
    let mut chars = v.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && v.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && !WORDS.contains(&v)
}

/// The `render` target: parse a fixed template (once), render it with fuzzed
/// values, and check the structure invariants of an accepted render.
pub fn render(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let all = templates();
    let template = &all[usize::from(pick) % all.len()];
    let parts = split(rest);
    let names: Vec<&String> = template.variables().iter().collect();
    let values: BTreeMap<String, String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let value = match parts.get(i) {
                Some(p) => String::from_utf8_lossy(p).into_owned(),
                None => format!("d{i}"),
            };
            ((*name).clone(), value)
        })
        .collect();
    check_render(template, &values);
}

/// Renders `template` with `values` and checks: never a panic; an accepted
/// render has exactly the placeholder render's structure with every value
/// verbatim; a refusal is an injection error or a value its context cannot
/// carry, never for benign values.
pub fn check_render(template: &Template, values: &BTreeMap<String, String>) {
    let result = template.render_checked(|n| values.get(n).map(String::as_str));
    match result {
        Ok(docs) => {
            // The placeholder text of each variable, and the value it stands for.
            let placeholders: Vec<(String, &str)> = template
                .placeholder_values()
                .into_iter()
                .map(|(name, ph)| (ph, values[&name].as_str()))
                .collect();
            let expected = template.placeholder_docs();
            assert_eq!(
                expected.len(),
                docs.len(),
                "accepted with another number of documents; values {values:?}"
            );
            for (i, (e, a)) in expected.iter().zip(&docs).enumerate() {
                let mut path = format!("doc {}", i + 1);
                if let Err(what) = same_structure(e, a, &placeholders, &mut path) {
                    panic!("accepted render differs at {path}: {what}; values {values:?}");
                }
            }
        }
        Err(TemplateError::Injection { path, what }) => {
            assert!(
                !values.values().all(|v| benign(v)),
                "benign values refused at {path}: {what}; values {values:?}"
            );
            assert!(!path.is_empty() && !what.is_empty());
        }
        // Single quotes and block scalars have no escapes: a line break or a
        // control character there is refused before rendering, by name.
        Err(TemplateError::Unencodable { name, reason, .. }) => {
            assert!(
                values.get(&name).is_some_and(|v| !benign(v)),
                "benign value of {name} refused: {reason}; values {values:?}"
            );
        }
        Err(other) => panic!("render_checked failed with {other:?}; values {values:?}"),
    }
}

/// `text` with every placeholder replaced by its value, in one left-to-right
/// pass (a value is never scanned for placeholders).
fn substitute(text: &str, placeholders: &[(String, &str)]) -> String {
    let mut out = String::new();
    let mut i = 0;
    'scan: while i < text.len() {
        for (ph, value) in placeholders {
            if text[i..].starts_with(ph.as_str()) {
                out.push_str(value);
                i += ph.len();
                continue 'scan;
            }
        }
        let c = text[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Whether a scalar that holds placeholders reads as exactly `want` once the
/// values are in: a string must be identical; a number, boolean or null must
/// be what YAML's core schema makes of the text `want`.
fn scalar_is(actual: &Value, want: &str) -> bool {
    match actual {
        Value::String(s) => s == want,
        Value::Bool(true) => want == "true",
        Value::Bool(false) => want == "false",
        Value::Null => matches!(want, "" | "~" | "null" | "Null" | "NULL"),
        // The number sent on must be the number written, digit for digit
        // (`1.50` and `1e3` are 1.5 and 1000; `1e-400` is not 0).
        Value::Number(n) => {
            let plain = !want.starts_with(['+', '0']) && !want.starts_with("-0");
            let written = exact_decimal(want);
            n.to_string() == want
                || (plain && written.is_some() && written == exact_decimal(&n.to_string()))
        }
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// A decimal number as (negative, significant digits, exponent of the last
/// digit), with no leading or trailing zero digit; `None` if `s` is not
/// `-?digits[.digits][e[+-]digits]`.
fn exact_decimal(s: &str) -> Option<(bool, String, i128)> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => {
            let e = &s[at + 1..];
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            (&s[..at], e.parse::<i128>().ok()?)
        }
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let all = format!("{int}{frac}");
    let significant = all.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    let exponent = exponent - frac.len() as i128 + (significant.len() - trimmed.len()) as i128;
    if trimmed.is_empty() {
        return Some((negative, String::new(), 0));
    }
    Some((negative, trimmed.to_string(), exponent))
}

fn holds_placeholder(s: &str, placeholders: &[(String, &str)]) -> bool {
    placeholders.iter().any(|(ph, _)| s.contains(ph.as_str()))
}

/// The structure oracle, written apart from `template`'s `check::same_shape`.
fn same_structure(
    expected: &Value,
    actual: &Value,
    placeholders: &[(String, &str)],
    path: &mut String,
) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            if e.len() != a.len() {
                return Err(format!("{} keys, template has {}", a.len(), e.len()));
            }
            for ((ek, ev), (ak, av)) in e.iter().zip(a) {
                let want = substitute(ek, placeholders);
                if *ak != want {
                    return Err(format!("key {ak:?}, template gives {want:?}"));
                }
                let len = path.len();
                path.push('.');
                path.push_str(ak);
                same_structure(ev, av, placeholders, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!("{} items, template has {}", a.len(), e.len()));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                same_structure(ev, av, placeholders, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        (Value::String(s), a) if holds_placeholder(s, placeholders) => {
            let want = substitute(s, placeholders);
            if scalar_is(a, &want) {
                Ok(())
            } else {
                Err(format!("{a} where the values give {want:?}"))
            }
        }
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{a} where the template has {e}")),
    }
}

/// An in-memory repository.
pub struct MemTree(pub BTreeMap<String, Result<Vec<u8>, &'static str>>);

impl FileTree for MemTree {
    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, FileError> {
        match self.0.get(path.as_ref()) {
            Some(Ok(bytes)) => Ok(bytes.clone()),
            Some(Err(kind)) => Err(FileError::NotAFile(kind)),
            None => Err(FileError::NotFound),
        }
    }
}

/// A valid manifest every `config` input can list as `job.yaml`.
pub const JOB_FILE: &str =
    "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j-{{RANDOM}}\nspec: {}\n";

/// The `config` target: every part parsed as a template, then a catalog built
/// from part 0 as `config.json` and the other parts as `m<i>.yaml`.
pub fn config(data: &[u8]) {
    let parts = split(data);
    for part in &parts {
        check_parse(&String::from_utf8_lossy(part));
    }
    let mut files: BTreeMap<String, Result<Vec<u8>, &'static str>> = BTreeMap::new();
    files.insert("config.json".into(), Ok(parts[0].to_vec()));
    files.insert("job.yaml".into(), Ok(JOB_FILE.as_bytes().to_vec()));
    files.insert("dir".into(), Err("directory"));
    files.insert("link.yaml".into(), Err("symlink"));
    for (i, part) in parts.iter().enumerate().skip(1) {
        files.insert(format!("m{i}.yaml"), Ok(part.to_vec()));
    }
    check_build(&MemTree(files));
}

/// `Template::parse` on any text: never a panic; a parsed template renders
/// with its own placeholders to its placeholder documents, each an object,
/// and its variables are valid names.
pub fn check_parse(text: &str) {
    let Ok(template) = Template::parse(text) else {
        return;
    };
    let docs = template.placeholder_docs();
    assert!(!docs.is_empty(), "a parsed template has no document");
    for doc in docs {
        let map = doc.as_object().expect("every document is a mapping");
        assert!(map.get("apiVersion").is_some_and(Value::is_string));
        assert!(map.get("kind").is_some_and(Value::is_string));
        assert!(map.get("metadata").is_some_and(Value::is_object));
    }
    for name in template.variables() {
        assert!(is_variable_name(name), "variable {name:?}");
    }
    let placeholders = template.placeholder_values();
    let rendered = template
        .render_checked(|n| placeholders.get(n).map(String::as_str))
        .unwrap_or_else(|e| panic!("its own placeholders are refused: {e}"));
    assert_eq!(
        rendered, docs,
        "placeholder render is not the placeholder documents"
    );
}

/// `catalog::build`: never a panic; a snapshot whose topics and manifests
/// are all valid, or a non-empty list of problems.
pub fn check_build(tree: &MemTree) {
    let config = RepoPath::parse("config.json").expect("valid path");
    match catalog::build(tree, &config, "c0") {
        Ok(snapshot) => {
            assert_eq!(snapshot.commit, "c0");
            for (name, topic) in &snapshot.topics {
                assert_eq!(name, &topic.name);
                assert!(TopicName::parse(name.as_ref()).is_ok());
                assert!(snapshot.topic(name.as_ref()).is_some());
                assert!(!topic.manifests.is_empty(), "topic {name} has no manifest");
                for m in &topic.manifests {
                    let p = m.path.as_ref();
                    assert_eq!(RepoPath::parse(p).ok().as_ref(), Some(&m.path));
                    assert!(tree.0.get(p).is_some_and(Result::is_ok), "{p} is no file");
                    assert!(!m.template.placeholder_docs().is_empty());
                }
            }
            assert!(snapshot.manifest_count() <= tree.0.len());
        }
        Err(CatalogError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "an invalid catalog without problems");
            for p in &problems {
                assert!(!p.message.is_empty());
                assert!(!p.file.is_empty());
                assert_ne!(p.line, Some(0));
                let _ = p.to_string();
            }
            let _ = CatalogError::Invalid(problems).to_string();
        }
    }
}
