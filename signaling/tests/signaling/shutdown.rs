//! Graceful shutdown of the embedded server.

use std::time::Duration;

use civicbase_signaling::Config;

use crate::common::{config, Client, Ending, Server, STEP};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_going_away_and_the_server_future_resolves() {
    let mut server = Server::start(config()).await;
    let mut subscribed = Client::connect(&server.url()).await;
    subscribed.subscribe(&["t"]).await;
    let mut idle = Client::connect(&format!("{}/signal", server.url())).await;
    assert!(idle.sync().await.is_empty());

    let task = server.shutdown();
    for client in [&mut subscribed, &mut idle] {
        assert_eq!(
            client.ending(100).await,
            Ending::Closed(1001, "going away".into())
        );
    }
    // Each client's library answers the close frame, so the server need not wait out its grace.
    let result = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the server future resolved")
        .expect("serve task");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_longer_than_the_grace_for_a_client_that_never_answers() {
    let mut server = Server::start(Config {
        shutdown_grace: Duration::from_millis(300),
        ..config()
    })
    .await;
    // This client never reads, so it never answers the close frame.
    let _deaf = Client::connect(&server.url()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(STEP, server.shutdown())
        .await
        .expect("the server future resolved")
        .expect("serve task");
    assert!(result.is_ok());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_is_an_error_not_a_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let result = civicbase_signaling::serve(
        listener,
        Config {
            outbound_queue: 0,
            ..config()
        },
        std::future::pending(),
    )
    .await;
    assert!(matches!(
        result,
        Err(civicbase_signaling::ServeError::Config(_))
    ));
}
