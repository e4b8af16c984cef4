//! What a browser may do: nothing cross-site, and nothing through a host
//! name gitfaas does not serve.
//!
//! A page on another site can make a browser send a "simple" request
//! (`POST` with `text/plain`, no preflight) to gitfaas — with the API open,
//! or with cookies the API does not use but a proxy might — and DNS
//! rebinding lets such a page reach a gitfaas on the victim's network under
//! the attacker's host name. So every state-changing request (any method but
//! `GET`/`HEAD`/`OPTIONS`, and `GET /refresh`, which syncs) is refused with
//! 403 when it says it comes from another site (`Sec-Fetch-Site:
//! cross-site`) or carries an `Origin` that is neither this server's own nor
//! in `--allowed-origins`; and with `--allowed-hosts`, a request whose `Host`
//! is not listed is refused on every path but the probes. Non-browser
//! clients (curl, functions, git servers) send neither header and pass.
//! The rules are [`crate::auth::BrowserPolicy`]; this is where they run.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use super::{ApiError, AppState};

/// The middleware: refuses what [`crate::auth::BrowserPolicy::refusal`] refuses.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let secure = req.connection_info().scheme() == "https";
        if let Some(why) = state.access.browser.refusal(
            req.method().as_str(),
            req.path(),
            header("host"),
            header("origin"),
            header("sec-fetch-site"),
            secure,
        ) {
            return Err(ApiError::forbidden(why).into());
        }
    }
    next.call(req).await
}
