//! Client addresses behind trusted reverse proxies, for the per-IP connection limit.

use civicbase_signaling::Config;

use crate::common::{assert_refused, config, Client, Server};

const PER_IP_REFUSED: &str = "civicbase_signaling_upgrades_refused_total{reason=\"per_ip_limit\"}";

/// Connects with these headers and expects the upgrade to succeed.
async fn admitted(server: &Server, headers: &[(&'static str, &str)]) -> Client {
    let mut client = Client::try_connect_with(&server.url(), headers)
        .await
        .unwrap_or_else(|error| panic!("{headers:?} refused: {error}"));
    assert!(client.sync().await.is_empty());
    client
}

/// Connects with these headers and expects `429 Too Many Requests`.
async fn refused_429(server: &Server, headers: &[(&'static str, &str)]) {
    let attempt = Client::try_connect_with(&server.url(), headers).await;
    assert_refused(attempt, 429, &format!("{headers:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_limit_counts_forwarded_clients() {
    let server = Server::start(Config {
        trusted_proxies: vec!["127.0.0.1/32".parse().expect("a block")],
        max_connections_per_ip: 2,
        ..config()
    })
    .await;
    let first = [("X-Forwarded-For", "203.0.113.7")];
    let _a = admitted(&server, &first).await;
    let _b = admitted(&server, &first).await;
    refused_429(&server, &first).await;
    // A client that prepends its own entry is still counted under the address the proxy saw.
    refused_429(&server, &[("X-Forwarded-For", "198.51.100.1, 203.0.113.7")]).await;
    refused_429(
        &server,
        &[
            ("X-Forwarded-For", "198.51.100.1"),
            ("X-Forwarded-For", "203.0.113.7"),
        ],
    )
    .await;
    // Another client behind the same proxy has its own slots.
    let second = [("X-Forwarded-For", "203.0.113.8")];
    let _c = admitted(&server, &second).await;
    let _d = admitted(&server, &[("X-Forwarded-For", "198.51.100.1, 203.0.113.8")]).await;
    refused_429(&server, &second).await;
    // Without X-Forwarded-For, X-Real-IP names the client; without either, the proxy itself.
    let _e = admitted(&server, &[("X-Real-IP", "192.0.2.44")]).await;
    let _f = admitted(&server, &[]).await;
    // A malformed header from the proxy counts the connection under the proxy's address.
    let _g = admitted(&server, &[("X-Forwarded-For", "not-an-address")]).await;
    refused_429(&server, &[("X-Forwarded-For", "203.0.113.9, garbage")]).await;
    assert_eq!(server.metric(PER_IP_REFUSED).await, 5);
    assert_eq!(
        server
            .metric("civicbase_signaling_connections_current")
            .await,
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_forwarding_headers_are_ignored() {
    let server = Server::start(Config {
        max_connections_per_ip: 2,
        ..config()
    })
    .await;
    let _a = admitted(&server, &[("X-Forwarded-For", "203.0.113.1")]).await;
    let _b = admitted(&server, &[("X-Forwarded-For", "203.0.113.2")]).await;
    refused_429(&server, &[("X-Forwarded-For", "203.0.113.3")]).await;
    refused_429(&server, &[("X-Real-IP", "203.0.113.4")]).await;
    assert_eq!(server.metric(PER_IP_REFUSED).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_outside_the_trusted_list_is_not_believed() {
    // The test client connects from 127.0.0.1, which this list does not include.
    let server = Server::start(Config {
        trusted_proxies: vec!["10.0.0.0/8".parse().expect("a block")],
        max_connections_per_ip: 1,
        ..config()
    })
    .await;
    let _a = admitted(&server, &[("X-Forwarded-For", "203.0.113.1")]).await;
    refused_429(&server, &[("X-Forwarded-For", "203.0.113.2")]).await;
}
