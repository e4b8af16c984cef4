//! The HTTP API (actix-web): routes, shared state, and the one place where
//! errors become statuses and JSON bodies (`error.rs`).
//!
//! Handlers read the request into domain values and call `publish`,
//! `source` and `cluster`; none of those know about HTTP.

pub mod browser;
pub mod client;
pub mod console;
mod error;
mod health;
mod logs;
mod metrics;
pub mod openapi;
mod publish;
mod refresh;
mod requests;
mod responses;
mod routes;
pub mod span;
mod topics;
mod webhook;
pub mod worker;

use std::sync::Arc;

use actix_web::web;

use crate::services::Services;
use crate::settings::Settings;
use crate::uid::{FunctionUid, RequestUid};

pub use error::ApiError;
// The CLI (`gitfaas logs`) reads the header by the same name.
pub use logs::RUN_STATUS_HEADER;

/// State shared by every worker.
pub struct AppState {
    /// The application's parts.
    pub services: Arc<Services>,
    /// Who may call, and how.
    pub access: Access,
    /// Largest accepted body.
    pub max_payload_bytes: usize,
}

/// Who may call the API, and how: the HTTP side's own settings.
pub struct Access {
    /// API bearer tokens (`--auth tokens`).
    pub tokens: Option<crate::auth::ApiTokens>,
    /// Kubernetes identities (`--auth kubernetes`).
    pub kubernetes: Option<crate::identity::Reviewer>,
    /// The webhook secret; None disables the webhook.
    pub webhook: Option<crate::auth::WebhookSecret>,
    /// What browsers may do.
    pub browser: crate::auth::BrowserPolicy,
    /// Who published and cancelled lately (`/status`, the metrics).
    pub callers: crate::identity::RecentCallers,
}

impl Access {
    /// Reads the credentials files the settings name; Kubernetes
    /// permissions are asked in `home_namespace`, where gitfaas runs.
    pub fn load(settings: &Settings, home_namespace: &str) -> Result<Self, crate::auth::AuthError> {
        if settings.auth.is_open()
            && !settings
                .warnings
                .iter()
                .any(|w| w == crate::settings::OPEN_API)
        {
            tracing::warn!("NO API AUTHENTICATION: anyone who can reach this port can publish, refresh, read and cancel runs; choose with --auth kubernetes|tokens|none (GITFAAS_AUTH)");
        }
        let tokens = if settings.auth.tokens {
            match &settings.api_token_file {
                Some(path) => {
                    let t = crate::auth::ApiTokens::load(path)?;
                    tracing::info!(tokens = t.len(), "API token authentication on");
                    Some(t)
                }
                None => None,
            }
        } else {
            None
        };
        let kubernetes = settings.auth.kubernetes.then(|| {
            tracing::info!(
                audience = settings.auth.token_audience,
                namespace = home_namespace,
                "Kubernetes authentication on: tokens reviewed for the audience, permissions on gitfaas.io resources asked in the namespace"
            );
            crate::identity::Reviewer::new(&settings.auth.token_audience, home_namespace)
        });
        let webhook = match &settings.webhook_secret_file {
            Some(path) => Some(crate::auth::WebhookSecret::load(path)?),
            None => None,
        };
        Ok(Access {
            tokens,
            kubernetes,
            webhook,
            browser: settings.browser.clone(),
            callers: crate::identity::RecentCallers::default(),
        })
    }

    /// Whether every caller is let in (`--auth none`).
    fn is_open(&self) -> bool {
        self.tokens.is_none() && self.kubernetes.is_none()
    }
}

