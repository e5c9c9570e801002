//! The browser pages: `GET /demo` (two tabs meet through the server, then talk over a
//! WebRTC data channel) and `GET /dashboard` (live counts and kicks, from `/v1/*` with
//! an API key). Plain HTML, CSS and JS modules in `web/`, compiled into the binary:
//! no build step and no framework. Each page is off unless `[demo]` or `[dashboard]`
//! turns it on (the dev server turns both on); a page that is off is a 404, and so
//! are its scripts.
//!
//! Every response of the router, these and the JSON alike, carries
//! [`SECURITY_HEADERS`]: a Content-Security-Policy that allows only this origin's
//! scripts, styles and connections (plus WebSockets), no inline code, no framing, and
//! `nosniff`.

use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Api, ApiError};

/// The headers every response gets.
pub(super) const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; \
         style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
         frame-ancestors 'none'; form-action 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// Adds [`SECURITY_HEADERS`] to a response (the router's last layer).
pub(super) async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// Which page a file belongs to, for the on/off switches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Demo,
    Dashboard,
    /// Shared by both: served while either is on.
    Both,
}

/// The files under `/web/`: name, content type, page, text.
const ASSETS: [(&str, &str, Page, &str); 7] = [
    ("style.css", CSS, Page::Both, include_str!("web/style.css")),
    ("demo.js", JS, Page::Demo, include_str!("web/demo.js")),
    ("json.js", JS, Page::Demo, include_str!("web/json.js")),
    ("rtc.js", JS, Page::Demo, include_str!("web/rtc.js")),
    ("peer.js", JS, Page::Demo, include_str!("web/peer.js")),
    (
        "dashboard.js",
        JS,
        Page::Dashboard,
        include_str!("web/dashboard.js"),
    ),
    (
        "chart.js",
        JS,
        Page::Dashboard,
        include_str!("web/chart.js"),
    ),
];

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// `GET /demo` (`?dialect=rtc` picks the rtc-signaller dialect; the script reads it).
pub(super) async fn demo(State(api): State<Api>) -> Response {
    serve(&api, Page::Demo, HTML, include_str!("web/demo.html"))
}

/// `GET /dashboard`.
pub(super) async fn dashboard(State(api): State<Api>) -> Response {
    serve(
        &api,
        Page::Dashboard,
        HTML,
        include_str!("web/dashboard.html"),
    )
}

/// `GET /web/{file}`: the pages' scripts and style.
pub(super) async fn asset(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, ..)| *n == name) {
        Some((_, kind, page, text)) => serve(&api, *page, kind, text),
        None => not_found(),
    }
}

fn serve(api: &Api, page: Page, kind: &'static str, text: &'static str) -> Response {
    let (demo, dashboard) = {
        let s = api.settings();
        (s.demo, s.dashboard)
    };
    let on = match page {
        Page::Demo => demo,
        Page::Dashboard => dashboard,
        Page::Both => demo || dashboard,
    };
    if !on {
        return not_found();
    }
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}

fn not_found() -> Response {
    ApiError(StatusCode::NOT_FOUND, "not_found", "no such route".into()).into_response()
}
