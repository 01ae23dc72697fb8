//! The y-webrtc wire protocol, end to end over real WebSockets.

use crate::common::{config, Client, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_every_subscriber_including_the_sender_with_the_clients_count() {
    let server = Server::start(config()).await;
    let mut a = Client::connect(&server.url()).await;
    let mut b = Client::connect(&server.url()).await;
    a.subscribe(&["room"]).await;
    b.subscribe(&["room"]).await;

    a.send(r#"{"type":"publish","topic":"room","data":{"type":"announce","from":"a"},"extra":[1,true,null]}"#)
        .await;
    let expected = serde_json::json!({
        "type": "publish",
        "topic": "room",
        "data": {"type": "announce", "from": "a"},
        "extra": [1, true, null],
        "clients": 2,
    });
    assert_eq!(
        a.recv_json().await,
        expected,
        "the sender gets its own message"
    );
    assert_eq!(b.recv_json().await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_need_not_subscribe_and_an_empty_topic_is_ignored() {
    let server = Server::start(config()).await;
    let mut subscriber = Client::connect(&server.url()).await;
    let mut publisher = Client::connect(&server.url()).await;
    subscriber.subscribe(&["t", ""]).await;

    publisher
        .send(r#"{"type":"publish","topic":"","data":1}"#)
        .await;
    publisher
        .send(r#"{"type":"publish","topic":"t","data":2}"#)
        .await;
    assert!(publisher.sync().await.is_empty(), "not subscribed: no echo");
    let got = subscriber.recv_json().await;
    assert_eq!(got["data"], 2, "the empty-topic publish was not relayed");
    assert_eq!(got["clients"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery_and_updates_the_count() {
    let server = Server::start(config()).await;
    let mut a = Client::connect(&server.url()).await;
    let mut b = Client::connect(&server.url()).await;
    a.subscribe(&["t"]).await;
    b.subscribe(&["t"]).await;

    b.send(r#"{"type":"unsubscribe","topics":["t"]}"#).await;
    assert!(b.sync().await.is_empty());
    a.send(r#"{"type":"publish","topic":"t","n":1}"#).await;
    assert_eq!(a.recv_json().await["clients"], 1);
    // `a` has received its own publish, so the server has relayed it: `b` must have nothing.
    assert!(
        b.sync().await.is_empty(),
        "unsubscribed client got a message"
    );
    server
        .wait_metric("civicbase_signaling_topics_current", 1)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_with_pong() {
    let server = Server::start(config()).await;
    let mut client = Client::connect(&server.url()).await;
    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.recv_text().await, r#"{"type":"pong"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_only_to_the_subscribers_of_their_topic() {
    let server = Server::start(config()).await;
    let mut a = Client::connect(&server.url()).await;
    let mut b = Client::connect(&server.url()).await;
    a.subscribe(&["one", "two"]).await;
    b.subscribe(&["two", "three"]).await;

    b.send(r#"{"type":"publish","topic":"one","n":1}"#).await;
    b.send(r#"{"type":"publish","topic":"two","n":2}"#).await;
    b.send(r#"{"type":"publish","topic":"three","n":3}"#).await;
    let b_got: Vec<serde_json::Value> = b
        .sync()
        .await
        .iter()
        .map(|t| serde_json::from_str(t).expect("json"))
        .collect();
    assert_eq!(
        b_got.iter().map(|v| v["n"].clone()).collect::<Vec<_>>(),
        [2, 3]
    );
    let a_got: Vec<serde_json::Value> = a
        .sync()
        .await
        .iter()
        .map(|t| serde_json::from_str(t).expect("json"))
        .collect();
    assert_eq!(
        a_got
            .iter()
            .map(|v| (v["n"].clone(), v["clients"].clone()))
            .collect::<Vec<_>>(),
        [(1.into(), 1.into()), (2.into(), 2.into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_types_are_ignored_and_the_connection_stays_open() {
    let server = Server::start(config()).await;
    let mut client = Client::connect(&server.url()).await;
    client.send(r#"{"type":"pong"}"#).await;
    client.send(r#"{"type":"future-feature","x":1}"#).await;
    assert!(client.sync().await.is_empty());
    assert_eq!(
        server
            .metric("civicbase_signaling_unknown_messages_total")
            .await,
        2
    );
}

/// What a y-webrtc client sends and expects, as literal frames, on both endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_y_webrtc_client_can_subscribe_publish_and_receive() {
    let server = Server::start(config()).await;
    for path in ["", "/signal"] {
        let url = format!("{}{path}", server.url());
        let mut alice = Client::connect(&url).await;
        let mut bob = Client::connect(&url).await;
        let subscribe = r#"{"type":"subscribe","topics":["7f2a9c0e1b3d5f7a"]}"#;
        alice.send(subscribe).await;
        bob.send(subscribe).await;
        for peer in [&mut alice, &mut bob] {
            peer.send(r#"{"type":"ping"}"#).await;
            assert_eq!(peer.recv_text().await, r#"{"type":"pong"}"#);
        }
        // y-webrtc announces itself on the room topic; every peer (the sender too) receives it.
        alice
            .send(r#"{"type":"publish","topic":"7f2a9c0e1b3d5f7a","data":{"type":"announce","from":"4f1c"}}"#)
            .await;
        for peer in [&mut alice, &mut bob] {
            let text = peer.recv_text().await;
            assert_eq!(
                text,
                r#"{"type":"publish","topic":"7f2a9c0e1b3d5f7a","data":{"type":"announce","from":"4f1c"},"clients":2}"#
            );
        }
        bob.send(r#"{"type":"unsubscribe","topics":["7f2a9c0e1b3d5f7a"]}"#)
            .await;
        bob.close().await;
        alice.close().await;
    }
    server
        .wait_metric("civicbase_signaling_connections_current", 0)
        .await;
    server
        .wait_metric("civicbase_signaling_topics_current", 0)
        .await;
}

/// Messages queued while the server is sending a ping must still be delivered promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_keep_flowing_while_pings_are_sent() {
    let server = Server::start(civicbase_signaling::Config {
        ping_interval: std::time::Duration::from_millis(1),
        rate_limit_per_sec: 0,
        ..config()
    })
    .await;
    let mut receiver = Client::connect(&server.url()).await;
    receiver.subscribe(&["busy"]).await;
    let mut sender = Client::connect(&server.url()).await;
    for n in 0..2000 {
        sender
            .send(&format!(r#"{{"type":"publish","topic":"busy","n":{n}}}"#))
            .await;
        let got = tokio::time::timeout(std::time::Duration::from_secs(1), receiver.recv_json())
            .await
            .unwrap_or_else(|_| panic!("message {n} stuck in the queue"));
        assert_eq!(got["n"], n);
    }
}
