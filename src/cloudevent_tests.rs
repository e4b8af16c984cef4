use super::*;

const LIMITS: Limits = Limits {
    max_value_bytes: 4096,
};

fn required() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("ce-specversion", b"1.0"),
        ("ce-id", b"e-1"),
        ("ce-source", b"/orders"),
        ("ce-type", b"com.example.order"),
    ]
}

fn read_binary(
    headers: &[(&str, &[u8])],
    content_type: Option<&str>,
    body: &'static str,
) -> Result<CloudEvent, CloudEventError> {
    binary(
        headers,
        content_type.map(str::as_bytes),
        bytes::Bytes::from_static(body.as_bytes()),
        LIMITS,
    )
}

fn with<'a>(extra: &[(&'a str, &'a [u8])]) -> Vec<(&'a str, &'a [u8])> {
    let mut headers = required();
    for (name, value) in extra {
        headers.retain(|(n, _)| n != name);
        headers.push((name, value));
    }
    headers
}

fn read_structured(json: &str) -> Result<CloudEvent, CloudEventError> {
    structured(json.as_bytes(), LIMITS)
}

#[test]
fn the_mode_comes_from_the_content_type_and_the_ce_headers() {
    let of =
        |ct: Option<&str>, names: &[&str]| Mode::of(ct.map(str::as_bytes), names.iter().copied());
    assert_eq!(of(None, &["content-length"]), Ok(None));
    assert_eq!(of(Some("application/json"), &[]), Ok(None));
    assert_eq!(
        of(Some("application/json"), &["ce-id"]),
        Ok(Some(Mode::Binary)),
        "any ce- header: a binary event, complete or not"
    );
    assert_eq!(
        of(
            Some("Application/CloudEvents+JSON; charset=UTF-8"),
            &["ce-id"]
        ),
        Ok(Some(Mode::Structured))
    );
    assert_eq!(
        of(Some("application/cloudevents-batch+json"), &[]),
        Err(CloudEventError::Batch)
    );
    assert!(matches!(
        of(Some("application/cloudevents+avro"), &[]),
        Err(CloudEventError::Format(f)) if f == "application/cloudevents+avro"
    ));
    assert_eq!(
        CloudEventError::Batch.kind(),
        Code::UnsupportedMediaType,
        "batch mode is the content type's 415"
    );
    // `ce-` alone names no attribute; another prefix is no event.
    assert_eq!(of(None, &["ce-", "cex-id", "ace-id"]), Ok(None));
}

#[test]
fn a_binary_event_takes_its_attributes_from_the_headers_and_its_data_from_the_body() {
    let headers = with(&[
        ("ce-subject", b"order 17"),
        ("ce-time", b"2026-03-01T10:00:00.123+01:00"),
        ("ce-comexampleext", b"x"),
    ]);
    let event = read_binary(&headers, Some("application/json"), "{\"n\": 7.0}").expect("an event");
    assert_eq!(event.mode, Mode::Binary);
    assert_eq!(&event.data[..], b"{\"n\": 7.0}");
    assert!(event.attributes.data_is_json());
    let a = &event.attributes;
    assert_eq!(a.variable("CE_ID"), Some("e-1"));
    assert_eq!(a.variable("CE_SOURCE"), Some("/orders"));
    assert_eq!(a.variable("CE_TYPE"), Some("com.example.order"));
    assert_eq!(a.variable("CE_SUBJECT"), Some("order 17"));
    assert_eq!(a.variable("CE_TIME"), Some("2026-03-01T10:00:00.123+01:00"));
    assert_eq!(a.variable("CE_OTHER"), None);
    assert_eq!(a.get("datacontenttype"), Some("application/json"));
    assert_eq!(a.get("comexampleext"), Some("x"), "extensions are kept");
    assert_eq!(a.as_map().len(), 8);
    // Without subject and time, and with data that is not JSON.
    let event = read_binary(&required(), Some("text/plain"), "not json {").expect("an event");
    assert_eq!(event.attributes.variable("CE_SUBJECT"), Some(""));
    assert_eq!(event.attributes.variable("CE_TIME"), Some(""));
    assert!(!event.attributes.data_is_json());
    let event = read_binary(&required(), None, "").expect("an event");
    assert_eq!(event.attributes.get("datacontenttype"), None);
}

