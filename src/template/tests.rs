//! Unit tests of templates: parsing, contexts, encoding, rendering and the
//! structure check, mostly through `Template`'s own API.

use super::check::{expand, reads_as};
use super::encode::unprintable;
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
        "{{body.city}} {{ body.a.b }} {{body.items.0}} {{body.a-b.c_d.10}}",
        "{{body.true}} {{body.this}} {{body.else}} {{body.null}} {{body.as}}",
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
        "{{body}}x{{body.}}",
        "{{body..a}}",
        "{{body.a.}}",
        "{{body/a}}",
        "{{body.[a b]}}",
        "{{this.body.a}}",
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
    fn plain_scan_never_differs_from_handlebars(src in r#"(\{\{|\}\}|\{\{ | \}\}|a|b_1|x-y|else|true|null|this|as|body|body\.|\.0|[\\{}!~#>&@./ \n:"-]){0,24}"#) {
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

/// A single-quoted context, for comparing kinds.
fn single() -> YamlContext {
    YamlContext::SingleQuoted {
        indent: "".into(),
        white_before: false,
        white_after: false,
    }
}

/// Whether a single-quoted placeholder between non-blank template text
/// carries `value`: no carriage return, nothing YAML only takes escaped,
/// no space or tab next to a line break (YAML trims them at a fold).
fn single_quotes_carry(value: &str) -> bool {
    !value.chars().any(|c| c == '\r' || unprintable(c))
        && !value.contains(" \n")
        && !value.contains("\t\n")
        && !value.contains("\n ")
        && !value.contains("\n\t")
}

/// The context found for the placeholder of variable `name`.
fn context_of<'t>(t: &'t Template, name: &str) -> &'t YamlContext {
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
    let lit = |n: usize| YamlContext::Literal {
        indent: " ".repeat(n).into(),
    };
    for (name, want) in [
        ("a", YamlContext::DoubleQuoted),
        ("k", YamlContext::Key),
        ("kq", YamlContext::Key),
        ("b", single()),
        ("c", lit(4)),
        ("d", lit(4)),
        ("e", YamlContext::Folded),
        ("f", YamlContext::Plain),
        ("g", YamlContext::DoubleQuoted),
        ("h", YamlContext::Plain),
        ("i", YamlContext::DoubleQuoted),
        ("j", YamlContext::Key),
        ("l", single()),
        ("m", YamlContext::Plain),
        ("n", YamlContext::Plain),
        // `|2` under a key at column 2: content at column 4, whatever
        // the line's own indentation.
        ("o", lit(4)),
    ] {
        match (context_of(&t, name), &want) {
            (
                YamlContext::SingleQuoted {
                    white_before,
                    white_after,
                    ..
                },
                YamlContext::SingleQuoted { .. },
            ) => assert!(!white_before && !white_after, "{name}"),
            (got, want) => assert_eq!(got, want, "{name}"),
        }
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
        ("a\nb", "cccccccuuii"),
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
        ("multi\nline\n", "cccciccuuii"),
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
                Ok(docs) if docs.len() == 1 && docs[0].as_object().map(|m| m.len()) == Some(4) => {
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
            "a \nb",
            [
                "`who`",
                "single-quoted",
                "space or a tab next to a line break",
                "\"{{who}}\"",
            ],
        ),
        (
            "value: 'pre {{who}}'\n",
            "\nb",
            [
                "`who`",
                "single-quoted",
                "around the placeholder",
                "\"{{who}}\"",
            ],
        ),
        (
            "value: '{{who}}'\n",
            "a\r\nb",
            ["`who`", "single-quoted", "carriage return", "\"{{who}}\""],
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
fn single_quotes_write_a_line_break_as_an_empty_line() {
    let field = "env:\n  - name: NOTE\n    value: '{{note}}'\n";
    let note = "first line\nit's\n\nlast\n";
    let t = Template::parse(&config_map(field)).expect("valid");
    let text = t.render_with(|_| Some(note)).expect("renders");
    let indent = " ".repeat(12);
    assert!(
        text.ends_with(&format!(
            "    value: 'first line\n\n{indent}it''s\n\n\n{indent}last\n\n{indent}'\n"
        )),
        "{text}"
    );
    let docs = t.render_checked(|_| Some(note)).expect("carried");
    assert_eq!(docs[0]["env"][0]["value"], note);
    // In a template with CRLF line ends too.
    let t = Template::parse(&config_map(field).replace('\n', "\r\n")).expect("valid");
    let docs = t.render_checked(|_| Some(note)).expect("carried");
    assert_eq!(docs[0]["env"][0]["value"], note);
}

#[test]
fn crlf_templates_carry_values_too() {
    let src = config_map("value: |\n  first\n  {{v}}\nquoted: \"{{v}}\"\n").replace('\n', "\r\n");
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

/// Single-quoted placeholders of every shape: the field, where the value
/// lands (a JSON pointer, and the text there, `\u{1}` for the value), and
/// whether the template has a space right before and after the
/// placeholder.
type SingleShape = (
    &'static str,
    &'static [(&'static str, &'static str)],
    bool,
    bool,
);
const SINGLE_QUOTED: [SingleShape; 6] = [
    (
        "value: '{{v}}'\nother: 'x{{v}}y'\n",
        &[("/value", "\u{1}"), ("/other", "x\u{1}y")],
        false,
        false,
    ),
    (
        "value:\n  - name: n\n    v: 'pre-{{v}}'\n",
        &[("/value/0/v", "pre-\u{1}")],
        false,
        false,
    ),
    (
        "value: ['{{v}}', {k: '<{{v}}>'}]\n",
        &[("/value/0", "\u{1}"), ("/value/1/k", "<\u{1}>")],
        false,
        false,
    ),
    (
        "value:\n  a:\n    b: [ x, 'q{{v}}' ]\n",
        &[("/value/a/b/1", "q\u{1}")],
        false,
        false,
    ),
    (
        "value: 'one {{v}} two'\n",
        &[("/value", "one \u{1} two")],
        true,
        true,
    ),
    ("value: \n  '{{v}}'\n", &[("/value", "\u{1}")], false, false),
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
    /// carriage return, a character YAML only takes escaped, or a space
    /// or tab next to a line break, and refuses the others by name.
    #[test]
    fn single_quotes_carry_all_they_can_and_refuse_the_rest(
        value in prop_oneof![
            any::<String>(),
            "['\"\\\\\t\n\r \\x01\\x7f\u{85}\u{2028}\u{feff}\u{fffe}a#:-]{0,16}",
            "(a|b c|#|- |: |---|\\.\\.\\.|'|''|\"|\\\\|\t|\n|\n\n|\u{85}|\u{feff}|x\ny){0,12}",
        ],
        mid in any::<bool>(),
    ) {
        let field = if mid { "value: 'pre-{{v}}-post'\n" } else { "value: '{{v}}'\n" };
        let t = Template::parse(&config_map(field)).expect("valid");
        let res = t.render_checked(|_| Some(value.as_str()));
        let carriable = single_quotes_carry(&value);
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

    /// Line breaks are carried by single quotes in every shape a
    /// placeholder can take (nested in lists and mappings, in flow
    /// collections, with text around it), exactly: what YAML reads back
    /// is the value; what cannot be carried is refused by name.
    #[test]
    fn single_quotes_carry_line_breaks_in_every_shape(
        value in prop_oneof![
            "(a|b c|#|- |: |---|\\.\\.\\.|'|\"|\\\\|\t| |\n|\n\n|\u{85}|\u{2028}|\u{feff}|x\ny){0,12}",
            any::<String>(),
        ],
        shape in 0..SINGLE_QUOTED.len(),
    ) {
        let (field, landed, white_before, white_after) = SINGLE_QUOTED[shape];
        let t = Template::parse(&config_map(field)).expect("valid");
        let res = t.render_checked(|_| Some(value.as_str()));
        let carriable = single_quotes_carry(&value)
            && !(white_before && value.starts_with('\n'))
            && !(white_after && value.ends_with('\n'));
        match res {
            Ok(docs) => {
                prop_assert!(carriable, "{:?} accepted in {:?}", value, field);
                for (pointer, want) in landed {
                    let want = want.replace('\u{1}', &value);
                    prop_assert_eq!(docs[0].pointer(pointer).and_then(Value::as_str), Some(want.as_str()), "in {:?}", field);
                }
            }
            Err(TemplateError::Unencodable { name, .. }) => {
                prop_assert!(!carriable && name == "v", "{:?} refused in {:?}", value, field);
            }
            Err(other) => prop_assert!(false, "{:?} in {:?}: {}", value, field, other),
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
            (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
                false
            }
            _ => true,
        }
    }
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| eq(x, y))
}

#[test]
fn a_field_of_the_body_is_a_variable_of_its_own() {
    for ok in ["body.city", "body.a.b", "body.items.0", "body.a-b.c_d.10"] {
        assert!(is_body_path(ok), "{ok}");
    }
    let long = format!("body.{}", "a".repeat(MAX_BODY_PATH));
    for bad in [
        "body",
        "body.",
        "body..a",
        "body.a.",
        "body.a b",
        "body.[a]",
        "body/a",
        "Body.a",
        "bodyx.a",
        "a.b",
        long.as_str(),
    ] {
        assert!(!is_body_path(bad), "{bad}");
    }
    // Whichever parser reads it: the same variable.
    for src in [
        "x: {{body.a.b}}\n",
        "x: {{{body.a.b}}}\n",
        "x: {{~ body.a.b ~}}\n",
        "x: {{! a comment }}{{body.a.b}}\n",
    ] {
        let (segments, variables) = plain_segments(src)
            .map(Ok)
            .unwrap_or_else(|| handlebars_segments(src))
            .unwrap_or_else(|e| panic!("{src:?}: {e}"));
        assert_eq!(
            variables.into_iter().collect::<Vec<_>>(),
            vec!["body.a.b".to_string()],
            "{src:?}"
        );
        assert!(
            segments.contains(&Segment::Var("body.a.b".into())),
            "{src:?}"
        );
    }
    for refused in [
        "x: {{body/a}}\n",
        "x: {{body.[a b]}}\n",
        "x: {{this.body.a}}\n",
    ] {
        assert!(
            handlebars_segments(refused).is_err(),
            "{refused:?} is not a variable gitfaas knows"
        );
    }
}

#[test]
fn a_lint_parse_accepts_and_refuses_as_parse_does_with_the_documents_built() {
    for src in [
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{NAME}}\"\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  b: !!binary aGk=\n",
        "apiVersion: v1\nkind: [\n",
        "apiVersion: v1\nmetadata: {name: a}\n",
        "apiVersion: 1\nkind: ConfigMap\nmetadata: {name: a}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: ~\n",
        "- a\n- b\n",
        "",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{#if x}}a{{/if}}\n",
    ] {
        let lazy = Template::parse(src);
        let built = Template::parse_keeping_documents(src);
        match (&lazy, &built) {
            (Ok(lazy), Ok(built)) => {
                assert_eq!(lazy.outline(), built.outline(), "{src:?}");
                assert!(built.placeholder_docs.get().is_some() || lazy.placeholder_docs().is_empty(), "{src:?}");
                assert_eq!(lazy.placeholder_docs(), built.placeholder_docs(), "{src:?}");
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{src:?}"),
            _ => panic!("{src:?}: parse {:?}, lint parse {:?}", lazy.is_ok(), built.is_ok()),
        }
    }
}

/// Templates that put placeholders everywhere YAML can: plain, quoted,
/// flow, block, folded, multi-line, keys, comments, anchors and aliases,
/// numbers and booleans, and a literal that looks like a placeholder.
const SUBSTITUTED: [&str; 6] = [
    JOB,
    r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-{{a}}
  labels: {app: "{{b}}", tier: '{{c}}', n: {{a}}}
data:
  folded: >
    one {{b}} two
    three {{c}}
  multi: "first {{a}}
    second {{b}}"
  single: 'x {{c}}
    y'
  count: {{d}}
"#,
    r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{a}}
data:
  "{{b}}": key
  plain: {{c}}{{d}}
"#,
    r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: x
data:
  first: &anchor "{{a}}"
  second: *anchor
  # {{c}} in a comment
  third: {{b}}
"#,
    r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: y
data:
  literal: gitfaasvar0x
  value: "{{a}}"
---
apiVersion: v1
kind: Secret
metadata:
  name: z-{{b}}
stringData:
  v: "{{c}} and {{d}}"
"#,
    r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: d-{{a}}
spec:
  replicas: {{b}}
  paused: {{c}}
  template:
    spec:
      containers:
        - name: main
          image: "img:{{d}}"
          args: [{{a}}, "{{b}}", '{{c}}']
"#,
];

fn substitution_value() -> impl Strategy<Value = String> {
    prop_oneof![
        // What real publishes send: base64, uids, names, URLs.
        "[A-Za-z0-9+/]{1,24}={0,2}",
        "[a-z][a-z0-9-]{0,20}",
        "http://[a-z0-9.]{1,10}:[0-9]{2,5}/[a-z]{0,5}",
        // Words and numbers that read as other types when plain.
        prop::sample::select(vec![
            "true",
            "False",
            "yes",
            "NO",
            "on",
            "Off",
            "y",
            "N",
            "null",
            "Null",
            "~",
            "inf",
            "-inf",
            ".inf",
            "Infinity",
            "nan",
            "NaN",
            ".nan",
            "1",
            "007",
            "0x1F",
            "0o17",
            "1e5",
            "1.5",
            "+3",
            "-",
            "e5",
            "a1",
            "x:y",
            "a#b",
            "-a",
            "2026-01-01",
        ])
        .prop_map(str::to_string),
        // And anything: spaces, quotes, escapes, line breaks, Unicode.
        "[ -~]{0,12}",
        "[a-z \\n\\t'\"\\\\:#-]{0,8}",
        ".{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A render built from the placeholder documents is exactly what the
    /// parse and structure check give for the same values; a value they
    /// refuse is never substituted.
    #[test]
    fn a_substituted_render_is_the_parsed_one(
        which in 0..SUBSTITUTED.len(),
        raw in prop::collection::vec(substitution_value(), 12),
    ) {
        let t = Template::parse(SUBSTITUTED[which]).expect("valid template");
        let values: BTreeMap<String, String> = t
            .variables()
            .iter()
            .zip(&raw)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let lookup = |n: &str| values.get(n).map(String::as_str);
        let fast = t.render_checked(lookup);
        let parsed = t.render_parsed(lookup);
        match (&fast, &parsed) {
            (Ok(f), Ok(p)) => prop_assert_eq!(f, p),
            (Err(f), Err(p)) => prop_assert_eq!(f.to_string(), p.to_string()),
            _ => prop_assert!(false, "substituted {:?}, parsed {:?}", fast, parsed),
        }
    }
}

/// Each variable of each template given, in turn, each value that could
/// read otherwise somewhere (the others benign): the substituted render is
/// the parsed one, or the parse's refusal.
#[test]
fn every_hostile_value_in_every_place_renders_as_parsed() {
    const HOSTILE: [&str; 34] = [
        "", " ", " a", "a ", "a\tb", "a\nb", "a\"b", "a'b", "a\\b", "#x", "a #x", "x: y", "x:y",
        "- a", "-", "[a]", "{a}", "a,b", "*a", "&a", "!a", "!!int", "|", ">", "%a", "@a", "`a",
        "1", "true", "null", "~", ".inf", "NaN", "0x1F",
    ];
    let mut compared = 0;
    for (which, source) in SUBSTITUTED.iter().enumerate() {
        let t = Template::parse(source).expect("valid template");
        let names: Vec<String> = t.variables().iter().cloned().collect();
        for name in &names {
            for hostile in HOSTILE {
                let values: BTreeMap<String, String> = names
                    .iter()
                    .map(|n| {
                        (
                            n.clone(),
                            if n == name { hostile } else { "abc" }.to_string(),
                        )
                    })
                    .collect();
                let lookup = |n: &str| values.get(n).map(String::as_str);
                let fast = t.render_checked(lookup);
                let parsed = t.render_parsed(lookup);
                match (&fast, &parsed) {
                    (Ok(f), Ok(p)) => assert_eq!(f, p, "template {which}, {name} = {hostile:?}"),
                    (Err(f), Err(p)) => assert_eq!(f.to_string(), p.to_string()),
                    _ => panic!("template {which}, {name} = {hostile:?}: substituted {fast:?}, parsed {parsed:?}"),
                }
                compared += 1;
            }
        }
    }
    assert!(compared > 500, "{compared}");
}

/// The templates of the bench, the demo and the examples take the values
/// real publishes send without a parse: the fast path is the common one.
#[test]
fn real_publishes_skip_the_parse() {
    let v = values(&[]);
    let t = Template::parse(JOB).expect("valid template");
    // JOB writes `{{tag}}` after `busybox:` in a plain scalar; 1.36 is fine
    // there, and so is every value of `values`.
    let s = t.substitutable().expect("JOB is substitutable");
    let given: Vec<&str> = t.variables().iter().map(|n| v[n].as_str()).collect();
    assert!(s.takes(&given), "{given:?}");
    assert!(s.render(t.placeholder_docs(), &given).is_some());
    // A key, a comment or an alias holding a placeholder: always parsed.
    for which in [2, 3] {
        let t = Template::parse(SUBSTITUTED[which]).expect("valid template");
        assert!(t.substitutable().is_none(), "template {which}");
    }
}
