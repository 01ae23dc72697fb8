//! HTTP routes: WebSocket upgrades on `/` and `/signal`, `/healthz`, `/metrics`, and the static
//! files of the built app for everything else.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tower::ServiceExt;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tracing::debug;

use crate::config::Secret;
use crate::metrics::RefuseReason;
use crate::{connection, proxy, Shared};

const CACHE_IMMUTABLE: HeaderValue =
    HeaderValue::from_static("public, max-age=31536000, immutable");
const CACHE_NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// The router, with compression for every response that benefits from it.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", any(root))
        .route("/signal", any(signal))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .fallback(static_file)
        .layer(CompressionLayer::new())
        .with_state(shared)
}

/// `/`: a WebSocket upgrade (y-webrtc clients connect to the bare URL) or the app's index page.
async fn root(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    if is_websocket_upgrade(request.headers()) {
        upgrade(shared, addr, request)
    } else {
        static_file(State(shared), request).await
    }
}

/// `/signal`: WebSocket upgrades only.
async fn signal(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    if is_websocket_upgrade(request.headers()) {
        upgrade(shared, addr, request)
    } else {
        (
            StatusCode::UPGRADE_REQUIRED,
            [(header::UPGRADE, "websocket")],
            "this endpoint speaks WebSocket\n",
        )
            .into_response()
    }
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// Checks the handshake, the origin and the admission limits, then answers `101 Switching
/// Protocols` and hands the connection to [`connection::run`] (RFC 6455, section 4.2).
fn upgrade(shared: Arc<Shared>, addr: SocketAddr, mut request: Request) -> Response {
    let ip = client_ip(&shared, addr, request.headers());
    if !origin_allowed(&shared.config.allowed_origins, request.headers()) {
        shared.metrics.count_refusal(RefuseReason::Origin);
        debug!(%addr, %ip, origin = ?request.headers().get(header::ORIGIN), "origin refused");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    if shared.heartbeat.is_stopping() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let key = match handshake_key(&request) {
        Ok(key) => key,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return (
            StatusCode::BAD_REQUEST,
            "this connection cannot be upgraded\n",
        )
            .into_response();
    };
    let ticket = match shared.admission.admit(ip) {
        Ok(ticket) => ticket,
        Err(reason) => {
            shared.metrics.count_refusal(reason);
            debug!(%addr, %ip, ?reason, "connection refused");
            return match reason {
                RefuseReason::PerIpLimit => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from this address\n",
                ),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "server full\n"),
            }
            .into_response();
        }
    };
    tokio::spawn(connection::run(on_upgrade, shared, ticket));
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::SEC_WEBSOCKET_ACCEPT, key),
        ],
    )
        .into_response()
}

/// The client's address: the peer's, or the one its forwarding headers name when the peer is
/// a trusted proxy (see [`proxy::client_ip`]). Malformed headers from a trusted proxy leave the
/// peer's address.
fn client_ip(shared: &Shared, addr: SocketAddr, headers: &HeaderMap) -> IpAddr {
    proxy::client_ip(addr.ip(), headers, &shared.config.trusted_proxies).unwrap_or_else(|error| {
        debug!(%addr, %error, "ignoring the forwarding headers of a trusted proxy");
        addr.ip().to_canonical()
    })
}

/// Why an opening handshake is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadHandshake {
    Method,
    HttpVersion,
    ConnectionHeader,
    WebSocketVersion,
    MissingKey,
    InvalidKey,
}

impl IntoResponse for BadHandshake {
    fn into_response(self) -> Response {
        let bad = |text: &'static str| (StatusCode::BAD_REQUEST, text).into_response();
        match self {
            BadHandshake::Method => StatusCode::METHOD_NOT_ALLOWED.into_response(),
            BadHandshake::HttpVersion => bad("WebSocket upgrades need HTTP/1.1\n"),
            BadHandshake::ConnectionHeader => bad("missing \"Connection: upgrade\"\n"),
            BadHandshake::WebSocketVersion => (
                StatusCode::UPGRADE_REQUIRED,
                [(header::SEC_WEBSOCKET_VERSION, "13")],
                "unsupported WebSocket version\n",
            )
                .into_response(),
            BadHandshake::MissingKey => bad("missing Sec-WebSocket-Key\n"),
            BadHandshake::InvalidKey => bad("invalid Sec-WebSocket-Key\n"),
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a valid opening handshake.
fn handshake_key(request: &Request) -> Result<HeaderValue, BadHandshake> {
    let headers = request.headers();
    if request.method() != Method::GET {
        return Err(BadHandshake::Method);
    }
    if request.version() != Version::HTTP_11 {
        return Err(BadHandshake::HttpVersion);
    }
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return Err(BadHandshake::ConnectionHeader);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(BadHandshake::WebSocketVersion);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(BadHandshake::MissingKey)?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| BadHandshake::InvalidKey)
}

/// True when no allowlist is set, the request has no `Origin` header (not a browser page), or
/// its origin is in the list.
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => origin
            .to_str()
            .is_ok_and(|origin| allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))),
    }
}

