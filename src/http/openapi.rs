//! `GET /openapi.json`: the HTTP API as an OpenAPI 3.1 document, generated
//! from the code with utoipa. Each handler carries its `#[utoipa::path]`
//! (route, parameters, headers, request body, success answers); the bodies
//! are the types the handlers serialize (`ToSchema`); the error answers of
//! each operation are the [`Code`]s its row of the route table
//! ([`super::routes`]) documents, each put under the status
//! [`Code::status`] gives it, so the statuses come from the one map the
//! error bodies use.
//!
//! The operations are the route table's rows, the table
//! [`super::configure`] registers too (its resources answer a JSON 405 on
//! other methods, which utoipa-actix-web's macro-routed services cannot).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ObjectBuilder, Ref, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::{ErrorBody, PublishFailure, RejectedCommit};
use super::ApiError;
use crate::error::Code;
use crate::publish::Report;
use crate::run::view::RunDetail;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gitfaas",
        description = "Turns a git repository of Kubernetes manifests into HTTP-triggered functions. \
Every error is JSON `{\"error\": true, \"code\", \"message\"}` (`ErrorBody`); `code` is stable. \
Any route but the probes (`/healthz`, `/alive`, `/readyz`) answers 403 `forbidden` to a request \
whose `Host` is not in `--allowed-hosts` (when given), and every state-changing one (any method \
but GET, and GET /refresh) to a browser request from another site (`Sec-Fetch-Site: cross-site`, \
or an `Origin` that is neither gitfaas' own nor in `--allowed-origins`). Under `--auth` \
(`kubernetes`, `tokens`) the operations that list the `bearer` scheme need \
`Authorization: Bearer <token>` (401 `unauthorized` without a valid one); under `kubernetes` each \
also needs its `gitfaas.io` permission in gitfaas' namespace (403 `access_denied` naming it; 503 \
`auth_unavailable` when the API server cannot review); under `none` the API is open."
    ),
    components(schemas(ErrorBody, PublishFailure, RejectedCommit, TemplateVariables)),
    modifiers(&Routes, &Bearer, &UniqueOperationIds, &NoNullParameters),
    tags(
        (name = "publish", description = "Running functions"),
        (name = "requests", description = "What became of a publish"),
        (name = "topics", description = "The serving commit's topics and their manifests"),
        (name = "sync", description = "The functions repository"),
        (name = "operations", description = "Probes, status, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The operations: every row of the route table ([`super::routes::ROUTES`]),
/// its handler's description with the row's error answers, and the schemas
/// it names (what `#[openapi(paths(...))]` would add, from the table rather
/// than a second list of handlers).
struct Routes;

impl Modify for Routes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut schemas = Vec::new();
        for route in super::routes::ROUTES {
            let mut operation = (route.operation)();
            operation
                .tags
                .get_or_insert_with(Vec::new)
                .extend((route.tags)().into_iter().map(str::to_string));
            operation
                .responses
                .responses
                .extend(error_responses(route.errors, route.richer));
            openapi
                .paths
                .add_path_operation((route.path)(), (route.methods)(), operation);
            (route.schemas)(&mut schemas);
        }
        openapi
            .components
            .get_or_insert_with(Default::default)
            .schemas
            .extend(schemas);
    }
}

/// The `bearer` security scheme the authenticated operations name.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Under --auth kubernetes: a Kubernetes service-account token minted for gitfaas' audience (`gitfaas`); under --auth tokens: a line of gitfaas' --api-token-file; not needed under --auth none",
                    ))
                    .build(),
            ),
        );
    }
}

/// One handler serving several methods (`GET` and `POST /refresh`) gives
/// each the same operationId; OpenAPI wants them unique, so each such id
/// gets its method appended.
struct UniqueOperationIds;