#[test]
fn header_values_are_unquoted_then_percent_decoded_once() {
    for (raw, text) in [
        (&b"Euro%20%E2%82%AC%20%F0%9F%98%80"[..], "Euro € 😀"),
        (b"lower%e2%82%ac", "lower€"),
        (b"%41", "A"),
        (b"100%2541", "100%41"),
        (b"\"quoted \\\" %22\"", "quoted \" \""),
        (b"  padded  ", "padded"),
        (b"a raw \"quote\" and: colon", "a raw \"quote\" and: colon"),
        (b"line%E2%80%A8sep", "line\u{2028}sep"),
    ] {
        let headers = with(&[("ce-id", raw)]);
        let event = read_binary(&headers, None, "").expect("an event");
        assert_eq!(event.attributes.get("id"), Some(text), "{raw:?}");
    }
}

#[test]
fn header_values_the_binding_does_not_allow_are_refused_naming_attribute_and_header() {
    for (raw, says) in [
        (&b"%ZZ"[..], "%25"),
        (b"50%", "%25"),
        (b"%C0%A0", "not UTF-8"),
        (b"%FF", "not UTF-8"),
        (b"caf\xC3\xA9", "printable ASCII"),
        (b"\"open", "not closed"),
        (b"\"a\"b", "after its quoted string"),
    ] {
        let headers = with(&[("ce-id", raw)]);
        let e = read_binary(&headers, None, "").expect_err("refused");
        assert_eq!(e.kind(), Code::BadCloudEvent);
        let message = e.to_string();
        assert!(
            message.contains("`id` (header `ce-id`)"),
            "{raw:?}: {message}"
        );
        assert!(message.contains(says), "{raw:?}: {message}");
    }
    // A control character, however it came, is no attribute's.
    for raw in [
        &b"a%0Ab"[..],
        b"a%0D%0Ab",
        b"%C2%85nel",
        b"tab\tinside",
        b"%7F",
    ] {
        let headers = with(&[("ce-subject", raw)]);
        let e = read_binary(&headers, None, "").expect_err("refused");
        assert!(
            matches!(&e, CloudEventError::Character { at, what: "the control character", .. } if at.attribute == "subject"),
            "{raw:?}: {e}"
        );
        assert!(e.to_string().contains("header `ce-subject`"), "{e}");
    }
    let headers = with(&[("ce-type", b"%EF%B7%90")]);
    assert!(matches!(
        read_binary(&headers, None, ""),
        Err(CloudEventError::Character {
            what: "the noncharacter",
            code: 0xFDD0,
            ..
        })
    ));
}

#[test]
fn a_missing_or_empty_required_attribute_is_refused_by_name() {
    for name in ["ce-specversion", "ce-id", "ce-source", "ce-type"] {
        let mut headers = required();
        headers.retain(|(n, _)| *n != name);
        let e = read_binary(&headers, None, "").expect_err("refused");
        let attribute = &name[3..];
        assert_eq!(
            e,
            CloudEventError::Missing(At::new(attribute, Mode::Binary)),
            "{name}"
        );
        assert!(
            e.to_string()
                .contains(&format!("`{attribute}` (header `{name}`)")),
            "{e}"
        );
    }
    for name in ["ce-id", "ce-source", "ce-type", "ce-subject"] {
        let headers = with(&[(name, b"")]);
        let e = read_binary(&headers, None, "").expect_err("refused");
        assert_eq!(e, CloudEventError::Empty(At::new(&name[3..], Mode::Binary)));
    }
    let headers = with(&[("ce-specversion", b"0.3")]);
    let e = read_binary(&headers, None, "").expect_err("refused");
    assert!(
        matches!(&e, CloudEventError::SpecVersion { version, .. } if version == "0.3"),
        "{e}"
    );
    assert!(e.to_string().contains("1.0"), "{e}");
}

