use std::collections::BTreeMap;

use super::*;

fn eval(source: &str, body: &str) -> Result<bool, String> {
    eval_with(source, body, &BTreeMap::new(), &Envelope::default())
}

fn eval_with(
    source: &str,
    body: &str,
    params: &BTreeMap<String, String>,
    envelope: &Envelope,
) -> Result<bool, String> {
    let filter = Filter::compile(source).map_err(|e| format!("compile: {e}"))?;
    filter
        .evaluate(&Input {
            body: body.as_bytes(),
            params,
            envelope,
        })
        .map_err(|e| e.reason)
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_filter_decides_on_the_body_params_headers_and_ce() {
    let body = r#"{"action": "opened", "n": 7, "x": 7.0, "big": 18446744073709551615, "ok": true, "items": [{"id": "a"}, {"id": "b"}], "nested": {"a": {"b": "c"}}}"#;
    for (source, want) in [
        ("body.action == \"opened\"", true),
        ("body.action == \"closed\"", false),
        ("body.n == 7 && body.n > 6 && body.n + 1 == 8", true),
        ("body.x == 7.0 && body.x == 7", true),
        ("body.big == 18446744073709551615u", true),
        ("body.ok", true),
        ("body.items.exists(i, i.id == \"b\")", true),
        ("body.items.all(i, i.id.startsWith(\"a\"))", false),
        ("size(body.items) == 2 && body.items[1].id == \"b\"", true),
        ("body.nested.a.b == \"c\"", true),
        ("has(body.missing)", false),
        ("body.?missing.orValue(\"d\") == \"d\"", true),
        ("body.action.matches(\"^op\")", true),
        ("type(body.n) == int && type(body.action) == string", true),
    ] {
        assert_eq!(eval(source, body), Ok(want), "{source}");
    }
    let params = map(&[("env", "prod")]);
    let envelope = Envelope {
        headers: map(&[("x-github-event", "push")]),
        ce: BTreeMap::new(),
    };
    assert_eq!(
        eval_with(
            "params.env == \"prod\" && headers[\"x-github-event\"] == \"push\" && size(ce) == 0",
            "",
            &params,
            &envelope
        ),
        Ok(true)
    );
    assert_eq!(
        eval_with(
            "body.items.exists(i, i.id == params.id)",
            r#"{"items": [{"id": "q"}]}"#,
            &map(&[("id", "q")]),
            &envelope
        ),
        Ok(true),
        "params may be used inside a loop"
    );
    let ce = Envelope {
        headers: BTreeMap::new(),
        ce: map(&[("type", "com.example.push")]),
    };
    assert_eq!(
        eval_with("ce.type.endsWith(\".push\")", "", &BTreeMap::new(), &ce),
        Ok(true)
    );
}

#[test]
fn a_filter_that_cannot_decide_says_why() {
    let missing = eval("body.city == \"Paris\"", r#"{"town": "Paris"}"#).expect_err("missing");
    assert!(
        missing.contains("city") && missing.contains("has(body."),
        "{missing}"
    );
    let not_bool = eval("body.n + 1", r#"{"n": 1}"#).expect_err("not a boolean");
    assert!(not_bool.contains("not a boolean"), "{not_bool}");
    let wrong_type = eval("body.n > \"a\"", r#"{"n": 1}"#).expect_err("wrong type");
    assert!(!wrong_type.is_empty());
    let not_json = eval("body.x == 1", "plain text").expect_err("not JSON");
    assert!(not_json.contains("the body is not JSON"), "{not_json}");
    assert_eq!(
        eval("body == null", "plain text"),
        Ok(true),
        "a body that is not JSON is null"
    );
    assert_eq!(eval("body == null", ""), Ok(true), "so is an empty one");
}

#[test]
fn what_a_filter_may_not_be_is_refused_when_it_is_compiled() {
    for (source, part) in [
        ("", "empty"),
        ("body.a ==", "not a valid CEL expression"),
        ("bodyy.a == 1", "`bodyy`, which is not a variable"),
        (
            "body.items.exists(i, i.tags.exists(t, t == \"x\"))",
            "inside another one",
        ),
        (
            "body.items.map(i, i + i).map(i, i + i).size() > 0",
            "inside another one",
        ),
        (
            "body.items.exists(i, i == body.wanted)",
            "uses `body` inside a macro's loop",
        ),
        (
            "body.items.exists(i, i == ce.id)",
            "uses `ce` inside a macro's loop",
        ),
        ("body.a.matches(params.re)", "not a string literal"),
        ("body.a.matches(\"(\")", "not a valid regular expression"),
        (
            "body.a.matches(\"\\\\w{1000}\\\\w{1000}\")",
            "compiles to more than",
        ),
        ("Msg{a: 1} == body", "builds a message"),
    ] {
        let err = Filter::compile(source).expect_err(source).to_string();
        assert!(err.contains(part), "{source}: {err}");
    }
    let long = format!("body.a == \"{}\"", "x".repeat(MAX_FILTER_BYTES));
    assert!(matches!(
        Filter::compile(&long),
        Err(FilterError::TooLong(_))
    ));
    // Nesting and chains are bounded when compiled, so that neither the
    // parser nor the interpreter (on a 2 MiB thread, as a test's or an HTTP
    // worker's) can run out of stack.
    for deep in [
        format!("{}true{}", "(".repeat(2000), ")".repeat(2000)),
        format!("{}1{} == 1", "[".repeat(1000), "]".repeat(1000)),
        format!("{} == 1", vec!["1"; 1000].join(" + ")),
        format!("body{} == 1", "[0]".repeat(1000)),
        format!("body{} == 1", ".a".repeat(1000)),
    ] {
        let err = Filter::compile(&deep).expect_err("too deep").to_string();
        assert!(
            err.contains("nests more than") || err.contains("Recursion limit"),
            "{err}"
        );
    }
    // The deepest chain allowed evaluates on this (2 MiB) test thread.
    let deepest = (2..100)
        .map(|n| format!("{} == {n}", vec!["body.n"; n].join(" + ")))
        .take_while(|chain| Filter::compile(chain).is_ok())
        .last()
        .expect("short chains compile");
    assert_eq!(eval(&deepest, r#"{"n": 1}"#), Ok(true), "{deepest}");
    // Loops side by side, bindings and loop variables are fine.
    for ok in [
        "body.a.exists(x, x > 1) && body.b.all(y, y < 3)",
        "body.?a.optMap(x, x + \"s\").orValue(\"\") == \"bs\"",
        "size(body.items.filter(i, i.ok)) > 1",
        "body.m.exists(k, k.startsWith(\"x\"))",
    ] {
        assert!(
            Filter::compile(ok).is_ok(),
            "{ok}: {:?}",
            Filter::compile(ok)
        );
    }
}

#[test]
fn a_hostile_body_cannot_make_an_evaluation_explode() {
    // Nested beyond the JSON parser's limit: not JSON, so null, not a crash.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(eval("body == null", &deep), Ok(true));
    // A large list goes through one loop, once.
    let items: Vec<String> = (0..100_000).map(|i| format!("\"{i}\"")).collect();
    let body = format!("{{\"items\": [{}]}}", items.join(","));
    assert_eq!(
        eval("body.items.exists(i, i == \"99999\")", &body),
        Ok(true)
    );
}

#[test]
fn credentials_are_hidden_from_filters() {
    for hidden in [
        "Authorization",
        "proxy-authorization",
        "Cookie",
        "X-Api-Key",
        "X-Hub-Signature-256",
        "X-Gitlab-Token",
        "X-Vault-Token",
        "Gitfaas-Parent",
        "Idempotency-Key",
    ] {
        assert!(hidden_header(hidden), "{hidden}");
    }
    for shown in [
        "content-type",
        "x-github-event",
        "user-agent",
        "ce-type",
        "x-request-id",
    ] {
        assert!(!hidden_header(shown), "{shown}");
    }
}