impl Modify for UniqueOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let mut operations = [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            let ids: Vec<String> = operations
                .iter()
                .filter_map(|(_, o)| o.as_ref().and_then(|o| o.operation_id.clone()))
                .collect();
            for (method, operation) in operations.iter_mut() {
                if let Some(id) = operation.as_mut().and_then(|o| o.operation_id.as_mut()) {
                    if ids.iter().filter(|other| *other == id).count() > 1 {
                        id.push('_');
                        id.push_str(method);
                    }
                }
            }
        }
    }
}

/// An optional header or query parameter is absent or a string, never
/// null: HTTP has no null. utoipa writes the `Option<String>` that makes a
/// parameter optional as `["string", "null"]` (for some parameters), which
/// would invite a client to send one; this keeps the `string`.
struct NoNullParameters;

impl Modify for NoNullParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if let RefOr::T(parameter) = parameter {
                        if let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema {
                            if let SchemaType::Array(types) = &schema.schema_type {
                                let types: Vec<Type> = types
                                    .iter()
                                    .filter(|t| **t != Type::Null)
                                    .cloned()
                                    .collect();
                                schema.schema_type = match types.as_slice() {
                                    [one] => SchemaType::Type(one.clone()),
                                    _ => SchemaType::Array(types),
                                };
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The error answers of an operation: one response per status, whose body
/// is an [`ErrorBody`] (or one of the `richer` bodies that extend it) with
/// `code` one of the operation's codes of that status.
fn error_responses(codes: &[Code], richer: &[&str]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
    for code in codes {
        by_status.entry(code.status()).or_default().push(*code);
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let listed = codes
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let body: RefOr<Schema> = if richer.is_empty() {
                Ref::from_schema_name("ErrorBody").into()
            } else {
                let mut any = AnyOfBuilder::new();
                for name in richer.iter().copied().chain(["ErrorBody"]) {
                    any = any.item(Ref::from_schema_name(name));
                }
                Schema::AnyOf(any.build()).into()
            };
            let code = ObjectBuilder::new()
                .property(
                    "code",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(codes.iter().map(|c| c.as_str()))),
                )
                .required("code");
            let schema = Schema::AllOf(AllOfBuilder::new().item(body).item(code).build());
            let mut response = ResponseBuilder::new()
                .description(format!("code {listed}"))
                .content("application/json", Content::new(Some(schema)));
            match status {
                401 => {
                    response = response.header(
                        "WWW-Authenticate",
                        HeaderBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                            .description(Some("Bearer realm=\"gitfaas\""))
                            .build(),
                    )
                }
                429 => {
                    response = response.header(
                        "Retry-After",
                        HeaderBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                            .description(Some("Seconds to wait before retrying"))
                            .build(),
                    )
                }
                _ => {}
            }
            (status.to_string(), response.build().into())
        })
        .collect()
}

/// What a publish answers with success: its report (applied, or a dry
/// run), or with `?wait=` the request's `/requests` body, or, when its
/// topic's filter is false, that it was filtered. Only the
/// spec's: the handler writes the report or the view itself.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
// Never built (it names the two shapes for the spec): its size is moot.
#[allow(dead_code, clippy::large_enum_variant)]
pub enum PublishAnswer {
    /// Applied (202), or a dry run (200).
    Report(Report),
    /// Waited (`?wait=`): 200 when every Job finished, 202 at the deadline.
    Waited(RunDetail),
    /// Skipped by the topic's filter (200): nothing applied nor recorded.
    Filtered(crate::publish::Filtered),
}

/// The template variables of a publish, as its query parameters: named as
/// `template::syntax::is_variable_name` and `publish::check_params` take
/// them (the reserved names gitfaas sets itself are refused with
/// `bad_parameter`).
pub struct TemplateVariables;

impl utoipa::PartialSchema for TemplateVariables {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[A-Za-z0-9_-]{1,128}$")),
            ))
            .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some(
                "Each a query parameter `name=value`; by default at most 32 parameters \
(--max-query-params) of at most 4096 bytes each (--max-param-bytes)",
            ))
            .into()
    }
}

impl ToSchema for TemplateVariables {}

