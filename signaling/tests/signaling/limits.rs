//! Every limit closes only the offending connection; the server and other clients carry on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use civicbase_signaling::Config;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::common::{assert_refused, config, Client, Ending, Server, STEP};

fn rejected(reason: &str) -> String {
    format!("civicbase_signaling_frames_rejected_total{{reason=\"{reason}\"}}")
}

fn closed(reason: &str) -> String {
    format!("civicbase_signaling_connections_closed_total{{reason=\"{reason}\"}}")
}

/// Opens a bystander connection, lets `offend` misbehave on another, and checks the offender
/// gets `expected` while the bystander and fresh connections still work.
async fn only_the_offender_is_closed(
    server: &Server,
    expected: Ending,
    offend: impl AsyncFnOnce(&mut Client),
) {
    let mut bystander = Client::connect(&server.url()).await;
    bystander.subscribe(&["bystander"]).await;
    let mut offender = Client::connect(&server.url()).await;
    offend(&mut offender).await;
    assert_eq!(offender.ending(100_000).await, expected);
    bystander
        .send(r#"{"type":"publish","topic":"bystander","still":"here"}"#)
        .await;
    assert_eq!(bystander.recv_json().await["still"], "here");
    server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_closes_with_1007() {
    let server = Server::start(config()).await;
    for frame in [
        "{not json",
        "[1,2,3]",
        r#"{"no":"type"}"#,
        r#"{"type":"publish","topic":5}"#,
    ] {
        only_the_offender_is_closed(
            &server,
            Ending::Closed(1007, "malformed message".into()),
            async |c: &mut Client| c.send(frame).await,
        )
        .await;
    }
    assert_eq!(server.metric(&rejected("malformed")).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let server = Server::start(config()).await;
    only_the_offender_is_closed(
        &server,
        Ending::Closed(1007, "malformed message".into()),
        async |c: &mut Client| {
            // A text frame whose payload is not UTF-8, which the client library would refuse to
            // build as text: send it as a raw frame.
            let frame = tungstenite::protocol::frame::Frame::message(
                vec![0xff, 0xfe, b'{'],
                tungstenite::protocol::frame::coding::OpCode::Data(
                    tungstenite::protocol::frame::coding::Data::Text,
                ),
                true,
            );
            c.try_send(Message::Frame(frame)).await.expect("sent");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_frame_closes_with_1003() {
    let server = Server::start(config()).await;
    only_the_offender_is_closed(
        &server,
        Ending::Closed(1003, "binary frames are not accepted".into()),
        async |c: &mut Client| {
            c.try_send(Message::binary(b"{\"type\":\"ping\"}".to_vec()))
                .await
                .expect("sent");
        },
    )
    .await;
    assert_eq!(server.metric(&rejected("binary")).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_frame_closes_the_connection() {
    let server = Server::start(config()).await;
    let mut bystander = Client::connect(&server.url()).await;
    bystander.subscribe(&["bystander"]).await;
    let mut offender = Client::connect(&server.url()).await;
    let huge = format!(
        r#"{{"type":"publish","topic":"bystander","data":"{}"}}"#,
        "x".repeat(10 << 20)
    );
    // The server refuses the frame from its header, so the send itself may fail midway.
    let _ = offender.try_send(Message::text(huge)).await;
    let ending = offender.ending(10).await;
    assert!(
        ending == Ending::Closed(1009, "frame larger than 65536 bytes".into())
            || ending == Ending::Dropped,
        "{ending:?}"
    );
    server.wait_metric(&rejected("too_large"), 1).await;
    assert!(bystander.sync().await.is_empty(), "nothing was relayed");
    server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_just_over_the_limit_gets_close_code_1009() {
    let server = Server::start(Config {
        max_frame_bytes: 1024,
        ..config()
    })
    .await;
    let at_limit = format!(
        r#"{{"type":"publish","topic":"t","d":"{}"}}"#,
        "x".repeat(1024 - 37)
    );
    assert_eq!(at_limit.len(), 1024);
    let mut fine = Client::connect(&server.url()).await;
    fine.subscribe(&["t"]).await;
    fine.send(&at_limit).await;
    assert_eq!(fine.recv_json().await["clients"], 1);

    only_the_offender_is_closed(
        &server,
        Ending::Closed(1009, "frame larger than 1024 bytes".into()),
        async |c: &mut Client| c.send(&format!("{at_limit} ")).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribe_requests_hit_the_topic_limit() {
    let server = Server::start(Config {
        max_topics_per_connection: 64,
        rate_limit_per_sec: 0,
        ..config()
    })
    .await;
    only_the_offender_is_closed(
        &server,
        Ending::Closed(1008, "more than 64 topics".into()),
        async |c: &mut Client| {
            for i in 0..1000 {
                let frame = format!(r#"{{"type":"subscribe","topics":["topic-{i}"]}}"#);
                if c.try_send(Message::text(frame)).await.is_err() {
                    break;
                }
            }
        },
    )
    .await;
    // One request naming a thousand topics is refused the same way.
    only_the_offender_is_closed(
        &server,
        Ending::Closed(1008, "more than 64 topics".into()),
        async |c: &mut Client| {
            let topics: Vec<String> = (0..1000).map(|i| format!("many-{i}")).collect();
            let frame = serde_json::json!({"type": "subscribe", "topics": topics}).to_string();
            c.send(&frame).await;
        },
    )
    .await;
    assert_eq!(server.metric(&rejected("too_many_topics")).await, 2);
    // Re-subscribing to the same topics does not count twice, and the offenders' topics are gone.
    let mut steady = Client::connect(&server.url()).await;
    for _ in 0..1000 {
        steady
            .send(r#"{"type":"subscribe","topics":["a","b"]}"#)
            .await;
    }
    assert!(steady.sync().await.is_empty());
    server
        .wait_metric("civicbase_signaling_topics_current", 2)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_topic_name_closes_the_connection() {
    let server = Server::start(Config {
        max_topic_bytes: 64,
        ..config()
    })
    .await;
    let long = "t".repeat(65);
    for frame in [
        format!(r#"{{"type":"subscribe","topics":["{long}"]}}"#),
        format!(r#"{{"type":"publish","topic":"{long}"}}"#),
    ] {
        only_the_offender_is_closed(
            &server,
            Ending::Closed(1008, "topic longer than 64 bytes".into()),
            async |c: &mut Client| c.send(&frame).await,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_flood_is_closed_by_the_rate_limit() {
    let server = Server::start(Config {
        rate_limit_per_sec: 50,
        rate_limit_burst: 20,
        ..config()
    })
    .await;
    only_the_offender_is_closed(
        &server,
        Ending::Closed(1008, "rate limit exceeded".into()),
        async |c: &mut Client| {
            for _ in 0..10_000 {
                if c.try_send(Message::text(r#"{"type":"ping"}"#))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        },
    )
    .await;
    assert_eq!(server.metric(&rejected("rate_limited")).await, 1);

    // A client within the rate (a burst, then 25/s for a second) stays connected.
    let mut polite = Client::connect(&server.url()).await;
    for _ in 0..10 {
        polite.send(r#"{"type":"ping"}"#).await;
    }
    for _ in 0..10 {
        assert_eq!(polite.recv_text().await, r#"{"type":"pong"}"#);
    }
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        polite.send(r#"{"type":"ping"}"#).await;
        assert_eq!(polite.recv_text().await, r#"{"type":"pong"}"#);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_connections_from_one_address_are_refused_with_429() {
    let server = Server::start(Config {
        max_connections_per_ip: 3,
        ..config()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::connect(&server.url()).await);
    }
    assert_refused(
        Client::try_connect(&server.url(), None).await,
        429,
        "a fourth connection",
    );
    assert_eq!(
        server
            .metric("civicbase_signaling_upgrades_refused_total{reason=\"per_ip_limit\"}")
            .await,
        1
    );
    // The held connections still work, and closing one frees a slot.
    for client in &mut held {
        assert!(client.sync().await.is_empty());
    }
    held.pop().expect("one").close().await;
    server
        .wait_metric("civicbase_signaling_connections_current", 2)
        .await;
    let mut fourth = Client::connect(&server.url()).await;
    assert!(fourth.sync().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_connection_limit_refuses_with_503() {
    let server = Server::start(Config {
        max_connections: 2,
        ..config()
    })
    .await;
    let _a = Client::connect(&server.url()).await;
    let _b = Client::connect(&server.url()).await;
    assert_refused(
        Client::try_connect(&server.url(), None).await,
        503,
        "a third connection",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_idle_timeout_while_a_live_one_stays() {
    let server = Server::start(Config {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(400),
        ..config()
    })
    .await;
    let mut silent = Client::connect(&server.url()).await;
    let mut live = Client::connect(&server.url()).await;
    live.subscribe(&["t"]).await;

    // `live` reads, so its client library answers the server's pings; `silent` reads nothing.
    let live = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1200);
        let mut pings = 0;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, live.ws.next()).await {
            if matches!(message, Message::Ping(_)) {
                pings += 1;
            }
        }
        (live, pings)
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (mut live, pings) = live.await.expect("reader task");
    assert!(
        pings >= 5,
        "only {pings} pings in 1.2 s at a 100 ms interval"
    );

    assert_eq!(
        silent.ending(100).await,
        Ending::Closed(1001, "idle timeout".into())
    );
    live.send(r#"{"type":"publish","topic":"t","ok":1}"#).await;
    assert_eq!(live.recv_json().await["ok"], 1);
    server.wait_metric(&closed("idle"), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_outside_the_allowlist_are_refused_with_403() {
    let server = Server::start(Config {
        allowed_origins: vec!["http://civic.example".into()],
        ..config()
    })
    .await;
    assert_refused(
        Client::try_connect(&server.url(), Some("http://evil.example")).await,
        403,
        "a foreign origin",
    );
    let mut allowed = Client::try_connect(&server.url(), Some("http://civic.example"))
        .await
        .expect("allowed origin");
    assert!(allowed.sync().await.is_empty());
    // Non-browser clients send no Origin.
    let mut native = Client::try_connect(&server.url(), None)
        .await
        .expect("no origin");
    assert!(native.sync().await.is_empty());
    assert_eq!(
        server
            .metric("civicbase_signaling_upgrades_refused_total{reason=\"origin\"}")
            .await,
        1
    );
}

/// A subscriber that stops reading overflows its bounded queue and is disconnected, while the
/// publisher and a subscriber that keeps up get every message without waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_disconnected_without_blocking_the_relay() {
    // Bursts of 20 fit the queue of a reader that keeps up; the stalled one overflows it once
    // the socket buffers between it and the server are full.
    let server = Server::start(Config {
        outbound_queue: 24,
        rate_limit_per_sec: 0,
        ..config()
    })
    .await;
    let mut stalled = Client::connect_small_buffer(server.addr).await;
    stalled.subscribe(&["feed"]).await;
    let mut reader = Client::connect(&server.url()).await;
    reader.subscribe(&["feed"]).await;
    let mut publisher = Client::connect(&server.url()).await;

    let received = Arc::new(AtomicUsize::new(0));
    let reader = tokio::spawn({
        let received = Arc::clone(&received);
        async move {
            for _ in 0..100_000 {
                let text = reader.recv_text().await;
                if text.contains("\"last\"") {
                    return reader;
                }
                received.fetch_add(1, Ordering::Relaxed);
            }
            panic!("no last message");
        }
    });

    let payload = "p".repeat(32 * 1024);
    let slow = closed("slow_consumer");
    let mut sent = 0;
    for round in 0..100 {
        for _ in 0..20 {
            publisher
                .send(&format!(
                    r#"{{"type":"publish","topic":"feed","data":"{payload}"}}"#
                ))
                .await;
            sent += 1;
        }
        // Pace to the reader that keeps up, so that only the stalled one overflows.
        let deadline = tokio::time::Instant::now() + STEP;
        while received.load(Ordering::Relaxed) < sent {
            assert!(tokio::time::Instant::now() < deadline, "the relay stalled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if server.metric(&slow).await == 1 {
            break;
        }
        assert!(round < 99, "the stalled client was never disconnected");
    }
    publisher
        .send(r#"{"type":"publish","topic":"feed","last":true}"#)
        .await;
    let reader = tokio::time::timeout(STEP, reader)
        .await
        .expect("reader finished")
        .expect("reader task");
    assert_eq!(received.load(Ordering::Relaxed), sent);

    // The stalled client finds what was buffered, then the end of the connection.
    let ending = stalled.ending(100_000).await;
    assert!(
        ending == Ending::Closed(1008, "slow consumer".into()) || ending == Ending::Dropped,
        "{ending:?}"
    );
    reader.close().await;
    server.assert_healthy().await;
}