#[test]
fn binary_mode_refuses_what_the_binding_forbids() {
    let e = read_binary(&with(&[("ce-datacontenttype", b"text/plain")]), None, "")
        .expect_err("refused");
    assert!(e.to_string().contains("Content-Type"), "{e}");
    let e = read_binary(&with(&[("ce-data", b"x")]), None, "").expect_err("refused");
    assert!(e.to_string().contains("body"), "{e}");
    for name in ["ce-foo_bar", "ce-foo-bar", "ce-café"] {
        let e = read_binary(&with(&[(name, b"x")]), None, "").expect_err("refused");
        assert!(matches!(e, CloudEventError::Name { .. }), "{name}: {e}");
    }
    let long = format!("ce-{}", "a".repeat(MAX_NAME_LEN + 1));
    let e = read_binary(&with(&[(long.as_str(), b"x")]), None, "").expect_err("refused");
    assert!(matches!(e, CloudEventError::Name { .. }), "{e}");
    // Twice, as two header lines.
    let mut headers = required();
    headers.push(("ce-id", b"e-2"));
    let e = read_binary(&headers, None, "").expect_err("refused");
    assert_eq!(e, CloudEventError::Twice(At::new("id", Mode::Binary)));
    // JSON declared, not JSON sent.
    let e = read_binary(&required(), Some("application/cloudevents-data+json"), "{")
        .expect_err("refused");
    assert!(matches!(e, CloudEventError::DataNotJson { .. }), "{e}");
    assert!(e.to_string().contains("header `Content-Type`"), "{e}");
    let e = read_binary(&required(), Some("no-slash"), "").expect_err("refused");
    assert!(e.to_string().contains("not a media type"), "{e}");
}

#[test]
fn values_and_attribute_counts_are_bounded() {
    let long = "x".repeat(LIMITS.max_value_bytes + 1);
    let headers = with(&[("ce-id", long.as_bytes())]);
    let e = read_binary(&headers, None, "").expect_err("refused");
    assert!(
        matches!(e, CloudEventError::TooLong { len, .. } if len == long.len()),
        "{e}"
    );
    let names: Vec<String> = (0..MAX_ATTRIBUTES).map(|i| format!("ce-ext{i}")).collect();
    let mut headers = required();
    headers.extend(names.iter().map(|n| (n.as_str(), &b"v"[..])));
    let e = read_binary(&headers, None, "").expect_err("refused");
    assert!(matches!(e, CloudEventError::TooMany(_)), "{e}");
}

#[test]
fn time_must_be_rfc3339() {
    for good in [
        "2026-01-31T12:00:00Z",
        "2026-01-31t12:00:00z",
        "2024-02-29T23:59:60.123456789+14:00",
        "1985-04-12T23:20:50.52-08:00",
    ] {
        assert!(rfc3339(good), "{good}");
    }
    for bad in [
        "",
        "yesterday",
        "2026-01-31",
        "2026-01-31 12:00:00Z",
        "2026-01-31T12:00Z",
        "2026-01-31T12:00:00",
        "2026-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-01-31T24:00:00Z",
        "2026-01-31T12:60:00Z",
        "2026-01-31T12:00:61Z",
        "2026-01-31T12:00:00.Z",
        "2026-01-31T12:00:00+0100",
        "2026-01-31T12:00:00+24:00",
        "2026-01-31T12:00:00Zjunk",
        "+2026-01-31T12:00:00Z",
    ] {
        assert!(!rfc3339(bad), "{bad}");
    }
    let e = read_binary(&with(&[("ce-time", b"yesterday")]), None, "").expect_err("refused");
    assert!(e.to_string().contains("`time` (header `ce-time`)"), "{e}");
    assert!(e.to_string().contains("RFC 3339"), "{e}");
}

