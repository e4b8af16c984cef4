//! A queued run's objects without the run's payload in them: the body is
//! kept once, in the run's `payload`, not again in every string that
//! `{{PAYLOAD}}` filled (a 700 KiB body is 933 KiB of base64, in the
//! payload and in each manifest's env). Each occurrence taken out is
//! recorded by where it was (the string's JSON pointer and its byte offset
//! in the shortened string), and put back exactly when the run is applied:
//! the run is the one its publish answered, byte for byte.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Below this many bytes of payload, objects are kept whole: the copy costs
/// less than the bookkeeping, and the queued run stays readable by a
/// gitfaas that predates this form.
pub(super) const MIN_PAYLOAD_BYTES: usize = 1024;

/// Objects with every occurrence of a payload taken out of their strings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct Lean {
    /// The objects, payload taken out.
    objects: Vec<Value>,
    /// Where it was taken out.
    holes: Vec<Hole>,
}

/// The occurrences of the payload in one string.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Hole {
    /// The string, as a JSON pointer into the list of objects (`/0/spec/…`).
    pointer: String,
    /// Byte offsets in the shortened string where the payload goes, ascending.
    at: Vec<usize>,
}

/// `objects` with `payload` taken out of their strings, or None when no
/// string holds it (or it is too short to be worth it).
pub(super) fn strip(objects: &[Value], payload: &str) -> Option<Lean> {
    if payload.len() < MIN_PAYLOAD_BYTES || !objects.iter().any(|o| holds(o, payload)) {
        return None;
    }
    let mut all = Value::Array(objects.to_vec());
    let mut holes = Vec::new();
    take_out(&mut all, payload, &mut String::new(), &mut holes);
    let Value::Array(objects) = all else {
        return None;
    };
    Some(Lean { objects, holes })
}

/// The objects as they were before [`strip`]; an error says what does not
/// fit (a queued run written wrong, or with another payload).
pub(super) fn restore(lean: Lean, payload: &str) -> Result<Vec<Value>, String> {
    let mut all = Value::Array(lean.objects);
    for hole in lean.holes {
        let Some(Value::String(s)) = all.pointer_mut(&hole.pointer) else {
            return Err(format!("no string at {}", hole.pointer));
        };
        let mut whole = String::with_capacity(s.len() + hole.at.len() * payload.len());
        let mut from = 0;
        for at in hole.at {
            let piece = s
                .get(from..at)
                .ok_or_else(|| format!("offset {at} is not in the string at {}", hole.pointer))?;
            whole.push_str(piece);
            whole.push_str(payload);
            from = at;
        }
        whole.push_str(s.get(from..).unwrap_or_default());
        *s = whole;
    }
    match all {
        Value::Array(objects) => Ok(objects),
        _ => Err("not a list of objects".into()),
    }
}

fn holds(v: &Value, payload: &str) -> bool {
    match v {
        Value::String(s) => s.contains(payload),
        Value::Array(items) => items.iter().any(|i| holds(i, payload)),
        Value::Object(map) => map.values().any(|i| holds(i, payload)),
        _ => false,
    }
}

fn take_out(v: &mut Value, payload: &str, pointer: &mut String, holes: &mut Vec<Hole>) {
    match v {
        Value::String(s) if s.contains(payload) => {
            let mut at = Vec::new();
            let mut short = String::with_capacity(s.len());
            let mut from = 0;
            for (i, _) in s.match_indices(payload) {
                short.push_str(&s[from..i]);
                at.push(short.len());
                from = i + payload.len();
            }
            short.push_str(&s[from..]);
            *s = short;
            holes.push(Hole {
                pointer: pointer.clone(),
                at,
            });
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                take_out(item, payload, pointer, holes);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let len = pointer.len();
                pointer.push('/');
                // RFC 6901: `~` and `/` in a key are escaped.
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                take_out(item, payload, pointer, holes);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn job(env: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j",
               "annotations": {"a/b~c": "x"}},
               "spec": {"template": {"spec": {"containers": [{"name": "c", "env": env}]}}}})
    }

    #[test]
    fn the_payload_is_taken_out_once_per_occurrence_and_put_back_exactly() {
        let payload = "QUJD".repeat(400);
        let objects = vec![
            job(json!([{"name": "PAYLOAD", "value": payload},
                       {"name": "TWICE", "value": format!("<{payload}|{payload}>")}])),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"},
                   "data": {"a/b~c": payload, "other": "QUJD"}}),
        ];
        let lean = strip(&objects, &payload).expect("stripped");
        let text = serde_json::to_string(&lean).expect("json");
        assert!(!text.contains(&payload), "no copy left");
        assert!(text.len() < 1000, "{text}");
        assert_eq!(lean.holes.len(), 3);
        assert_eq!(lean.holes[2].pointer, "/1/data/a~1b~0c");
        assert_eq!(lean.holes[1].at, [1, 2]);
        assert_eq!(restore(lean, &payload), Ok(objects.clone()));
        // A short payload, or none in the objects: kept whole.
        assert_eq!(strip(&objects, "QUJD"), None);
        assert_eq!(strip(&objects, &"Zm9v".repeat(400)), None);
    }

    #[test]
    fn a_hole_that_does_not_fit_is_an_error() {
        let payload = "x".repeat(MIN_PAYLOAD_BYTES);
        let lean = Lean {
            objects: vec![json!({"s": "ab"})],
            holes: vec![Hole {
                pointer: "/0/s".into(),
                at: vec![5],
            }],
        };
        assert!(restore(lean, &payload).is_err());
        let lean = Lean {
            objects: vec![json!({"s": 1})],
            holes: vec![Hole {
                pointer: "/0/s".into(),
                at: vec![0],
            }],
        };
        assert!(restore(lean, &payload).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn any_strings_round_trip(
            pieces in prop::collection::vec(("[a-zé~/ ]{0,6}", any::<bool>()), 0..8),
            key in "[a-z~/]{1,4}",
        ) {
            let payload = "P".repeat(MIN_PAYLOAD_BYTES);
            let s: String = pieces.iter().map(|(p, with)| if *with { format!("{p}{payload}") } else { p.clone() }).collect();
            let objects = vec![json!({key.clone(): s, "list": [s.clone(), 1, null]})];
            match strip(&objects, &payload) {
                Some(lean) => {
                    prop_assert!(!serde_json::to_string(&lean).unwrap_or_default().contains(&payload));
                    prop_assert_eq!(restore(lean, &payload), Ok(objects));
                }
                None => prop_assert!(!s.contains(&payload)),
            }
        }
    }
}
