//! YAML text to its documents, each required to be a Kubernetes object
//! (`apiVersion`, `kind`, `metadata`): built, or only checked by a visitor
//! that reads the same events without building them (at sync).

use serde_json::Value;

use super::{first_line, TemplateError};

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