/// The HTTP server over `listener`, serving every route with `services`
/// and `access`; not yet running.
pub fn serve(
    listener: std::net::TcpListener,
    services: Arc<Services>,
    access: Access,
    settings: &Settings,
) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(AppState {
        services,
        access,
        max_payload_bytes: settings.max_payload_bytes,
    });
    let server = actix_web::HttpServer::new(move || {
        // Runs on each worker's runtime: the worker's own client is built there.
        let calls = web::Data::new(worker::Calls(state.services.applier().worker_calls()));
        actix_web::App::new()
            .app_data(state.clone())
            .app_data(calls)
            .wrap(actix_web::middleware::from_fn(worker::around))
            .wrap(
                // Method and path only: no query values, no whole function uid.
                actix_web::middleware::Logger::new("%{method}xi %{path}xi %s %Dms")
                    .custom_request_replace("method", |req| req.method().to_string())
                    .custom_request_replace("path", |req| crate::telemetry::access_path(req.path()))
                    .log_target("gitfaas::access"),
            )
            .wrap(actix_web::middleware::from_fn(browser::guard))
            .wrap(actix_web::middleware::from_fn(span::around))
            .configure(configure)
            // The web console's files: not API routes (not in the table).
            .configure(console::configure)
            .default_service(web::to(not_found))
    })
    .on_connect(client::on_connect)
    .keep_alive(KEEP_ALIVE)
    .shutdown_timeout(settings.shutdown_timeout.as_secs())
    // Under a burst, reading a request head can wait for a CPU: 5 s (the
    // default) answered 408 to clients that had done nothing wrong.
    .client_request_timeout(std::time::Duration::from_secs(30))
    .listen(listener)?
    .run();
    Ok(server)
}

/// How many connections the kernel queues for accept: actix' own default
/// when it binds (std binds with 128, and a burst of a thousand clients
/// overflowed it: ListenOverflows, SYNs dropped and retried, handshakes
/// half-done under load). Linux caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: i32 = 1024;

/// How long an idle keep-alive connection is kept: longer than the idle
/// timeouts of common clients' pools and proxies (hyper/reqwest and Go 90 s,
/// AWS ALB and nginx upstreams 60 s), so the client closes an idle
/// connection first. Closing first ourselves races a client that reuses the
/// connection just as our FIN is on its way: its request meets a closed
/// socket, the kernel resets it (TcpExtTCPAbortOnData), and the client
/// cannot know whether its publish happened: with actix' 5 s default, one
/// of the two causes found for the resets the thousand-publish load test
/// saw (the other: the accept queue, [`LISTEN_BACKLOG`]).
pub const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(120);

/// The listening socket on `addr`, with [`LISTEN_BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std does on Unix: a restart binds again while old connections
    // are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Proof that the request carried valid credentials (or that none are
/// asked for), and who the caller is.
pub struct Authenticated {
    /// What scopes the caller's Idempotency-Keys: `open` without
    /// authentication; `t-` and 16 hex digits of a file token's SHA-256;
    /// `k-` and 16 hex digits of a Kubernetes username's SHA-256 (so a
    /// rotated projected token keeps its keys). Never a token.
    pub caller: String,
    /// Who called, for logs and `/status`: a Kubernetes username, the
    /// file token's `t-…` id, or `anonymous`. Never a token.
    pub user: String,
    /// The Kubernetes identity, whose permissions are asked per route.
    identity: Option<std::sync::Arc<crate::identity::Identity>>,
}

impl Authenticated {
    /// Whether the caller may do `what`: a Kubernetes identity is asked of
    /// the API server (SubjectAccessReview); a file token and an open API
    /// may do everything, as before.
    pub async fn may(
        &self,
        state: &AppState,
        what: crate::identity::Permission,
    ) -> Result<(), ApiError> {
        let (Some(identity), Some(reviewer)) = (&self.identity, &state.access.kubernetes) else {
            return Ok(());
        };
        let client = state.services.applier().review_client();
        reviewer.authorize(&client, identity, &what).await?;
        Ok(())
    }
}

/// The app state is not registered where an extractor looks for it: a bug
/// in how the server was assembled, never the caller's doing.
#[derive(Debug, thiserror::Error)]
#[error("gitfaas is misassembled: its state is missing, so the request's credentials cannot be checked; nothing was done (a bug in gitfaas: please report it)")]
pub struct StateMissing;

