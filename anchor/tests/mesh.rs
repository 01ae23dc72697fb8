//! Native peers syncing over real webrtc-rs data channels on 127.0.0.1,
//! introduced by a real signaling server.

mod common;

use civicbase_anchor::store::RedbStore;
use common::*;

/// Alice creates a space; the anchor replicates it from the invite; Alice
/// goes away and the signaling server restarts; Bob, who never met Alice,
/// joins through the anchor alone and posts; Alice comes back and gets
/// Bob's entries from the anchor. Every step compares version vectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_keeps_a_space_for_peers_that_come_later() {
    logs();
    let dir = TempDir::new("keeps");
    let signaling = Signaling::start();
    let url = signaling.url();

    // Alice offers to the anchor (her id is smaller), the anchor offers to
    // Bob: both sides of connection setup are exercised.
    let alice_db = dir.path("alice.redb");
    let open_alice = {
        let p = alice_db.clone();
        move || RedbStore::open(p).expect("alice's store")
    };
    let alice = TestNode::spawn(
        open_alice.clone(),
        config(&url, "Alice", Some("1000000000000000")),
    );
    identity(&alice.handle, "Alice").await;
    let space = create_space(&alice.handle, "Town hall").await;
    let for_anchor = invite(&alice.handle, space, 0).await;
    let for_bob = invite(&alice.handle, space, 1).await;
    for i in 0..30 {
        post(&alice.handle, space, &format!("notice {i}"), "text").await;
    }

    let anchor_db = dir.path("anchor.redb");
    let open_anchor = {
        let p = anchor_db.clone();
        move || RedbStore::open(p).expect("anchor's store")
    };
    let anchor = TestNode::spawn_anchor(
        open_anchor.clone(),
        config(&url, "Anchor", Some("8000000000000000")),
    );
    let from_invite = civicbase_anchor::invite_space(&for_anchor).expect("invite");
    assert_eq!(anchor.handle.replicate(from_invite).await, Some(Ok(true)));
    wait_for("the anchor to replicate the space", 30, || {
        same(&alice.handle, &anchor.handle, space)
    })
    .await;

    // Live: what Alice does now reaches the anchor over the open link.
    for i in 0..5 {
        post(&alice.handle, space, &format!("live {i}"), "text").await;
    }
    wait_for("live entries to reach the anchor", 20, || {
        same(&alice.handle, &anchor.handle, space)
    })
    .await;
    // A second space shared later travels over the same connection.
    let second = create_space(&alice.handle, "Food bank").await;
    post(&alice.handle, second, "opening hours", "9 to 5").await;
    assert_eq!(anchor.handle.replicate(second).await, Some(Ok(true)));
    wait_for("the second space over the same link", 30, || {
        same(&alice.handle, &anchor.handle, second)
    })
    .await;
    let status = anchor.handle.status().await.expect("status");
    assert_eq!(status.links, 1, "one connection carries both spaces");
    assert_eq!(status.spaces.len(), 2);

    let alice_vv = vv(&alice.handle, space).await.expect("vv");
    alice.stop();
    // With nobody connected, the anchor keeps one space in memory and the
    // other on disk only; Bob's visit below loads it again.
    wait_for("the anchor to unload an idle space", 30, || async {
        anchor
            .handle
            .status()
            .await
            .is_some_and(|s| s.resident <= 1 && s.spaces.len() == 2)
    })
    .await;

    // The signaling server goes away and comes back on the same port: the
    // anchor reconnects and subscribes again.
    let port = signaling.port;
    signaling.stop();
    let signaling = Signaling::start_on(port);
    let bob = TestNode::spawn(
        civicbase_core::store::MemoryStore::new,
        config(&url, "Bob", Some("f000000000000000")),
    );
    let bob_id = identity(&bob.handle, "Bob").await;
    join(&bob.handle, &for_bob).await;
    wait_for("Bob to join through the anchor", 60, || async {
        let (Some(b), Some(a)) = (
            vv(&bob.handle, space).await,
            vv(&anchor.handle, space).await,
        ) else {
            return false;
        };
        b.get(&bob_id) >= 1 && a == b
    })
    .await;
    assert!(vv(&bob.handle, space)
        .await
        .expect("vv")
        .dominates(&alice_vv));
    for i in 0..3 {
        post(&bob.handle, space, &format!("from Bob {i}"), "text").await;
    }
    wait_for("Bob's notices to reach the anchor", 20, || {
        same(&bob.handle, &anchor.handle, space)
    })
    .await;

    // The anchor restarts on its database, Bob leaves, Alice comes back:
    // she gets Bob's entries from the anchor alone.
    anchor.stop();
    bob.stop();
    let anchor = TestNode::spawn_anchor(open_anchor, config(&url, "Anchor", None));
    let alice = TestNode::spawn(open_alice, config(&url, "Alice", None));
    wait_for(
        "Alice to catch up from the restarted anchor",
        30,
        || async {
            same(&alice.handle, &anchor.handle, space).await
                && vv(&alice.handle, space)
                    .await
                    .is_some_and(|v| v.get(&bob_id) == 4)
        },
    )
    .await;
    drop(signaling);
}

