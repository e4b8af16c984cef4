//! `POST /response/{functionUid}`: a function reports its result; the
//! function uid is the credential. `GET /response/{requestUid}`: the results
//! so far, one entry per function, null while pending, in the Python
//! version's shape `{"error": false, "responses": ["<base64 of the body>"]}`;
//! `?decoded=true` gives each body as posted (JSON as JSON, text as text).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::Value;

use crate::identity::Permission;

use super::{read_body, ApiError, AppState, Authenticated, BodyKind};

/// The body of `POST /response/{functionUid}` once stored (the Python
/// version's, word for word).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stored {
    /// Always false: this is not an error.
    pub error: bool,
    /// Always `Response stored correctly`.
    pub message: &'static str,
}

/// The body of `GET /response/{requestUid}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Responses {
    /// Always false: this is not an error.
    pub error: bool,
    /// One entry per function, in manifest order: null while it has not
    /// answered; else its body base64-encoded, or as posted with `?decoded=true`.
    pub responses: Vec<Value>,
}

/// Post a function's result
///
/// The function uid (`{{FUNCTION_UID}}` in its manifest) is the credential:
/// no token is needed. The body is JSON (kept as JSON) or text.
#[utoipa::path(
    post,
    path = "/response/{uid}",
    operation_id = "postResponse",
    tag = "requests",
    params(("uid" = String, Path, min_length = 1, description = "The function uid its manifest was rendered with (`{{FUNCTION_UID}}`)")),
    request_body(
        description = "The result, not empty",
        content(
            (serde_json::Value = "application/json"),
            (String = "text/plain"),
            ("application/octet-stream"),
        )
    ),
    responses(
        (status = 200, body = Stored, description = "Stored"),
    )
)]
pub async fn post(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // The uid is the credential: checked before a byte of the body is read,
    // so an unknown caller cannot hold a connection open with a slow body.
    let function_uid = super::function_uid(&path)?;
    state
        .services
        .lifecycle()
        .store
        .check_function(&function_uid)
        .await?;
    let (body, kind) = read_body(&req, payload, state.max_payload_bytes).await?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the response body is empty: post the function's result as JSON or text",
        ));
    }
    let value = match kind {
        BodyKind::Json => serde_json::from_slice::<Value>(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body is declared application/json but is not valid JSON ({e})"
            ))
        })?,
        BodyKind::Other => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    state
        .services
        .lifecycle()
        .store
        .put_response(&function_uid, value, &body)
        .await?;
    tracing::info!(
        function = crate::telemetry::uid_prefix(function_uid.as_str()),
        bytes = body.len(),
        "response stored"
    );
    Ok(HttpResponse::Ok().json(Stored {
        error: false,
        message: "Response stored correctly",
    }))
}

/// `?decoded=true`: each response as posted (JSON as JSON, text as a
/// string) instead of the Python version's base64 strings.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Shape {
    /// `true` (or empty, or `1`): each response as posted (JSON as JSON,
    /// text as a string); `false`, `0` or absent: base64, as the Python
    /// gitfaas answered.
    #[serde(default)]
    #[param(pattern = "^(true|1|false|0)?$")]
    decoded: Option<String>,
}

/// The responses of a request's functions
///
/// One entry per function, in manifest order, null while it has not answered.
#[utoipa::path(
    get,
    path = "/response/{uid}",
    operation_id = "getResponses",
    tag = "requests",
    params(
        ("uid" = String, Path, min_length = 1, description = "The requestUid a publish returned"),
        Shape,
    ),
    responses(
        (status = 200, body = Responses, description = "The responses so far"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn get(
    auth: Authenticated,
    path: web::Path<String>,
    query: web::Query<Shape>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth.may(&state, Permission::read_run()).await?;
    let decoded = match query.decoded.as_deref() {
        None | Some("false" | "0") => false,
        Some("" | "true" | "1") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "decoded={other}: use decoded=true (each response as posted) or leave it out (base64, as the Python gitfaas)"
            )))
        }
    };
    let store = &state.services.lifecycle().store;
    let Some(record) = store.run(&super::run_uid(&path)?).await? else {
        return Err(ApiError::unknown_run(path.as_str()));
    };
    let responses: Vec<Value> = store
        .responses(&record)
        .await?
        .into_iter()
        .map(|r| match r {
            None => Value::Null,
            Some(r) if decoded => r.body,
            Some(r) => Value::String(r.base64()),
        })
        .collect();
    Ok(HttpResponse::Ok().json(Responses {
        error: false,
        responses,
    }))
}