/// A CloudEvent in structured mode: the CloudEvents JSON event format.
/// Extension attributes are further members (lowercase letters and
/// digits; a string, an integer or a boolean).
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)] // Describes a request body; never built.
pub struct StructuredCloudEvent {
    /// The CloudEvents version: `1.0`.
    #[schema(example = "1.0", pattern = "^1\\.0$")]
    specversion: String,
    /// The event's id: with `source`, what deduplicates it on the topic.
    #[schema(min_length = 1)]
    id: String,
    /// Where the event happened (a URI-reference).
    #[schema(min_length = 1)]
    source: String,
    /// The kind of event.
    #[serde(rename = "type")]
    #[schema(min_length = 1)]
    kind: String,
    /// What the event is about, in its source.
    #[schema(min_length = 1)]
    subject: Option<String>,
    /// When it happened (RFC 3339).
    #[schema(format = DateTime)]
    time: Option<String>,
    /// The media type of `data`; JSON when absent.
    datacontenttype: Option<String>,
    /// The schema `data` adheres to (an absolute URI).
    dataschema: Option<String>,
    /// The data: as JSON under a JSON (or no) `datacontenttype`, the text
    /// under another.
    data: Option<serde_json::Value>,
    /// The data as base64, instead of `data`.
    data_base64: Option<String>,
}

/// The document as JSON, built once.
static SPEC: LazyLock<Result<String, String>> =
    LazyLock::new(|| ApiDoc::openapi().to_json().map_err(|e| e.to_string()));