/// The anchor binary is killed (SIGKILL) while a large space streams in,
/// restarted on the same data directory, completes the sync, and is stopped
/// with SIGTERM: its database then holds every entry exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_killed_during_sync_resumes_and_loses_nothing() {
    logs();
    let dir = TempDir::new("killed");
    let signaling = Signaling::start();
    let url = signaling.url();
    let alice = TestNode::spawn(
        civicbase_core::store::MemoryStore::new,
        config(&url, "Alice", None),
    );
    identity(&alice.handle, "Alice").await;
    let space = create_space(&alice.handle, "Big").await;
    let link = format!(
        "http://127.0.0.1:{}/#{}",
        signaling.port,
        invite(&alice.handle, space, 0).await
    );
    // About 6 MB in 2,000 entries: long enough to stop it half-way.
    let body = "x".repeat(3_000);
    for i in 0..2_000 {
        post(&alice.handle, space, &format!("notice {i}"), &body).await;
    }
    let expected = vv(&alice.handle, space).await.expect("vv");
    let total = expected.total();
    let t0 = std::time::Instant::now();

    let data_dir = dir.path("anchor");
    let db = data_dir.join(civicbase_anchor::DB_FILE);
    let spawn = |with_join: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_civicbase-anchor"));
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .arg("--signaling")
            .arg(&url)
            .arg("--loopback-only")
            .env(
                "RUST_LOG",
                std::env::var("CHILD_LOG").unwrap_or_else(|_| "civicbase_anchor=warn".into()),
            )
            .stdout(std::process::Stdio::null());
        if with_join {
            cmd.arg("--join").arg(&link);
        }
        ChildGuard(cmd.spawn().expect("start the anchor"))
    };
    let held = |db: std::path::PathBuf| async move {
        let store = RedbStore::open_read_only(&db).ok()?;
        civicbase_core::store::Store::log_len(&store, &space)
            .await
            .ok()
    };

    let mut first = spawn(true);
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    wait_for("the first entries to be stored", 60, || {
        let (db, seen) = (db.clone(), seen.clone());
        async move {
            let n = held(db).await.unwrap_or(0);
            seen.store(n, std::sync::atomic::Ordering::SeqCst);
            n > 0
        }
    })
    .await;
    first.0.kill().expect("kill");
    first.0.wait().expect("wait");
    drop(first);
    let before = seen.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        before < total,
        "the anchor must be stopped half-way ({before} of {total} stored)"
    );
    eprintln!(
        "killed the anchor with {before} of {total} entries stored after {:?}",
        t0.elapsed()
    );

    // No --join this time: the space is remembered.
    let mut second = spawn(false);
    wait_for("the restarted anchor to complete the sync", 120, || {
        let db = db.clone();
        async move { held(db).await == Some(total) }
    })
    .await;
    eprintln!("the restarted anchor completed after {:?}", t0.elapsed());
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(second.0.id().to_string())
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = second.0.wait().expect("wait");
    assert!(
        exit.success(),
        "the anchor exits cleanly on SIGTERM: {exit:?}"
    );
    drop(second);

    let store = RedbStore::open(&db).expect("open after exit");
    let entries = civicbase_core::store::Store::entries_from(&store, &space, 0)
        .await
        .expect("read");
    assert_eq!(entries.len() as u64, total, "every entry, once");
    let ids: std::collections::HashSet<_> = entries.iter().map(|e| e.id()).collect();
    assert_eq!(ids.len(), entries.len(), "no duplicates");
    assert_eq!(
        civicbase_core::store::Store::version_vector(&store, &space)
            .await
            .expect("vv"),
        expected
    );
    let (replica, report) = civicbase_core::store::load_replica(
        &store,
        &space,
        civicbase_engine::Env::now_ms(&civicbase_anchor::node::SystemEnv),
        Default::default(),
    )
    .await
    .expect("load");
    assert_eq!(report.refused, 0, "the stored log is valid");
    assert_eq!(replica.version_vector(), expected);
}

