//! `GET /requests/{requestUid}/logs`: the logs of every container of the
//! request's pods, each line prefixed `<pod>/<container>: `, as chunked
//! text/plain (`cluster::logs` reads them). `?follow=true` streams until the
//! request's Jobs have finished or the client goes away, `?tail=N` keeps
//! the last N lines of each container, `?container=NAME` one container.
//! The `Gitfaas-Run-Status` header says where the run was when the answer
//! began: an empty body is then "nothing to show yet" or "gone", not an
//! error.

use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;

use crate::identity::Permission;

use super::{ApiError, AppState, Authenticated};
use crate::cluster::{LogError, LogOptions};
use crate::names::Rule;
use crate::run::runs::{RunLogs, RunLogsError};

/// The header that carries the run's status.
pub const RUN_STATUS_HEADER: &str = "Gitfaas-Run-Status";

/// The header that says where the lines come from: `cluster` (the pods,
/// now) or `kept` (the tails kept when the run finished; its Jobs are gone).
pub const LOG_SOURCE_HEADER: &str = "Gitfaas-Log-Source";

fn options(query: &str) -> Result<LogOptions, ApiError> {
    let query = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?
        .into_inner();
    let mut options = LogOptions::default();
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in &query {
        if seen.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "{k} is given more than once: give it once"
            )));
        }
        seen.push(k);
        match k.as_str() {
            "follow" => {
                options.follow = match v.as_str() {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "follow={other}: use follow=true (stream until the request's Jobs have finished) or follow=false"
                        )))
                    }
                }
            }
            "tail" => {
                let lines = v.parse::<u32>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "tail={v}: use a whole number of lines, 0 or more (e.g. tail=100: the last 100 lines of each container), or leave tail out for whole logs"
                    ))
                })?;
                options.tail = Some(i64::from(lines));
            }
            "container" => {
                // A container name is a DNS label; checked here, a value
                // cannot reach the API server's query as anything else.
                if !Rule::Label.accepts(v, false) {
                    return Err(ApiError::bad_request(format!(
                        "container={v}: a container name is {}; use the name of one of the Job's containers",
                        Rule::Label.describe()
                    )));
                }
                options.container = Some(v.clone());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`: /requests/{{uid}}/logs takes follow, tail and container"
                )))
            }
        }
    }
    Ok(options)
}

#[utoipa::path(
    get,
    path = "/requests/{requestUid}/logs",
    operation_id = "getRequestLogs",
    tag = "requests",
    summary = "The logs of a run's containers",
    description = "Every container of the run's pods, through the API server's pods/log, each line prefixed `<pod>/<container>: `, as chunked text. The `Gitfaas-Run-Status` header says where the run was when the answer began (Pending, Running, Succeeded, Failed, Cancelled, Gone, NoJobs): an empty body is then nothing to show yet, or gone. Once the run's Jobs are gone (ttlSecondsAfterFinished, a cancel), the end of each container's log kept when it finished is answered instead (`Gitfaas-Log-Source: kept`; at most --log-archive-bytes of each). At most 32 streams at once (429 beyond).",
    params(
        ("requestUid" = String, Path, min_length = 1, description = "The requestUid a publish returned"),
        ("follow" = Option<bool>, Query, description = "Stream until the run's Jobs have finished (or the client goes away)"),
        ("tail" = Option<u32>, Query, description = "Only the last N lines of each container"),
        ("container" = Option<String>, Query, description = "Only this container"),
    ),
    responses(
        (status = 200, content_type = "text/plain", body = String, description = "The lines",
            headers(
                ("Gitfaas-Run-Status" = String, description = "Where the run was when the answer began"),
                ("Gitfaas-Log-Source" = String, description = "`cluster`: read from the pods; `kept`: the tails kept when the run finished"),
            )),
    ),
    security(("bearer" = []), ()),
)]
pub async fn get(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth.may(&state, Permission::read_run()).await?;
    let options = options(req.query_string())?;
    let uid = path.as_str();
    let Some(record) = state
        .services
        .lifecycle()
        .store
        .run(&super::run_uid(uid)?)
        .await?
    else {
        return Err(ApiError::unknown_run(uid));
    };
    tracing::Span::current().record("request_uid", uid);
    let logs = match state.services.runs().logs(&record, options).await {
        Ok(RunLogs::Live(logs)) => *logs,
        Ok(RunLogs::Kept { state, text }) => {
            return Ok(HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .insert_header((RUN_STATUS_HEADER, state))
                .insert_header((LOG_SOURCE_HEADER, "kept"))
                .insert_header(("Cache-Control", "no-store"))
                .body(text))
        }
        Err(RunLogsError::Store(e)) => return Err(e.into()),
        Err(RunLogsError::Logs(LogError::Cluster(e))) => return Err(ApiError::Lifecycle(e.into())),
        Err(RunLogsError::Logs(other)) => {
            return Err(ApiError::refused(other.kind(), other.to_string()))
        }
    };
    let status = logs.status();
    // The stream looks at the connection itself: actix would notice a
    // client that went away only when it next writes, and a quiet follow
    // writes nothing for minutes.
    let gone = {
        let req = req.clone();
        async move { super::client::gone(&req).await }
    };
    let body = logs
        .into_stream(gone)
        .map(Ok::<_, std::convert::Infallible>);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((RUN_STATUS_HEADER, status.as_str()))
        .insert_header((LOG_SOURCE_HEADER, "cluster"))
        .insert_header(("Cache-Control", "no-store"))
        // Proxies that buffer answers (nginx) pass a follow on as it comes.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    #[test]
    fn the_query_says_what_to_read() {
        assert_eq!(options("").expect("none"), LogOptions::default());
        assert_eq!(
            options("follow=true&tail=5&container=main").expect("all"),
            LogOptions {
                follow: true,
                tail: Some(5),
                container: Some("main".into())
            }
        );
        assert!(options("follow").expect("bare").follow);
        assert!(!options("follow=0").expect("0").follow);
        assert_eq!(options("tail=0").expect("0").tail, Some(0));
    }

    #[test]
    fn a_bad_value_is_refused_naming_its_parameter() {
        for (query, names) in [
            ("follow=yes", "follow=yes"),
            ("tail=-1", "tail=-1"),
            ("tail=ten", "tail=ten"),
            ("tail=99999999999", "tail=99999999999"),
            ("container=Main", "container=Main"),
            ("container=a%2Fb", "container=a/b"),
            ("container=", "container="),
            ("tail=1&tail=2", "tail is given more than once"),
            ("follows=true", "`follows`"),
        ] {
            let e = options(query).expect_err(query);
            assert_eq!(e.code(), Code::BadRequest, "{query}");
            assert!(e.to_string().contains(names), "{query}: {e}");
        }
    }
}
