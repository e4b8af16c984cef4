//! What the HTTP client subcommands (`publish`, `runs`, `logs`, `cancel`,
//! `tree`) share: the base URL and bearer token, endpoint URLs, and the
//! rule for a refused call — the answer on standard output, the status and
//! the server's message on standard error, exit code 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, Url};

use super::FINDINGS;
use crate::settings::ClientArgs;

/// Why a call could not be made or its answer read (exit code 2); a call
/// gitfaas answered with an error is not one of these (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// --url is not a base URL.
    #[error("--url {url}: {why}")]
    Url { url: String, why: String },
    /// --token-file could not be read.
    #[error("while reading --token-file {}: {source}", path.display())]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    /// --token-file holds no token.
    #[error("--token-file {} is empty", path.display())]
    EmptyToken { path: PathBuf },
    /// The HTTP client could not be set up (TLS roots).
    #[error("while setting up the HTTP client: {0}")]
    Build(reqwest::Error),
    /// No answer: connection refused, timeout, broken connection.
    #[error("while calling {url}: {source}")]
    Send { url: Url, source: reqwest::Error },
    /// The answer broke off or could not be decoded.
    #[error("while reading the answer of {url}: {source}")]
    Read { url: Url, source: reqwest::Error },
    /// A success answer not in the shape this version of the CLI knows.
    #[error("unexpected answer from {url}: {why}")]
    Shape { url: Url, why: String },
}

/// A gitfaas to call.
pub struct ApiClient {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// `timeout` bounds each call in all; `None` for a stream that may stay
    /// quiet for minutes (`logs --follow`), which only the connect bounds.
    pub fn new(args: &ClientArgs, timeout: Option<Duration>) -> Result<Self, ClientError> {
        let bad = |why: String| ClientError::Url {
            url: args.url.clone(),
            why,
        };
        let base = Url::parse(&args.url).map_err(|e| bad(e.to_string()))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(bad("use an http:// or https:// URL".into()));
        }
        let token = match &args.token_file {
            Some(path) => Some(read_token(path)?),
            None => None,
        };
        let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(t) = timeout {
            http = http.timeout(t);
        }
        Ok(Self {
            base,
            token,
            http: http.build().map_err(ClientError::Build)?,
        })
    }

    /// The base URL with these path segments added, each percent-encoded:
    /// a uid or topic can only ever be one segment.
    pub fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // Checked in `new`: an http(s) URL can be a base.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request with the bearer token, when there is one.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends a request built by `request`.
    pub async fn send(&self, req: RequestBuilder, url: &Url) -> Result<Response, ClientError> {
        req.send().await.map_err(|source| ClientError::Send {
            url: url.clone(),
            source,
        })
    }

    /// Calls a JSON endpoint: the answer's JSON on success, else the
    /// refusal already printed (see `refused`) as the exit code to end with.
    pub async fn json(
        &self,
        method: Method,
        url: &Url,
        print_body: bool,
    ) -> Result<Result<serde_json::Value, ExitCode>, ClientError> {
        let resp = self.send(self.request(method, url.clone()), url).await?;
        let status = resp.status();
        let text = read_text(resp, url).await?;
        if !status.is_success() {
            return Ok(Err(refused(status, &text, print_body)));
        }
        serde_json::from_str(&text)
            .map(Ok)
            .map_err(|e| ClientError::Shape {
                url: url.clone(),
                why: e.to_string(),
            })
    }
}

fn read_token(path: &PathBuf) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::Token {
        path: path.clone(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ClientError::EmptyToken { path: path.clone() });
    }
    Ok(token.to_string())
}

/// The whole body of an answer, as text.
pub async fn read_text(resp: Response, url: &Url) -> Result<String, ClientError> {
    resp.text().await.map_err(|source| ClientError::Read {
        url: url.clone(),
        source,
    })
}

/// Prints an answer on standard output: JSON pretty-printed, anything else
/// as it is.
pub fn print_body(text: &str) {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => println!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| text.to_string())
        ),
        Err(_) => println!("{text}"),
    }
}

/// A call gitfaas refused: its answer on standard output when `print_body`
/// (publish and `-o json`: a script reads the error's code there), the
/// status and the server's message on standard error; exit code 1.
pub fn refused(status: reqwest::StatusCode, text: &str, print_body: bool) -> ExitCode {
    if print_body {
        self::print_body(text);
    }
    eprintln!("{}", refusal_line(status, text));
    ExitCode::from(FINDINGS)
}

fn refusal_line(status: reqwest::StatusCode, text: &str) -> String {
    let parsed = serde_json::from_str::<serde_json::Value>(text).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(|m| m.as_str());
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(|c| c.as_str());
    match (message, code) {
        (Some(m), Some(c)) => format!("gitfaas answered {status}: {m} ({c})"),
        (Some(m), None) => format!("gitfaas answered {status}: {m}"),
        _ => format!("gitfaas answered {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Result<ApiClient, ClientError> {
        ApiClient::new(
            &ClientArgs {
                url: url.into(),
                token_file: None,
            },
            None,
        )
    }

    #[test]
    fn endpoints_add_encoded_segments_to_the_base() {
        let c = client("http://h:5000").expect("client");
        assert_eq!(
            c.endpoint(&["requests", "r-1", "logs"]).as_str(),
            "http://h:5000/requests/r-1/logs"
        );
        let c = client("https://h/gitfaas/").expect("client");
        assert_eq!(
            c.endpoint(&["requests", "a/b?c"]).as_str(),
            "https://h/gitfaas/requests/a%2Fb%3Fc"
        );
        assert!(client("h:5000").is_err());
        assert!(client("not a url").is_err());
    }

    #[test]
    fn a_refusal_names_the_status_and_the_servers_message() {
        let s = reqwest::StatusCode::NOT_FOUND;
        assert_eq!(
            refusal_line(
                s,
                r#"{"error":true,"code":"not_found","message":"unknown uid"}"#
            ),
            "gitfaas answered 404 Not Found: unknown uid (not_found)"
        );
        assert_eq!(refusal_line(s, "<html>"), "gitfaas answered 404 Not Found");
    }
}