/// Kills the child if a test fails before it does.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A peer that sends the anchor a message that is not a link message loses
/// its connection; the anchor's other links carry on syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_link_message_closes_only_that_link() {
    logs();
    let signaling = Signaling::start();
    let url = signaling.url();
    let alice = TestNode::spawn(
        civicbase_core::store::MemoryStore::new,
        config(&url, "Alice", Some("2000000000000000")),
    );
    identity(&alice.handle, "Alice").await;
    let space = create_space(&alice.handle, "Town").await;
    for i in 0..5 {
        post(&alice.handle, space, &format!("notice {i}"), "text").await;
    }
    let anchor = TestNode::spawn_anchor(
        civicbase_core::store::MemoryStore::new,
        config(&url, "Anchor", Some("8000000000000000")),
    );
    anchor.handle.replicate(space).await;
    wait_for("the anchor to replicate", 30, || {
        same(&alice.handle, &anchor.handle, space)
    })
    .await;

    let topic = civicbase_engine::mesh::topic(&space);
    let raw = raw::RawPeer::connect(&url, &topic, "0000000000000000", "8000000000000000").await;
    let links = |n: usize| {
        let h = anchor.handle.clone();
        move || {
            let h = h.clone();
            async move { h.status().await.is_some_and(|s| s.links == n) }
        }
    };
    wait_for("the raw peer's link to come up", 20, links(2)).await;
    raw.send(vec![9, 9, 9]).await;
    raw.wait_closed(20).await;
    wait_for("the anchor to drop only that link", 20, links(1)).await;

    post(&alice.handle, space, "after the bad peer", "still syncing").await;
    wait_for("Alice's link to carry on", 20, || {
        same(&alice.handle, &anchor.handle, space)
    })
    .await;
}

/// A bare WebRTC peer speaking the signaling protocol by hand, to send what
/// a well-behaved node never would.
mod raw {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use civicbase_anchor::rtc::{self, RtcConfig};
    use civicbase_anchor::signaling::{decode_frame, PeerMessage, Signal};
    use futures_util::{SinkExt as _, StreamExt as _};
    use serde_json::json;
    use tokio::sync::{mpsc, oneshot, Notify};
    use tokio_tungstenite::tungstenite::Message;
    use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
    use webrtc::data_channel::RTCDataChannel;
    use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
    use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
    use webrtc::peer_connection::RTCPeerConnection;

    pub struct RawPeer {
        pc: Arc<RTCPeerConnection>,
        dc: Arc<RTCDataChannel>,
        closed: Arc<Notify>,
        task: tokio::task::JoinHandle<()>,
    }

    fn publish(topic: &str, data: serde_json::Value) -> Message {
        Message::text(json!({"type": "publish", "topic": topic, "data": data}).to_string())
    }