/// The OpenAPI document of this API
///
/// This document: every route, parameter, header and body, with every error code.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object, content_type = "application/json"),
    )
)]
pub async fn spec() -> Result<HttpResponse, ApiError> {
    match &*SPEC {
        Ok(json) => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(json.clone())),
        Err(e) => Err(ApiError::refused(
            Code::Internal,
            format!("the OpenAPI document could not be written ({e}): a bug in gitfaas, please report it"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn spec() -> Value {
        serde_json::to_value(ApiDoc::openapi()).expect("the spec as JSON")
    }

    fn described(spec: &Value) -> Vec<(String, String)> {
        let mut routes = Vec::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for method in ["get", "post", "put", "delete", "patch", "head", "options"] {
                if item.get(method).is_some() {
                    routes.push((path.clone(), method.to_string()));
                }
            }
        }
        routes.sort();
        routes
    }

    /// The `code` of every error body is one of [`Code::ALL`], all of them,
    /// spelled as the bodies spell them.
    #[test]
    fn the_error_bodys_code_is_every_code() {
        let spec = spec();
        let code = &spec["components"]["schemas"]["ErrorBody"]["properties"]["code"];
        assert_eq!(code["$ref"], "#/components/schemas/Code", "{code}");
        let listed = &spec["components"]["schemas"]["Code"]["enum"];
        let every: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, &serde_json::json!(every));
        let required = &spec["components"]["schemas"]["ErrorBody"]["required"];
        assert_eq!(required, &serde_json::json!(["error", "code", "message"]));
    }

    /// An operation's error answers are its codes under their statuses, each
    /// restricted to the codes of that status.
    #[test]
    fn each_error_answer_lists_the_codes_of_its_status() {
        let spec = spec();
        let responses = &spec["paths"]["/response/{uid}"]["post"]["responses"];
        let mut statuses: Vec<&str> = responses
            .as_object()
            .expect("responses")
            .keys()
            .map(String::as_str)
            .collect();
        statuses.sort();
        assert_eq!(
            statuses,
            ["200", "400", "403", "404", "408", "409", "413", "415", "503"]
        );
        let codes = &responses["409"]["content"]["application/json"]["schema"]["allOf"][1]
            ["properties"]["code"]["enum"];
        assert_eq!(codes, &serde_json::json!(["already_answered"]));
    }

    #[test]
    fn operation_ids_are_unique() {
        let spec = spec();
        let mut ids = Vec::new();
        for item in spec["paths"].as_object().expect("paths").values() {
            for operation in item.as_object().expect("a path item").values() {
                if let Some(id) = operation.get("operationId").and_then(Value::as_str) {
                    ids.push(id.to_string());
                }
            }
        }
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
    }

    /// Every operation of the spec reaches a handler: neither the 404 of no
    /// route nor a 405. (Without the app state the handlers answer 500;
    /// that they were reached is what this checks.)
    #[actix_web::test]
    async fn every_operation_of_the_spec_is_routed() {
        let app = actix_web::test::init_service(
            actix_web::App::new()
                .configure(super::super::configure)
                .default_service(actix_web::web::to(super::super::not_found)),
        )
        .await;
        for (path, method) in described(&spec()) {
            let uri = path.replace("{topic}", "t").replace("{uid}", "u");
            let uri = uri.replace("{requestUid}", "r");
            let method = actix_web::http::Method::from_bytes(method.to_uppercase().as_bytes())
                .expect("a method");
            let request = actix_web::test::TestRequest::default()
                .method(method.clone())
                .uri(&uri)
                .to_request();
            let response = actix_web::test::call_service(&app, request).await;
            let status = response.status().as_u16();
            let body = actix_web::body::to_bytes(response.into_body())
                .await
                .expect("body");
            let body = String::from_utf8_lossy(&body);
            assert!(
                status != 405 && !(status == 404 && body.contains("no route")),
                "{method} {uri}: {status} {body}"
            );
        }
    }

    #[actix_web::test]
    async fn the_spec_is_served_as_json() {
        let response = super::spec().await.expect("served");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert_eq!(content_type.as_deref(), Some("application/json"));
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .expect("body");
        let served: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(served["openapi"], "3.1.0");
        assert_eq!(served, spec());
        if let Ok(path) = std::env::var("GITFAAS_WRITE_OPENAPI") {
            std::fs::write(path, &body).expect("write the spec");
        }
    }

    #[test]
    fn no_parameter_may_be_null() {
        let spec = spec();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let schema = &parameter["schema"];
                    let schema = match schema["$ref"].as_str() {
                        Some(r) => {
                            &spec["components"]["schemas"]
                                [r.trim_start_matches("#/components/schemas/")]
                        }
                        None => schema,
                    };
                    let types = &schema["type"];
                    assert!(
                        types.is_string(),
                        "{method} {path} {}: {types}",
                        parameter["name"]
                    );
                }
            }
        }
    }

    /// Every `$ref` names a schema of the document.
    #[test]
    fn every_reference_resolves() {
        fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                        out.push(r);
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let spec = spec();
        let mut found = Vec::new();
        refs(&spec, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r} is not a schema reference"));
            assert!(
                spec["components"]["schemas"].get(name).is_some(),
                "{r} names no schema"
            );
        }
    }

    /// Every link of a response names an operation of the document, and
    /// only parameters that operation has.
    #[test]
    fn every_link_names_an_operation_and_its_parameters() {
        let spec = spec();
        let mut operations = std::collections::HashMap::new();
        for item in spec["paths"].as_object().expect("paths").values() {
            for operation in item.as_object().expect("a path item").values() {
                if let Some(id) = operation["operationId"].as_str() {
                    operations.insert(id.to_string(), operation.clone());
                }
            }
        }
        let mut links = 0;
        for operation in operations.values() {
            for response in operation["responses"].as_object().into_iter().flatten() {
                for (name, link) in response.1["links"].as_object().into_iter().flatten() {
                    links += 1;
                    let target = link["operationId"].as_str().expect("an operationId");
                    let target = operations
                        .get(target)
                        .unwrap_or_else(|| panic!("link {name} names no operation"));
                    for parameter in link["parameters"].as_object().expect("parameters").keys() {
                        let known = target["parameters"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|p| p["name"] == parameter.as_str());
                        assert!(known, "link {name}: no parameter {parameter}");
                    }
                }
            }
        }
        assert!(links >= 3, "{links} links");
    }
}