#[test]
fn a_structured_event_keeps_its_json_data_as_sent() {
    let event = read_structured(
        r#"{"specversion":"1.0","id":"e-1","source":"/orders","type":"t",
            "subject":"s","time":"2026-01-31T12:00:00Z","ext":"x","count":7,"flag":true,
            "unset":null,"data": {"n": 7.0,  "s": "\u00e9"} }"#,
    )
    .expect("an event");
    assert_eq!(event.mode, Mode::Structured);
    assert_eq!(&event.data[..], br#"{"n": 7.0,  "s": "\u00e9"}"#);
    assert!(event.attributes.data_is_json());
    let a = &event.attributes;
    assert_eq!(a.get("count"), Some("7"));
    assert_eq!(a.get("flag"), Some("true"));
    assert_eq!(a.get("unset"), None, "null is unset");
    assert_eq!(a.get("data"), None);
    assert_eq!(a.variable("CE_SUBJECT"), Some("s"));
    // A string under JSON (or no) content type: its JSON text, quotes and all.
    let event =
        read_structured(r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":"hi"}"#)
            .expect("an event");
    assert_eq!(&event.data[..], b"\"hi\"");
    assert_eq!(
        event.attributes.get("datacontenttype"),
        Some("application/json"),
        "the content type `data` implies, made explicit"
    );
    // A string under another content type: what binary mode would carry.
    let event = read_structured(
        r#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"application/xml","data":"<a b=\"c\"/>"}"#,
    )
    .expect("an event");
    assert_eq!(&event.data[..], b"<a b=\"c\"/>");
    assert!(!event.attributes.data_is_json());
    // data_base64, decoded; no data at all.
    let event = read_structured(
        r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"AAEC/w=="}"#,
    )
    .expect("an event");
    assert_eq!(&event.data[..], &[0, 1, 2, 255]);
    assert!(!event.attributes.data_is_json());
    let event = read_structured(r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#)
        .expect("an event");
    assert!(event.data.is_empty());
}

#[test]
fn bad_structured_events_are_refused_saying_what_is_wrong() {
    let base = r#""specversion":"1.0","id":"1","source":"s","type":"t""#;
    let cases: &[(String, &str)] = &[
        ("[1]".into(), "an array, not an object"),
        ("\"x\"".into(), "a string, not an object"),
        ("{".into(), "not valid JSON"),
        (
            format!("{{{base},\"data\":1,\"data_base64\":\"AA==\"}}"),
            "both `data` and `data_base64`",
        ),
        (
            format!("{{{base},\"data_base64\":\"%%%\"}}"),
            "`data_base64` is not base64",
        ),
        (
            format!("{{{base},\"data_base64\":5}}"),
            "`data_base64` is a number",
        ),
        (
            format!("{{{base},\"datacontenttype\":\"text/plain\",\"data\":{{\"a\":1}}}}"),
            "`data` is JSON an object but `datacontenttype` (`text/plain`)",
        ),
        (
            format!("{{{base},\"datacontenttype\":\"application/json\",\"data_base64\":\"ew==\"}}"),
            "declared JSON",
        ),
        (
            r#"{"specversion":"1.0","id":5,"source":"s","type":"t"}"#.into(),
            "`id` is a number: it must be a JSON string",
        ),
        (
            r#"{"specversion":"1.0","source":"s","type":"t"}"#.into(),
            "has no `id`",
        ),
        (
            r#"{"specversion":"1.0","id":null,"source":"s","type":"t"}"#.into(),
            "has no `id`",
        ),
        (
            r#"{"id":"1","source":"s","type":"t"}"#.into(),
            "has no `specversion`",
        ),
        (
            r#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#.into(),
            "CloudEvents 1.0 only",
        ),
        (
            r#"{"specversion":"1.0","id":"1","id":"2","source":"s","type":"t"}"#.into(),
            "`id` is given twice",
        ),
        (format!("{{{base},\"Ext\":\"x\"}}"), "member `Ext`"),
        (format!("{{{base},\"ext\":1.5}}"), "32-bit integer"),
        (format!("{{{base},\"ext\":4294967296}}"), "32-bit integer"),
        (
            format!("{{{base},\"ext\":{{}}}}"),
            "a string, an integer or a boolean",
        ),
        (format!("{{{base},\"time\":\"now\"}}"), "RFC 3339"),
        (format!("{{{base},\"subject\":\"a\\nb\"}}"), "U+000A"),
        (format!("{{{base},\"subject\":\"\"}}"), "`subject` is empty"),
        (
            format!("{{{base},\"dataschema\":\"/relative\"}}"),
            "not an absolute URI",
        ),
    ];
    for (json, says) in cases {
        let e = read_structured(json).expect_err(json);
        assert_eq!(e.kind(), Code::BadCloudEvent, "{json}");
        assert!(e.to_string().contains(says), "{json}: {e}");
    }
}

#[test]
fn the_same_event_in_either_mode_has_the_same_attributes_and_data() {
    let binary = read_binary(
        &with(&[("ce-subject", b"a%3A%20b")]),
        Some("application/json"),
        "{\"x\":1}",
    )
    .expect("binary");
    let structured = read_structured(
        r#"{"specversion":"1.0","id":"e-1","source":"/orders","type":"com.example.order","subject":"a: b","datacontenttype":"application/json","data":{"x":1}}"#,
    )
    .expect("structured");
    assert_eq!(binary.attributes, structured.attributes);
    assert_eq!(binary.data, structured.data);
    assert_eq!(
        binary.attributes.content_digest(),
        structured.attributes.content_digest()
    );
}

#[test]
fn attributes_given_by_name_are_checked_over_sample_values() {
    let given = |pairs: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Attributes::from_pairs(&pairs, LIMITS)
    };
    let a = given(&[("id", "42"), ("ext", "x")]).expect("an event");
    assert_eq!(a.variable("CE_ID"), Some("42"));
    assert_eq!(a.variable("CE_TYPE"), Some("sample"));
    assert_eq!(a.get("ext"), Some("x"));
    assert!(matches!(
        given(&[("Bad", "x")]),
        Err(CloudEventError::Name { .. })
    ));
    assert!(matches!(
        given(&[("time", "noon")]),
        Err(CloudEventError::Time { .. })
    ));
    assert!(matches!(
        given(&[("id", "")]),
        Err(CloudEventError::Empty(_))
    ));
}