    impl RawPeer {
        /// Connects to `target` as `me` (which must be the smaller id, so
        /// that this side offers) and returns once the channel is open.
        pub async fn connect(url: &str, topic: &str, me: &str, target: &str) -> RawPeer {
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("signaling");
            let (mut sink, mut stream) = ws.split();
            let subscribe = json!({"type": "subscribe", "topics": [topic]}).to_string();
            sink.send(Message::text(subscribe))
                .await
                .expect("subscribe");
            let announce =
                json!({"type": "announce", "from": me, "name": "Raw", "role": "browser"});
            sink.send(publish(topic, announce)).await.expect("announce");

            let api = rtc::api(&RtcConfig {
                ice_servers: Vec::new(),
                loopback_only: true,
                udp_ports: None,
            })
            .expect("api");
            let pc = Arc::new(
                api.new_peer_connection(Default::default())
                    .await
                    .expect("peer connection"),
            );
            let init = RTCDataChannelInit {
                ordered: Some(true),
                ..Default::default()
            };
            let dc = pc
                .create_data_channel(rtc::CHANNEL_LABEL, Some(init))
                .await
                .expect("channel");
            let (open_tx, open_rx) = oneshot::channel();
            dc.on_open(Box::new(move || {
                let _ = open_tx.send(());
                Box::pin(async {})
            }));
            let closed = Arc::new(Notify::new());
            let on_close = Arc::clone(&closed);
            dc.on_close(Box::new(move || {
                on_close.notify_one();
                Box::pin(async {})
            }));
            let (cand_tx, mut cand_rx) = mpsc::unbounded_channel::<RTCIceCandidateInit>();
            pc.on_ice_candidate(Box::new(move |c| {
                if let Some(init) = c.and_then(|c| c.to_json().ok()) {
                    let _ = cand_tx.send(init);
                }
                Box::pin(async {})
            }));

            // The target answers our announce with its own.
            tokio::time::timeout(Duration::from_secs(20), async {
                while let Some(Ok(Message::Text(t))) = stream.next().await {
                    if let Some((_, PeerMessage::Announce { from, .. })) = decode_frame(t.as_str())
                    {
                        if from == target {
                            return;
                        }
                    }
                }
                panic!("signaling closed");
            })
            .await
            .expect("the target's announce");

            let offer = pc.create_offer(None).await.expect("offer");
            pc.set_local_description(offer.clone())
                .await
                .expect("local description");
            let signal = |s: serde_json::Value| json!({"type": "signal", "from": me, "to": target, "name": "Raw", "role": "browser", "signal": s});
            sink.send(publish(
                topic,
                signal(json!({"type": "offer", "sdp": offer.sdp})),
            ))
            .await
            .expect("offer");

            let (topic, me, target) = (topic.to_owned(), me.to_owned(), target.to_owned());
            let pc2 = Arc::clone(&pc);
            let task = tokio::spawn(async move {
                loop {
                    tokio::select! {
                        Some(c) = cand_rx.recv() => {
                            let s = json!({"type": "candidate", "candidate": c.candidate, "sdpMid": "0", "sdpMLineIndex": 0});
                            let data = json!({"type": "signal", "from": me, "to": target, "signal": s});
                            let _ = sink.send(publish(&topic, data)).await;
                        }
                        frame = stream.next() => {
                            let Some(Ok(Message::Text(t))) = frame else { return };
                            let Some((_, PeerMessage::Signal { from, to, signal, .. })) = decode_frame(t.as_str()) else { continue };
                            if from != target || to != me {
                                continue;
                            }
                            match signal {
                                Signal::Answer { sdp } => {
                                    let desc = RTCSessionDescription::answer(sdp).expect("answer");
                                    pc2.set_remote_description(desc).await.expect("remote description");
                                }
                                Signal::Candidate { candidate, sdp_mid, sdp_mline_index } => {
                                    let init = RTCIceCandidateInit { candidate, sdp_mid, sdp_mline_index, username_fragment: None };
                                    let _ = pc2.add_ice_candidate(init).await;
                                }
                                Signal::Offer { .. } => {}
                            }
                        }
                    }
                }
            });
            tokio::time::timeout(Duration::from_secs(20), open_rx)
                .await
                .expect("the channel opens in time")
                .expect("open");
            RawPeer {
                pc,
                dc,
                closed,
                task,
            }
        }

        pub async fn send(&self, bytes: Vec<u8>) {
            self.dc.send(&Bytes::from(bytes)).await.expect("send");
        }

        /// Waits for the other side to close the channel.
        pub async fn wait_closed(&self, secs: u64) {
            tokio::time::timeout(Duration::from_secs(secs), self.closed.notified())
                .await
                .expect("the anchor closes the connection");
        }
    }

    impl Drop for RawPeer {
        fn drop(&mut self) {
            self.task.abort();
            let pc = Arc::clone(&self.pc);
            tokio::spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// Chromium, driven over the DevTools protocol, connects to the anchor as a
/// browser does: its SDP offer (or answer) goes through the signaling
/// server, its host candidates are hidden behind unresolvable `.local`
/// names as Chromium does by default, and the anchor gathers loopback
/// candidates only — so the connection can only form from Chromium's
/// connectivity checks (a peer-reflexive candidate on the anchor's side).
/// Over the channel the page exchanges real link messages: it receives the
/// entries it lacks and delivers entries the anchor lacks. Skipped, with a
/// message, where Chromium is not installed (`CHROMIUM` names it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_connects_to_the_anchor_both_as_offerer_and_as_answerer() {
    logs();
    let Some(browser) = chromium::Chromium::launch().await else {
        eprintln!("skipped: no Chromium (set CHROMIUM to its path)");
        return;
    };
    for chromium_offers in [true, false] {
        chromium::exchange(&browser, chromium_offers).await;
    }
}

mod chromium {
    use std::path::PathBuf;
    use std::time::Duration;