/// `/metrics`: the Prometheus text, behind the bearer token when one is configured.
async fn metrics(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = &shared.config.metrics_token {
        if !bearer_matches(token, &headers) {
            debug!(%addr, "metrics request without the right bearer token");
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"metrics\""),
                )],
                "a bearer token is required for /metrics\n",
            )
                .into_response();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(shared.hub.topic_count()),
    )
        .into_response()
}

/// Whether the request's `Authorization` header is `Bearer <token>` (the scheme in any case)
/// with this token, compared in constant time.
fn bearer_matches(token: &Secret, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let Some((scheme, credentials)) = value.as_bytes().split_first_chunk::<7>() else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer ") && token.matches(credentials.trim_ascii())
}

/// A file of the static directory, with cache headers that suit Trunk's hashed file names.
async fn static_file(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = request.uri().path().to_owned();
    let dir = &shared.config.static_dir;
    let response: Result<_, Infallible> = ServeDir::new(dir)
        .precompressed_br()
        .precompressed_gzip()
        .oneshot(request)
        .await;
    let mut response = match response {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    if response.status() == StatusCode::NOT_FOUND {
        return not_found(dir);
    }
    let headers = response.headers_mut();
    let cache = if is_hashed_asset(&path) {
        CACHE_IMMUTABLE
    } else {
        CACHE_NO_CACHE
    };
    headers.insert(header::CACHE_CONTROL, cache);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn not_found(dir: &std::path::Path) -> Response {
    let body = if dir.is_dir() {
        "<!doctype html><meta charset=utf-8><title>Not found</title><p>Not found.</p>\n".to_owned()
    } else {
        format!(
            "<!doctype html><meta charset=utf-8><title>CivicBase: app not built</title>\
             <h1>The app has not been built</h1>\
             <p>This CivicBase signaling server serves the app from <code>{}</code>, which does \
             not exist. Build the app (<code>trunk build --release</code>) or start the server \
             with <code>--static-dir</code> pointing at the built files.</p>\
             <p>Signaling works regardless: WebSocket clients connect to this address.</p>\n",
            html_escape(&dir.display().to_string())
        )
    };
    (
        StatusCode::NOT_FOUND,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, CACHE_NO_CACHE),
        ],
        body,
    )
        .into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether the last segment of `path` carries a content hash as Trunk writes it: `-` followed
/// by at least 16 hexadecimal digits, then `.` or `_` (as in `app-1a2b3c4d5e6f7a8b_bg.wasm` or
/// `styles-afe23a068eb45d6c.css`). Such a file never changes, so it may be cached for good.
pub(crate) fn is_hashed_asset(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.match_indices('-').any(|(dash, _)| {
        let rest = &name[dash + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        digits >= 16 && matches!(rest.as_bytes().get(digits), Some(b'.' | b'_'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_recognised() {
        for path in [
            "/civicbase-app-7978877cbf54fe9b_bg.wasm",
            "/civicbase-app-7978877cbf54fe9b.js",
            "/styles-afe23a068eb45d6c.css",
            "/assets/icon-0123456789abcdef0123.png",
        ] {
            assert!(is_hashed_asset(path), "{path}");
        }
        for path in [
            "/",
            "/index.html",
            "/sw.js",
            "/manifest.webmanifest",
            "/civicbase-worker_bg.wasm",
            "/civicbase-worker.js",
            "/app-7978877cbf54fe9.js",
            "/app-7978877cbf54fe9bz.js",
            "/app-7978877cbf54fe9b",
            "/7978877cbf54fe9b0000.js",
        ] {
            assert!(!is_hashed_asset(path), "{path}");
        }
    }

    #[test]
    fn origin_allowlist() {
        let mut headers = HeaderMap::new();
        assert!(origin_allowed(&[], &headers));
        let allowed = vec!["https://civic.example".to_owned()];
        assert!(origin_allowed(&allowed, &headers), "no Origin header");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://civic.example"),
        );
        assert!(origin_allowed(&allowed, &headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!origin_allowed(&allowed, &headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!origin_allowed(&allowed, &headers));
    }
}