impl actix_web::ResponseError for StateMissing {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        tracing::error!(status = 500, error = %self, "request failed");
        // The body every API error has (error.rs), with its code: a client
        // branching on `code` must find one here too.
        actix_web::HttpResponse::InternalServerError().json(error::ErrorBody {
            error: true,
            code: crate::error::Code::Internal,
            message: self.to_string(),
        })
    }
}

impl actix_web::FromRequest for Authenticated {
    type Error = actix_web::Error;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        // Fail closed: without the state there is no knowing whether
        // credentials are required, and letting the request through as
        // `open` would publish for anyone.
        let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
            return Box::pin(std::future::ready(Err(StateMissing.into())));
        };
        let presented = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_string());
        Box::pin(async move {
            let who = authenticate(&state, presented.as_deref()).await?;
            // Every log line of the request says who called (never how).
            tracing::Span::current().record("user", who.user.as_str());
            Ok(who)
        })
    }
}

/// Who presented `token`, by the ways `--auth` names.
async fn authenticate(state: &AppState, token: Option<&str>) -> Result<Authenticated, ApiError> {
    let access = &state.access;
    if access.is_open() {
        return Ok(Authenticated {
            caller: "open".into(),
            user: "anonymous".into(),
            identity: None,
        });
    }
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::unauthorized(if access.kubernetes.is_some() {
            "authentication required: send Authorization: Bearer <token>, a Kubernetes service-account token minted for gitfaas' audience (a projected serviceAccountToken volume)"
        } else {
            "authentication required: send Authorization: Bearer <token>"
        }));
    };
    // The file first: a local, constant-time look, no call to the cluster.
    if let Some(tokens) = &access.tokens {
        if tokens.verify(token) {
            let caller = crate::auth::caller_id(token);
            return Ok(Authenticated {
                user: caller.clone(),
                caller,
                identity: None,
            });
        }
    }
    let Some(reviewer) = &access.kubernetes else {
        return Err(ApiError::unauthorized(
            "the bearer token is not valid: use a token from gitfaas' --api-token-file",
        ));
    };
    let client = state.services.applier().review_client();
    let identity = reviewer.authenticate(&client, token).await?;
    Ok(Authenticated {
        caller: crate::auth::caller_id(&identity.user).replacen("t-", "k-", 1),
        user: identity.user.clone(),
        identity: Some(identity),
    })
}