    use civicbase_core::bundle;
    use civicbase_core::op::Op;
    use civicbase_core::replica::{NewSpace, Replica, ReplicaConfig};
    use civicbase_core::sync::{HeadInfo, Hello, Message as SyncMessage, PROTOCOL_VERSION};
    use civicbase_core::{Entry, Keypair, VersionVector};
    use civicbase_engine::mesh::{topic, LinkDecoder, LinkEncoder};
    use civicbase_proto::RequestBody;
    use futures_util::{SinkExt as _, StreamExt as _};
    use serde_json::{json, Value};
    use tokio::io::AsyncBufReadExt as _;
    use tokio_tungstenite::tungstenite::Message;

    use super::common::*;

    /// A headless Chromium with its DevTools endpoint.
    pub struct Chromium {
        child: tokio::process::Child,
        devtools: String,
        _profile: TempDir,
    }

    impl Drop for Chromium {
        fn drop(&mut self) {
            let _ = self.child.start_kill();
        }
    }

    impl Chromium {
        pub async fn launch() -> Option<Chromium> {
            let bin = std::env::var_os("CHROMIUM")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
            if !bin.exists() {
                return None;
            }
            let profile = TempDir::new("chromium");
            let mut child = tokio::process::Command::new(&bin)
                .args([
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                    // Real mDNS names would be announced by multicast; the
                    // page hides its addresses the same way instead.
                    "--disable-features=WebRtcHideLocalIpsWithMdns",
                    "--remote-debugging-port=0",
                    "about:blank",
                ])
                .arg(format!("--user-data-dir={}", profile.0.display()))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start Chromium");
            let stderr = child.stderr.take().expect("stderr");
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            let devtools = tokio::time::timeout(Duration::from_secs(30), async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        return url.trim().to_owned();
                    }
                }
                panic!("Chromium exited before its DevTools endpoint was up");
            })
            .await
            .expect("Chromium starts");
            // Keep reading so that Chromium never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Some(Chromium {
                child,
                devtools,
                _profile: profile,
            })
        }

        /// Opens `url` in a new tab and evaluates `script` there (awaiting
        /// its promise); returns its value.
        async fn evaluate(&self, url: &str, script: &str) -> Value {
            let (ws, _) = tokio_tungstenite::connect_async(self.devtools.as_str())
                .await
                .expect("DevTools");
            let mut cdp = Cdp { ws, next_id: 0 };
            let target = cdp
                .call(None, "Target.createTarget", json!({"url": "about:blank"}))
                .await;
            let target = target["targetId"].as_str().expect("target").to_owned();
            let attached = cdp
                .call(
                    None,
                    "Target.attachToTarget",
                    json!({"targetId": target, "flatten": true}),
                )
                .await;
            let session = attached["sessionId"].as_str().expect("session").to_owned();
            cdp.call(Some(&session), "Page.enable", json!({})).await;
            cdp.call(Some(&session), "Page.navigate", json!({"url": url}))
                .await;
            cdp.event("Page.loadEventFired").await;
            let result = cdp
                .call(
                    Some(&session),
                    "Runtime.evaluate",
                    json!({"expression": script, "awaitPromise": true, "returnByValue": true}),
                )
                .await;
            if let Some(e) = result.get("exceptionDetails") {
                panic!("the page failed: {e}");
            }
            let _ = cdp
                .call(None, "Target.closeTarget", json!({"targetId": target}))
                .await;
            result["result"]["value"].clone()
        }
    }

    /// A DevTools protocol connection.
    struct Cdp {
        ws: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        next_id: u64,
    }

    impl Cdp {
        async fn next(&mut self) -> Value {
            let Some(Ok(Message::Text(t))) = self.ws.next().await else {
                panic!("DevTools connection closed");
            };
            serde_json::from_str(t.as_str()).expect("json")
        }

        async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
            self.next_id += 1;
            let mut msg = json!({"id": self.next_id, "method": method, "params": params});
            if let Some(s) = session {
                msg["sessionId"] = json!(s);
            }
            self.ws
                .send(Message::text(msg.to_string()))
                .await
                .expect("send");
            loop {
                let v = self.next().await;
                if v["id"] == json!(self.next_id) {
                    if v.get("error").is_some() {
                        panic!("{method} failed: {v}");
                    }
                    return v["result"].clone();
                }
            }
        }

        async fn event(&mut self, method: &str) {
            tokio::time::timeout(Duration::from_secs(20), async {
                while self.next().await["method"] != json!(method) {}
            })
            .await
            .expect("the page loads");
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// The page's side: the browser's mesh protocol, by hand.
    const PAGE: &str = r#"
(async (cfg) => {
  const bytes = (h) => Uint8Array.from(h.match(/../g).map((x) => parseInt(x, 16)));
  const toHex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
  const ws = new WebSocket(cfg.url);
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error("signaling")); });
  const publish = (data) => ws.send(JSON.stringify({ type: "publish", topic: cfg.topic, data }));
  const signal = (s) => publish({ type: "signal", from: cfg.me, to: cfg.target, name: "Chromium", role: "browser", signal: s });
  const pc = new RTCPeerConnection({ iceServers: [] });
  const report = { candidates: [], received: [] };
  pc.onicecandidate = (e) => {
    if (!e.candidate || !e.candidate.candidate) return;
    const parts = e.candidate.candidate.split(" ");
    // Chromium's default: host addresses hidden behind random mDNS names.
    if (parts[7] === "host") parts[4] = crypto.randomUUID() + ".local";
    const candidate = parts.join(" ");
    report.candidates.push(candidate);
    signal({ type: "candidate", candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex });
  };
  let remoteSet = false;
  const early = [];
  const addRemote = async (s) => {
    if (!remoteSet) { early.push(s); return; }
    await pc.addIceCandidate({ candidate: s.candidate, sdpMid: s.sdpMid, sdpMLineIndex: s.sdpMLineIndex });
  };
  const setRemote = async (desc) => {
    await pc.setRemoteDescription(desc);
    remoteSet = true;
    for (const s of early.splice(0)) await addRemote(s);
  };
  const done = new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error("no entries from the anchor within 30 s: " + JSON.stringify(report))), 30000);
    const attach = (dc) => {
      dc.binaryType = "arraybuffer";
      dc.onopen = () => { for (const m of cfg.send) dc.send(bytes(m)); };
      let frames = 0;
      dc.onmessage = (m) => {
        report.received.push(toHex(m.data));
        // Link header: version, kind (1 = a frame's last piece), space. The
        // frames are compressed: the anchor's first is its Hello, the second
        // the entries the page lacks (the test decodes them all).
        if (new Uint8Array(m.data)[1] === 1 && ++frames === 2) resolve(report);
      };
    };
    if (cfg.offer) {
      attach(pc.createDataChannel("civicbase", { ordered: true }));
    } else {
      pc.ondatachannel = (e) => attach(e.channel);
    }
  });
  let started = false;
  ws.onmessage = async (m) => {
    const f = JSON.parse(m.data);
    const d = f.data;
    if (f.type !== "publish" || !d || d.from !== cfg.target) return;
    if (d.type === "announce" && cfg.offer && !started) {
      started = true;
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      signal({ type: "offer", sdp: offer.sdp });
    } else if (d.type === "signal" && d.to === cfg.me) {
      const s = d.signal;
      if (s.type === "answer") await setRemote({ type: "answer", sdp: s.sdp });
      else if (s.type === "offer") {
        await setRemote({ type: "offer", sdp: s.sdp });
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        signal({ type: "answer", sdp: answer.sdp });
      } else if (s.type === "candidate") await addRemote(s);
    }
  };
  ws.send(JSON.stringify({ type: "subscribe", topics: [cfg.topic] }));
  publish({ type: "announce", from: cfg.me, name: "Chromium", role: "browser" });
  const result = await done;
  const stats = await pc.getStats();
  stats.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") result.pair = true; });
  pc.close();
  ws.close();
  return result;
})
"#;

    /// One page against a fresh anchor: the anchor holds the first six
    /// entries of a space, the page the first three plus the last four.
    pub async fn exchange(browser: &Chromium, chromium_offers: bool) {
        let site = TempDir::new("site");
        std::fs::write(site.path("blank.html"), "<!doctype html><title>t</title>").expect("page");
        let signaling = Signaling::start_serving(site.0.clone());

        // A space of ten entries, all by Alice.
        let now = 1_750_000_000_000;
        let alice = Keypair::from_seed([7; 32]);
        let new = NewSpace {
            name: "Chromium".into(),
            founder_name: "Alice".into(),
            default_credit_limit: 5,
        };
        let (mut r, _) =
            Replica::create(&alice, new, now, ReplicaConfig::default()).expect("space");
        let space = r.space();
        let post = |r: &mut Replica, i: u64| {
            let op = Op::PostNotice {
                title: format!("notice {i}"),
                body: String::new(),
            };
            r.author(&alice, vec![op], now + i).expect("post");
        };
        for i in 1..6 {
            post(&mut r, i);
        }
        let first_six = bundle::export(&r, &alice, &VersionVector::new(), now + 10);
        for i in 6..10 {
            post(&mut r, i);
        }
        let entries: Vec<Entry> = r.log().cloned().collect();
        assert_eq!(entries.len(), 10);

        let anchor = TestNode::spawn_anchor(
            civicbase_core::store::MemoryStore::new,
            config(&signaling.url(), "Anchor", Some("8000000000000000")),
        );
        anchor.handle.replicate(space).await;
        anchor
            .handle
            .request(RequestBody::ImportBundle { bytes: first_six })
            .await
            .expect("import");
        assert_eq!(vv(&anchor.handle, space).await.expect("vv").total(), 6);

        // The page claims the first three entries, then sends the last four.
        let prefix = |id: &civicbase_core::EntryId| {
            let mut p = [0u8; 8];
            p.copy_from_slice(&id.as_bytes()[..8]);
            p
        };
        let hello = SyncMessage::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            space,
            heads: vec![HeadInfo {
                author: alice.author(),
                count: 3,
                head_prefix: prefix(&entries[2].id()),
            }],
            forks: Vec::new(),
        });
        let tail = SyncMessage::Entries(entries[6..].iter().map(|e| e.encode()).collect());
        let mut send = Vec::new();
        let mut encoder = LinkEncoder::new();
        for frame in [hello.encode(), tail.encode()] {
            send.extend(encoder.encode(&space, &frame).iter().map(|m| hex(m)));
        }
        let me = if chromium_offers {
            "0000000000000000"
        } else {
            "ffffffffffffffff"
        };
        let cfg = json!({
            "url": signaling.url(),
            "topic": topic(&space),
            "me": me,
            "target": "8000000000000000",
            "offer": chromium_offers,
            "send": send,
        });
        let page = format!("http://127.0.0.1:{}/blank.html", signaling.port);
        let script = format!("{PAGE}({cfg})");
        let report = browser.evaluate(&page, &script).await;

        let candidates = report["candidates"].as_array().expect("candidates");
        assert!(
            !candidates.is_empty(),
            "Chromium gathered candidates: {report}"
        );
        assert!(
            candidates
                .iter()
                .filter_map(Value::as_str)
                .filter(|c| c.contains(" typ host"))
                .all(|c| c.contains(".local ")),
            "every host candidate was an mDNS name: {report}"
        );
        assert_eq!(report["pair"], json!(true), "Chromium's ICE pair succeeded");
        // The anchor sent the three entries the page lacked…
        let mut got = Vec::new();
        let mut decoder = LinkDecoder::new();
        for m in report["received"].as_array().expect("received") {
            let bytes = unhex(m.as_str().expect("hex"));
            let frame = decoder
                .decode(&bytes)
                .expect("a link message of this version");
            if let Some((_, frame)) = frame {
                if let Ok(SyncMessage::Entries(raw)) = SyncMessage::decode(&frame) {
                    got.extend(raw.iter().map(|b| Entry::decode(b).expect("entry").id()));
                }
            }
        }
        let wanted: Vec<_> = entries[3..6].iter().map(Entry::id).collect();
        assert_eq!(got, wanted, "the anchor sent exactly what the page lacked");
        // …and stored the four the page sent.
        wait_for("the anchor to store the page's entries", 20, || async {
            vv(&anchor.handle, space).await == Some(r.version_vector())
        })
        .await;
        anchor.stop();
        signaling.stop();
    }
}
