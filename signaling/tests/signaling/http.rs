//! Static hosting, health and metrics.

use std::io::Read as _;
use std::path::PathBuf;

use civicbase_signaling::{Config, Secret};

use crate::common::{config, get, unique, Client, Server};

const WASM: &str = "/civicbase-app-1a2b3c4d5e6f7a8b_bg.wasm";

/// A directory laid out like Trunk's output.
fn app_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "civicbase-signaling-dist-{}-{}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir_all(&dir).expect("create dist");
    let files: [(&str, Vec<u8>); 6] = [
        (
            "index.html",
            b"<!doctype html><title>CivicBase</title>".to_vec(),
        ),
        (&WASM[1..], wasm_bytes()),
        (
            "civicbase-app-1a2b3c4d5e6f7a8b.js",
            b"export default 1;".repeat(200),
        ),
        ("civicbase-worker_bg.wasm", wasm_bytes()),
        (
            "sw.js",
            b"self.addEventListener('fetch', () => {});".to_vec(),
        ),
        ("manifest.webmanifest", br#"{"name":"CivicBase"}"#.to_vec()),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("write file");
    }
    dir
}

/// A compressible stand-in for a wasm module.
fn wasm_bytes() -> Vec<u8> {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend((0..20_000u32).map(|i| (i % 7) as u8));
    bytes
}

