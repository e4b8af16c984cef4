//! The web console: the files of console/ (built by build.rs, compiled into
//! the binary) served at `/ui/`, with `/` and `/ui` redirecting there.
//!
//! The console is a client of the public API like any other: it calls the
//! routes of the route table with the token its user enters, so it has no
//! route of its own beyond its files, and these are not part of the API
//! (not in the route table, not in the OpenAPI document). Every answer
//! carries a strict Content-Security-Policy — the console's own script and
//! style sheet only, calls to this origin only, never framed — so that a
//! run's logs or a manifest shown on a page can never run as script.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::ApiError;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));
}

/// Where the console is served.
pub const PREFIX: &str = "/ui/";

/// The policy of every console answer: nothing inline, nothing from
/// elsewhere, no framing, no `<base>`, forms posting nowhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Registers `/`, `/ui` and `/ui/{file}` (GET and HEAD).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let read = || {
        web::route()
            .guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
    };
    let other = || web::to(|req: HttpRequest| super::method_not_allowed(req, "GET, HEAD".into()));
    cfg.service(
        web::resource(["/", "/ui"])
            .route(read().to(redirect))
            .default_service(other()),
    );
    cfg.service(
        web::resource("/ui/{file:.*}")
            .route(read().to(file))
            .default_service(other()),
    );
}

/// `/` and `/ui`: the console's index, by a relative `Location` so that a
/// proxy serving gitfaas under a path prefix keeps it.
async fn redirect() -> HttpResponse {
    secured(HttpResponse::Found())
        .insert_header((header::LOCATION, "ui/"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .finish()
}

/// One of the console's files; `/ui/` is its index.
async fn file(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = if name.is_empty() {
        "index.html"
    } else {
        name.as_str()
    };
    let Some((_, content_type, hashed, bytes)) = assets::ASSETS.iter().find(|(n, ..)| *n == name)
    else {
        return Err(ApiError::not_found(format!(
            "the console has no file {}: open {PREFIX}",
            crate::telemetry::access_path(req.path())
        )));
    };
    // A hashed name never changes content: cached for good. The index (which
    // names them) is asked again every time, so a new binary's console is
    // what the next load shows.
    let cache = if *hashed {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok(secured(HttpResponse::Ok())
        .insert_header((header::CONTENT_TYPE, *content_type))
        .insert_header((header::CACHE_CONTROL, cache))
        .body(*bytes))
}

/// The headers every console answer carries.
fn secured(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // (No Cross-Origin-Opener-Policy: over plain http, as gitfaas is
        // often reached inside a cluster, chromium ignores it with an error
        // in the console; frame-ancestors and X-Frame-Options already keep
        // the console out of other sites' pages.)
        .insert_header(("Cross-Origin-Resource-Policy", "same-origin"));
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(uri: &str) -> actix_web::dev::ServiceResponse {
        let app = actix_web::test::init_service(actix_web::App::new().configure(configure)).await;
        actix_web::test::call_service(
            &app,
            actix_web::test::TestRequest::get().uri(uri).to_request(),
        )
        .await
    }

    fn header<'a>(response: &'a actix_web::dev::ServiceResponse, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[actix_web::test]
    async fn the_root_redirects_to_the_console() {
        for uri in ["/", "/ui"] {
            let response = get(uri).await;
            assert_eq!(response.status().as_u16(), 302, "{uri}");
            assert_eq!(header(&response, "location"), "ui/", "{uri}");
        }
    }

    /// The index names the hashed script and style sheet, which are served
    /// with the policy, nosniff, and cached for good; the index is not.
    #[actix_web::test]
    async fn the_index_and_its_files_are_served_with_the_policy() {
        let index = get("/ui/").await;
        assert_eq!(index.status().as_u16(), 200);
        assert_eq!(
            header(&index, "content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(header(&index, "x-content-type-options"), "nosniff");
        assert_eq!(header(&index, "cache-control"), "no-cache");
        assert!(header(&index, "content-type").starts_with("text/html"));
        let body = actix_web::body::to_bytes(index.into_body())
            .await
            .expect("body");
        let body = String::from_utf8_lossy(&body);
        assert!(
            !body.contains("<script>") && !body.contains("style="),
            "{body}"
        );
        for (name, _, hashed, _) in assets::ASSETS.iter().filter(|a| a.2) {
            assert!(*hashed);
            assert!(body.contains(name), "the index names {name}");
            let file = get(&format!("/ui/{name}")).await;
            assert_eq!(file.status().as_u16(), 200);
            assert_eq!(
                header(&file, "content-security-policy"),
                CONTENT_SECURITY_POLICY
            );
            assert!(header(&file, "cache-control").contains("immutable"));
        }
    }

    /// Only GET and HEAD: anything else is the API's JSON 405.
    #[actix_web::test]
    async fn another_method_is_a_405() {
        let app = actix_web::test::init_service(actix_web::App::new().configure(configure)).await;
        for uri in ["/", "/ui/"] {
            let request = actix_web::test::TestRequest::post().uri(uri).to_request();
            let response = actix_web::test::call_service(&app, request).await;
            assert_eq!(response.status().as_u16(), 405, "{uri}");
            let request = actix_web::test::TestRequest::default()
                .method(actix_web::http::Method::HEAD)
                .uri(uri)
                .to_request();
            let response = actix_web::test::call_service(&app, request).await;
            assert!(response.status().as_u16() < 400, "HEAD {uri}");
        }
    }

    #[actix_web::test]
    async fn an_unknown_file_is_the_api_404() {
        let response = get("/ui/nothing.js").await;
        assert_eq!(response.status().as_u16(), 404);
    }

    /// The policy allows nothing inline and nothing from elsewhere.
    #[test]
    fn the_policy_is_strict() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(!CONTENT_SECURITY_POLICY.contains('*'));
        for directive in [
            "default-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
        }
    }
}
