//! `POST /response/{functionUid}`: a function reports its result; the
//! function uid is the credential. `GET /response/{requestUid}`: the results
//! so far, one entry per function, null while pending (the Python version's
//! `{"error": false, "responses": [...]}`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{read_body, ApiError, AppState, Authenticated, BodyKind};

pub async fn post(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (body, kind) = read_body(&req, payload, state.max_payload_bytes).await?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the response body is empty: post the function's result as JSON or text".into(),
        ));
    }
    let value = match kind {
        BodyKind::Json => serde_json::from_slice::<Value>(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body is declared application/json but is not valid JSON ({e})"
            ))
        })?,
        BodyKind::Other => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    state
        .lifecycle
        .store
        .put_response(path.as_str(), value)
        .await?;
    tracing::info!(
        function_uid = path.as_str(),
        bytes = body.len(),
        "response stored"
    );
    Ok(HttpResponse::Ok().json(json!({"error": false})))
}

pub async fn get(
    _: Authenticated,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let store = &state.lifecycle.store;
    let Some(record) = store.request(path.as_str()).await? else {
        return Err(ApiError::NotFound(format!(
            "unknown or expired request uid `{}`: use the requestUid a publish returned, within the expiration time",
            path.as_str()
        )));
    };
    let responses: Vec<Value> = store
        .responses(&record)
        .await?
        .into_iter()
        .map(|r| r.map(|r| r.body).unwrap_or(Value::Null))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"error": false, "responses": responses})))
}