async fn app_server() -> (Server, PathBuf) {
    let dir = app_dir();
    let server = Server::start(Config {
        static_dir: dir.clone(),
        ..config()
    })
    .await;
    (server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_is_served_as_application_wasm_and_cached_for_good() {
    let (server, dir) = app_server().await;
    let response = get(server.addr, WASM, &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/wasm"));
    assert_eq!(
        response.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(response.body, wasm_bytes());
    let script = get(server.addr, "/civicbase-app-1a2b3c4d5e6f7a8b.js", &[]).await;
    assert_eq!(
        script.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_service_worker_manifest_and_unhashed_files_are_revalidated() {
    let (server, dir) = app_server().await;
    let index = get(server.addr, "/", &[]).await;
    assert_eq!(index.status, 200);
    assert!(index
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert_eq!(index.body, b"<!doctype html><title>CivicBase</title>");
    for path in [
        "/",
        "/index.html",
        "/sw.js",
        "/manifest.webmanifest",
        "/civicbase-worker_bg.wasm",
    ] {
        let response = get(server.addr, path, &[]).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.header("cache-control"), Some("no-cache"), "{path}");
    }
    let manifest = get(server.addr, "/manifest.webmanifest", &[]).await;
    assert_eq!(
        manifest.header("content-type"),
        Some("application/manifest+json")
    );
    let missing = get(server.addr, "/nope.js", &[]).await;
    assert_eq!(missing.status, 404);
    assert_ne!(
        missing.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_compressed_with_gzip_or_brotli_on_request() {
    let (server, dir) = app_server().await;
    let gzip = get(server.addr, WASM, &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(gzip.status, 200);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(gzip.header("content-type"), Some("application/wasm"));
    assert!(gzip.body.len() < wasm_bytes().len() / 4);
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gzip.body[..])
        .read_to_end(&mut unzipped)
        .expect("valid gzip");
    assert_eq!(unzipped, wasm_bytes());

    let brotli = get(server.addr, WASM, &[("Accept-Encoding", "br")]).await;
    assert_eq!(brotli.header("content-encoding"), Some("br"));
    assert!(brotli.body.len() < wasm_bytes().len() / 4);

    let plain = get(server.addr, WASM, &[]).await;
    assert_eq!(plain.header("content-encoding"), None);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompressed_files_are_served_when_present() {
    let (server, dir) = app_server().await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut encoder, &wasm_bytes()).expect("compress");
    let gz = encoder.finish().expect("finish");
    std::fs::write(dir.join(format!("{}.gz", &WASM[1..])), &gz).expect("write .gz");
    let response = get(server.addr, WASM, &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    assert_eq!(
        response.body, gz,
        "the file on disk, not a fresh compression"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_static_directory_gives_an_explanatory_404_and_signaling_still_works() {
    let server = Server::start(config()).await;
    let response = get(server.addr, "/", &[]).await;
    assert_eq!(response.status, 404);
    let body = String::from_utf8(response.body).expect("utf-8");
    assert!(body.contains("has not been built"), "{body}");
    assert!(body.contains("/nonexistent/civicbase-signaling-test"));
    server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_ok_and_signal_without_upgrade_asks_for_one() {
    let server = Server::start(config()).await;
    let health = get(server.addr, "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, b"ok");
    let signal = get(server.addr, "/signal", &[]).await;
    assert_eq!(signal.status, 426);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_topics_and_relayed_messages() {
    let server = Server::start(config()).await;
    let metrics = get(server.addr, "/metrics", &[]).await;
    assert!(metrics
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    assert_eq!(
        server.metric("civicbase_signaling_connections_total").await,
        0
    );

    let mut a = Client::connect(&server.url()).await;
    let mut b = Client::connect(&server.url()).await;
    a.subscribe(&["x", "y"]).await;
    b.subscribe(&["x"]).await;
    assert_eq!(
        server
            .metric("civicbase_signaling_connections_current")
            .await,
        2
    );
    assert_eq!(server.metric("civicbase_signaling_topics_current").await, 2);
    a.send(r#"{"type":"publish","topic":"x"}"#).await;
    a.recv_json().await;
    b.recv_json().await;
    assert_eq!(server.metric("civicbase_signaling_publish_total").await, 1);
    assert_eq!(
        server
            .metric("civicbase_signaling_messages_relayed_total")
            .await,
        2
    );
    b.send("not json").await;
    server
        .wait_metric(
            "civicbase_signaling_frames_rejected_total{reason=\"malformed\"}",
            1,
        )
        .await;
    a.close().await;
    server
        .wait_metric("civicbase_signaling_connections_current", 0)
        .await;
    assert_eq!(
        server.metric("civicbase_signaling_connections_total").await,
        2
    );
    assert_eq!(server.metric("civicbase_signaling_topics_current").await, 0);
    assert_eq!(
        server
            .metric("civicbase_signaling_connections_closed_total{reason=\"client\"}")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_opening_handshakes_are_refused() {
    let server = Server::start(config()).await;
    let upgrade = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let old_version = [upgrade.as_slice(), &[("Sec-WebSocket-Version", "8")]].concat();
    let response = get(server.addr, "/signal", &old_version).await;
    assert_eq!(response.status, 426);
    assert_eq!(response.header("sec-websocket-version"), Some("13"));

    let no_key = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
    ];
    assert_eq!(get(server.addr, "/", &no_key).await.status, 400);
    server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_require_the_bearer_token_when_one_is_set() {
    let token = "s3cret-metrics-token";
    let server = Server::start(Config {
        metrics_token: Some(Secret::new(token)),
        ..config()
    })
    .await;
    let refused = get(server.addr, "/metrics", &[]).await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Bearer realm=\"metrics\"")
    );
    let body = String::from_utf8(refused.body).expect("utf-8");
    assert!(!body.contains("civicbase_signaling_"), "{body}");
    for wrong in [
        "Bearer wrong-token".to_owned(),
        format!("Bearer {token}x"),
        format!("Bearer {}", &token[..token.len() - 1]),
        format!("Basic {token}"),
        format!("Bearer{token}"),
        token.to_owned(),
        "Bearer ".to_owned(),
    ] {
        let response = get(server.addr, "/metrics", &[("Authorization", &wrong)]).await;
        assert_eq!(response.status, 401, "{wrong}");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer realm=\"metrics\""),
            "{wrong}"
        );
    }
    for right in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER  {token}"),
    ] {
        let response = get(server.addr, "/metrics", &[("Authorization", &right)]).await;
        assert_eq!(response.status, 200, "{right}");
        let text = String::from_utf8(response.body).expect("utf-8");
        assert!(
            text.contains("civicbase_signaling_connections_total 0"),
            "{text}"
        );
    }
    // The token guards only /metrics.
    assert_eq!(get(server.addr, "/healthz", &[]).await.status, 200);
    server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_open_without_a_token() {
    let server = Server::start(config()).await;
    let open = get(server.addr, "/metrics", &[]).await;
    assert_eq!(open.status, 200);
    assert_eq!(open.header("www-authenticate"), None);
    let any = get(
        server.addr,
        "/metrics",
        &[("Authorization", "Bearer anything")],
    )
    .await;
    assert_eq!(any.status, 200);
    assert_eq!(
        server.metric("civicbase_signaling_connections_total").await,
        0
    );
}
