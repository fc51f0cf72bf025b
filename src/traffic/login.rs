//! Logging in to the system under test, so drivers get a bearer token (`TT_AUTH_TOKEN`)
//! without each of them knowing how. One JSON POST, straight to the system (never recorded).

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What to send and where the token is in the answer.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// Absolute `http://` URL of the login endpoint.
    pub url: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    /// Dotted path of the token in the JSON answer (`data.token`).
    pub token_path: &'a str,
}

/// POSTs `{"username", "password"}` and returns the token.
///
/// # Errors
/// A message saying what went wrong — request, status, body or missing token — prefixed with
/// the URL. The password is never part of it.
pub async fn fetch_token(login: Login<'_>) -> Result<String, String> {
    let url = login.url;
    let body = serde_json::json!({ "username": login.username, "password": login.password });
    let req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("login: bad URL `{url}`: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("login at {url}: request failed: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("login at {url}: reading the answer: {e}"))?
        .to_bytes();
    token_from_answer(login, status, &bytes)
}

/// Digs the token out of the login answer.
///
/// # Errors
/// When the status is not 2xx, the body is not JSON, or there is no non-empty string at
/// `token_path`.
pub fn token_from_answer(
    login: Login<'_>,
    status: StatusCode,
    body: &[u8],
) -> Result<String, String> {
    let url = login.url;
    let excerpt = || {
        String::from_utf8_lossy(body)
            .chars()
            .take(300)
            .collect::<String>()
    };
    if !status.is_success() {
        return Err(format!(
            "login at {url} answered HTTP {status}: {}",
            excerpt()
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "login at {url}: the answer is not JSON ({e}): {}",
            excerpt()
        )
    })?;
    let token = login
        .token_path
        .split('.')
        .try_fold(&json, |v, key| v.get(key))
        .and_then(|v| v.as_str())
        .filter(|t| !t.is_empty());
    match token {
        Some(t) => Ok(t.to_string()),
        None => {
            // Train-Ticket answers HTTP 200 with `{"status":0,"msg":"…"}` on bad credentials.
            let msg = json
                .get("msg")
                .and_then(|m| m.as_str())
                .map(|m| format!(" (msg: {m:?})"))
                .unwrap_or_default();
            Err(format!(
                "login at {url} as `{}`: no token at `{}` in the answer{msg}",
                login.username, login.token_path
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Login<'static> = Login {
        url: "http://tt/api/v1/users/login",
        username: "fdse_microservice",
        password: "111111",
        token_path: "data.token",
    };

    #[test]
    fn the_token_is_found_at_its_path() {
        let body = br#"{"status":1,"msg":"login success","data":{"userId":"u","token":"abc"}}"#;
        assert_eq!(token_from_answer(L, StatusCode::OK, body).unwrap(), "abc");
    }

    #[test]
    fn train_tickets_refusal_is_explained() {
        let body = br#"{"status":0,"msg":"Incorrect username or password.","data":null}"#;
        assert_eq!(
            token_from_answer(L, StatusCode::OK, body).unwrap_err(),
            "login at http://tt/api/v1/users/login as `fdse_microservice`: no token at \
             `data.token` in the answer (msg: \"Incorrect username or password.\")"
        );
    }

    #[test]
    fn http_errors_and_non_json_say_so() {
        let e = token_from_answer(L, StatusCode::FORBIDDEN, b"denied").unwrap_err();
        assert_eq!(
            e,
            "login at http://tt/api/v1/users/login answered HTTP 403 Forbidden: denied"
        );
        let e = token_from_answer(L, StatusCode::OK, b"<html>").unwrap_err();
        assert!(e.contains("the answer is not JSON"), "{e}");
        assert!(!e.contains("111111"));
    }
}