#[test]
fn the_dedup_key_is_the_topic_source_and_id_and_nothing_else() {
    let event = |id: &str, source: &str, extra: &str| {
        read_structured(&format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"{source}","type":"t"{extra}}}"#
        ))
        .expect("an event")
        .attributes
    };
    let a = event("1", "s", "");
    assert_eq!(a.dedup_digest("t").len(), 64);
    assert_eq!(
        a.dedup_digest("t"),
        event("1", "s", ",\"subject\":\"x\"").dedup_digest("t")
    );
    assert_ne!(a.dedup_digest("t"), a.dedup_digest("u"), "per topic");
    assert_ne!(a.dedup_digest("t"), event("2", "s", "").dedup_digest("t"));
    // Lengths are part of the input: no boundary moves between the parts.
    assert_ne!(
        event("bc", "a", "").dedup_digest("t"),
        event("c", "ab", "").dedup_digest("t")
    );
    assert_ne!(
        event("1", "s", "").dedup_digest("ts"),
        event("1", "ss", "").dedup_digest("t")
    );
    // The content: every attribute the specification defines, no extension.
    assert_eq!(
        a.content_digest(),
        event("1", "s", ",\"knativearrivaltime\":\"x\"").content_digest()
    );
    assert_ne!(
        a.content_digest(),
        event("1", "s", ",\"subject\":\"x\"").content_digest()
    );
    assert_ne!(
        event("1", "s", ",\"subject\":\"x\"").content_digest(),
        event("1", "s", ",\"time\":\"2026-01-01T00:00:00Z\"").content_digest()
    );
}

#[test]
fn attributes_are_kept_as_a_json_object() {
    let a = read_structured(r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#)
        .expect("an event")
        .attributes;
    let json = serde_json::to_value(&a).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"id": "1", "source": "s", "specversion": "1.0", "type": "t"})
    );
    let back: Attributes = serde_json::from_value(json).expect("read back");
    assert_eq!(back, a);
    assert_eq!(Attributes::default().variable("CE_ID"), Some(""), "total");
}

#[test]
fn declares_json_reads_the_subtype() {
    for json in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "text/json",
        "application/ld+json",
    ] {
        assert!(declares_json(json), "{json}");
    }
    for other in [
        "text/plain",
        "application/jsonx",
        "application/json-seq",
        "json",
        "",
    ] {
        assert!(!declares_json(other), "{other}");
    }
}