/// Registers every route of the route table ([`routes::ROUTES`]), one
/// resource per path. A known path asked with another method answers 405
/// with a JSON error naming the methods it takes (actix' own 405 has an
/// empty body).
pub fn configure(cfg: &mut web::ServiceConfig) {
    // A query string an extractor cannot read (`?decoded=a&decoded=b`)
    // answers the API's JSON 400, not actix' text/plain one.
    cfg.app_data(
        web::QueryConfig::default().error_handler(|e, _| {
            ApiError::bad_request(format!("invalid query string: {e}")).into()
        }),
    );
    // Several rows may serve one path (`GET` and `POST /response/{uid}`):
    // actix wants them on one resource, or the first one's 405 would
    // answer for the others.
    let mut resources: Vec<(String, Documented, Option<actix_web::Resource>)> = Vec::new();
    for route in routes::ROUTES {
        let path = (route.path)();
        let index = match resources.iter().position(|(p, ..)| *p == path) {
            Some(index) => index,
            None => {
                resources.push((path.clone(), Vec::new(), Some(web::resource(path))));
                resources.len() - 1
            }
        };
        let (_, methods, resource) = &mut resources[index];
        for method in (route.methods)() {
            let method = routes::method(&method);
            methods.push((method.clone(), route.errors));
            *resource = resource.take().map(|r| (route.register)(r, method));
        }
    }
    for (_, mut methods, resource) in resources {
        // Named in a fixed order, whatever the table's: `GET, POST`.
        let rank = |(m, _): &(actix_web::http::Method, _)| {
            [
                "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
            ]
            .iter()
            .position(|known| *known == m.as_str())
        };
        methods.sort_by_key(rank);
        let allowed = methods
            .iter()
            .map(|(m, _)| m.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let Some(resource) = resource else { continue };
        let resource = resource.default_service(web::to(move |req: actix_web::HttpRequest| {
            method_not_allowed(req, allowed.clone())
        }));
        #[cfg(debug_assertions)]
        let resource = {
            let documented = std::rc::Rc::new(methods);
            resource.wrap(actix_web::middleware::from_fn(move |req, next| {
                documented_only(documented.clone(), req, next)
            }))
        };
        #[cfg(not(debug_assertions))]
        let _ = methods;
        cfg.service(resource);
    }
}

/// The methods of a path, each with the codes its route documents.
type Documented = Vec<(actix_web::http::Method, &'static [crate::error::Code])>;

/// Debug builds: an error a route's handler answers must have a code the
/// route documents (the route table's row). The table's test checks what
/// the handlers' error types can give; this checks what they did give, so
/// that a handler calling something new, or an exception of the table that
/// is wrong, fails the integration tests that meet it rather than going
/// unseen. A 405 is the resource's, not a route's.
#[cfg(debug_assertions)]
async fn documented_only(
    documented: std::rc::Rc<Documented>,
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let method = req.method().clone();
    let path = crate::telemetry::access_path(req.path());
    let response = next.call(req).await?;
    let code = response
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .map(ApiError::code)
        .filter(|code| *code != crate::error::Code::MethodNotAllowed);
    if let Some(code) = code {
        let listed = documented
            .iter()
            .any(|(m, codes)| *m == method && codes.contains(&code));
        if !listed {
            tracing::error!(%method, path, code = code.as_str(), "an error code its route does not document (src/http/routes.rs)");
            debug_assert!(
                listed,
                "{method} {path} answered `{code}`, which its route does not document (src/http/routes.rs)"
            );
        }
    }
    Ok(response)
}

async fn method_not_allowed(
    req: actix_web::HttpRequest,
    allowed: String,
) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: crate::telemetry::access_path(req.path()),
        allowed,
    })
}

/// How long a request body may take to arrive, whole.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// How a body declared itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// application/json or +json.
    Json,
    /// Text, octet-stream or no content type.
    Other,
}

/// The run a path names (`/requests/{requestUid}`, `/response/{requestUid}`):
/// parsed once, here. What cannot be a run's uid answers as an unknown run.
pub fn run_uid(path: &str) -> Result<RequestUid, ApiError> {
    RequestUid::parse(path).map_err(|_| ApiError::unknown_run(path))
}

/// The function a path names (`POST /response/{uid}`): parsed once, here.
/// What cannot be a function's uid answers as an unknown function.
pub fn function_uid(path: &str) -> Result<FunctionUid, ApiError> {
    FunctionUid::parse(path).map_err(|_| {
        crate::store::StoreError::UnknownFunction(crate::telemetry::uid_prefix(path)).into()
    })
}

/// Reads a body of at most `limit` bytes with an accepted content type
/// (JSON, text, octet-stream or none); a JSON body must parse.
pub async fn read_body(
    req: &actix_web::HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(web::Bytes, BodyKind), ApiError> {
    use actix_web::http::header;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase());
    let essence = content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim()
        .to_string();
    let kind = if essence == "application/json" || essence.ends_with("+json") {
        BodyKind::Json
    } else if essence.is_empty()
        || essence.starts_with("text/")
        || essence == "application/octet-stream"
        // What `curl -d` and `wget --post-data` send: taken as the raw bytes.
        || essence == "application/x-www-form-urlencoded"
    {
        BodyKind::Other
    } else {
        return Err(ApiError::UnsupportedMediaType(essence));
    };
    let body = read_any(req, payload, limit).await?;
    if kind == BodyKind::Json && !body.is_empty() {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body is declared application/json but is not valid JSON ({e}); fix it or send it as text/plain"
            ))
        })?;
    }
    Ok((body.freeze(), kind))
}

/// Reads a body of at most `limit` bytes whatever its content type (a
/// declared length over the limit is refused before reading).
pub async fn read_any(
    req: &actix_web::HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    read_limited(payload, limit, declared.unwrap_or(0)).await
}

