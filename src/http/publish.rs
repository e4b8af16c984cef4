//! `POST /publish/{topic}`: reads the body (bounded) and the query, then runs
//! `publish::publish`. `?dryRun=true` is consumed here; every other query
//! parameter is a template variable.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;

use super::{ApiError, AppState};
use crate::publish::{self, Context, Request};

pub async fn publish(
    req: HttpRequest,
    path: web::Path<String>,
    mut payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_content_type(&req)?;
    let limit = state.max_payload_bytes;
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    if is_json(&req) && !body.is_empty() {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body is declared application/json but is not valid JSON ({e}); fix it or send it as text/plain"
            ))
        })?;
    }

    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?
        .into_inner();
    let mut dry_run = false;
    let mut params = Vec::with_capacity(query.len());
    for (k, v) in query {
        if k == "dryRun" {
            dry_run = match v.as_str() {
                "" | "true" | "1" => true,
                "false" | "0" => false,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "dryRun={other}: use dryRun=true or dryRun=false"
                    )))
                }
            };
        } else {
            params.push((k, v));
        }
    }

    let snapshot = state.syncer.snapshot().ok_or_else(|| {
        let why = state
            .syncer
            .status()
            .last_error
            .map(|e| e.message)
            .unwrap_or_else(|| "it is still running".into());
        publish::PublishError::NoSnapshot(why)
    })?;
    let ctx = Context {
        snapshot,
        policy: &state.policy,
        applier: &state.applier,
        public_url: &state.public_url,
    };
    let report = publish::publish(
        &ctx,
        Request {
            topic: path.as_str(),
            body: &body,
            params,
            dry_run,
        },
    )
    .await?;
    if report.error {
        return Err(ApiError::PartialApply(Box::new(report)));
    }
    let status = if dry_run {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::ACCEPTED
    };
    Ok(HttpResponse::build(status).json(report))
}

fn content_type(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
}

fn is_json(req: &HttpRequest) -> bool {
    content_type(req).is_some_and(|c| {
        let essence = c.split(';').next().unwrap_or("").trim().to_string();
        essence == "application/json" || essence.ends_with("+json")
    })
}

fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(ct) = content_type(req) else {
        return Ok(());
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let ok = essence.is_empty()
        || essence.starts_with("text/")
        || essence == "application/octet-stream"
        || essence == "application/json"
        || essence.ends_with("+json");
    if ok {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(essence.to_string()))
    }
}
