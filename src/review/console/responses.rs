//! What every console response carries, whatever route made it: the security headers (a
//! Content-Security-Policy without inline script that no page may frame, no referrer, no
//! sniffing, and `Cache-Control: no-store` unless a route says otherwise, so no page with
//! personal data outlives its session in the browser's cache), and the error pages: in the
//! console's language, one fixed text per status, never the input that caused them (the
//! details go to the log). The JSON API keeps short plain-text errors.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use maud::html;

use super::{
    Console, Unreachable,
    i18n::{Text, t},
    layout::page,
};
use crate::config::Language;

/// Scripts: none at all. Styles and images only from the console itself (the charts are inline
/// SVG elements, which need no source); forms post only back to it; no page can be framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The headers every response gets.
pub fn set_security_headers(headers: &mut HeaderMap) {
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// The middleware: error pages for the pages, then the security headers on everything.
pub async fn frame(State(c): State<Arc<Console>>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let status = response.status();
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if (status.is_client_error() || status.is_server_error()) && !api && !html {
        response = error_page(c.language(), response);
    }
    set_security_headers(response.headers_mut());
    response
}

/// The words for an error status (the same for every cause, so nothing typed is echoed).
fn error_key(status: StatusCode) -> Text {
    match status.as_u16() {
        400 | 405 | 413 | 415 | 422 => Text::Err400,
        401 => Text::Err401,
        403 => Text::Err403,
        404 => Text::Err404,
        429 => Text::Err429,
        503 => Text::Err503,
        _ => Text::Err500,
    }
}

/// `response` with its body replaced by the error page (status and other headers kept).
fn error_page(lang: Language, response: Response) -> Response {
    let (mut parts, _) = response.into_parts();
    let title = format!("{} {}", t(lang, Text::Error), parts.status.as_u16());
    let body = match parts.extensions.get::<Unreachable>() {
        Some(Unreachable(what)) => page(
            lang,
            None,
            &title,
            html! { p.error id="error" { (t(lang, Text::ErrUnreachable)) } p { code id="unreachable" { (what) } } },
        ),
        None => page(lang, None, &title, html! { p.error id="error" { (t(lang, error_key(parts.status))) } }),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    Response::from_parts(parts, Body::from(body.into_string()))
}

/// Any path the console does not serve.
pub async fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}