/// Reads a whole body of at most `limit` bytes (413 beyond) within
/// [`BODY_READ_TIMEOUT`] (408 after): a body that never finishes must not
/// hold a connection, nor the permit its request holds.
pub async fn read_limited(
    mut payload: web::Payload,
    limit: usize,
    capacity: usize,
) -> Result<web::BytesMut, ApiError> {
    use futures::StreamExt;
    let mut body = web::BytesMut::with_capacity(capacity.min(limit));
    let deadline = tokio::time::Instant::now() + BODY_READ_TIMEOUT;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, payload.next()).await {
            Err(_) => return Err(ApiError::RequestTimeout(BODY_READ_TIMEOUT)),
            Ok(None) => return Ok(body),
            Ok(Some(chunk)) => chunk,
        };
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the body failed: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
}

/// The answer for paths and methods no route serves.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "no route for {} {}: see the README for the API (POST /publish/{{topic}}, GET /refresh, GET /status …)",
        req.method(),
        crate::telemetry::access_path(req.path())
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::FromRequest;

    /// A query string that does not deserialize is the API's JSON 400
    /// with its code, as every refusal is.
    #[actix_web::test]
    async fn an_unreadable_query_string_is_a_json_bad_request() {
        #[derive(serde::Deserialize)]
        struct Flag {
            #[allow(dead_code)] // Read by serde only: the test is its refusal.
            decoded: Option<String>,
        }
        let app = actix_web::test::init_service(
            actix_web::App::new()
                .configure(configure)
                .route("/q", web::get().to(|_: web::Query<Flag>| async { "" })),
        )
        .await;
        let request = actix_web::test::TestRequest::get()
            .uri("/q?decoded=a&decoded=b")
            .to_request();
        let response = actix_web::test::call_service(&app, request).await;
        assert_eq!(response.status(), actix_web::http::StatusCode::BAD_REQUEST);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert_eq!(content_type.as_deref(), Some("application/json"));
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
        assert_eq!(body["code"], "bad_request", "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("duplicate field `decoded`")),
            "{body}"
        );
    }

    /// A path asked with a method it does not take answers the JSON 405
    /// naming the methods it does, in a fixed order whatever the route
    /// table's: one resource per path, whichever rows serve it.
    #[actix_web::test]
    async fn another_method_answers_405_naming_the_paths_methods() {
        let app = actix_web::test::init_service(actix_web::App::new().configure(configure)).await;
        for (method, uri, allowed) in [
            ("PUT", "/response/u", "GET, POST"),
            ("POST", "/requests/r", "GET, DELETE"),
            ("DELETE", "/refresh", "GET, POST"),
            ("GET", "/publish/t", "POST"),
        ] {
            let request = actix_web::test::TestRequest::default()
                .method(actix_web::http::Method::from_bytes(method.as_bytes()).expect("a method"))
                .uri(uri)
                .to_request();
            let response = actix_web::test::call_service(&app, request).await;
            assert_eq!(response.status().as_u16(), 405, "{method} {uri}");
            let allow = response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            assert_eq!(allow.as_deref(), Some(allowed), "{method} {uri}");
            let body = actix_web::body::to_bytes(response.into_body())
                .await
                .expect("body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
            assert_eq!(body["code"], "method_not_allowed", "{body}");
        }
    }

    /// Without the app state the extractor cannot know whether tokens are
    /// required: it refuses (500, the API's JSON error body with its code), never lets the
    /// request through as `open`.
    #[actix_web::test]
    async fn without_the_app_state_authentication_fails_closed() {
        let (req, mut payload) = actix_web::test::TestRequest::post()
            .uri("/publish/t")
            .insert_header(("Authorization", "Bearer anything"))
            .to_http_parts();
        let refused = Authenticated::from_request(&req, &mut payload)
            .await
            .err()
            .expect("refused without state");
        let response = refused.error_response();
        assert_eq!(
            response.status(),
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR
        );
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
        assert_eq!(body["error"], true, "{body}");
        assert_eq!(body["code"], "internal", "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("state is missing")),
            "{body}"
        );
    }
}
