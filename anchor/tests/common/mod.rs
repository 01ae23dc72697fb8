//! Test harness: a signaling server, nodes on their own threads, temporary
//! directories and helpers to drive an engine through a node handle. Every
//! socket is on 127.0.0.1, and peers gather loopback candidates only.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use civicbase_anchor::node::{Node, NodeConfig, NodeHandle, SystemEnv};
use civicbase_anchor::rtc::RtcConfig;
use civicbase_core::op::{encode_payload, Op};
use civicbase_core::store::Store;
use civicbase_core::{AuthorId, Hash, SpaceId, VersionVector};
use civicbase_engine::{Engine, StorageError};
use civicbase_proto::{Event, RequestBody, ResponseBody};
use tokio::sync::oneshot;

/// Logs to the test's output, filtered by `RUST_LOG` (nothing by default).
pub fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A fresh directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "civicbase-anchor-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A signaling server on 127.0.0.1, on its own thread and runtime.
pub struct Signaling {
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Signaling {
    /// On a free port.
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// On `port` (0: any free one).
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, PathBuf::from("/nonexistent"))
    }

    /// On a free port, serving the files of `dir`.
    pub fn start_serving(dir: PathBuf) -> Self {
        Self::start_with(0, dir)
    }

    fn start_with(port: u16, static_dir: PathBuf) -> Self {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .expect("bind");
                port_tx
                    .send(listener.local_addr().expect("addr").port())
                    .expect("port");
                let config = civicbase_signaling::Config {
                    static_dir,
                    shutdown_grace: Duration::from_millis(300),
                    ..Default::default()
                };
                civicbase_signaling::serve(listener, config, async move {
                    let _ = stop_rx.await;
                })
                .await
                .expect("serve");
            });
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("signaling started");
        Signaling {
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/signal", self.port)
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Signaling {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The configuration tests use: loopback candidates only.
pub fn config(signaling: &str, name: &str, peer_id: Option<&str>) -> NodeConfig {
    NodeConfig {
        signaling_url: signaling.to_owned(),
        name: name.to_owned(),
        rtc: RtcConfig {
            ice_servers: Vec::new(),
            loopback_only: true,
            udp_ports: None,
        },
        peer_id: peer_id.map(str::to_owned),
    }
}

/// A node running on its own thread (a runtime plus a `LocalSet`).
pub struct TestNode {
    pub handle: NodeHandle,
    thread: Option<JoinHandle<()>>,
}

impl TestNode {
    /// Starts a node on the store `open` returns (called on the node's
    /// thread), with every space in memory (a device).
    pub fn spawn<S, F>(open: F, config: NodeConfig) -> Self
    where
        F: FnOnce() -> S + Send + 'static,
        S: Store + 'static,
        S::Error: StorageError,
    {
        Self::spawn_with(open, config, None)
    }

    /// Starts a node as the anchor binary does, loading spaces only when a
    /// peer asks, here with a single space kept in memory when idle.
    pub fn spawn_anchor<S, F>(open: F, config: NodeConfig) -> Self
    where
        F: FnOnce() -> S + Send + 'static,
        S: Store + 'static,
        S::Error: StorageError,
    {
        Self::spawn_with(open, config, Some(1))
    }

    fn spawn_with<S, F>(open: F, config: NodeConfig, resident: Option<usize>) -> Self
    where
        F: FnOnce() -> S + Send + 'static,
        S: Store + 'static,
        S::Error: StorageError,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let opened = match resident {
                    Some(n) => Engine::open_bounded(open(), &SystemEnv, n).await,
                    None => Engine::open(open(), &SystemEnv).await,
                };
                let engine = match opened {
                    Ok(e) => e,
                    Err(e) => panic!("engine: {e}"),
                };
                let (node, handle) = Node::new(engine, config).expect("node");
                tx.send(handle).expect("handle");
                node.run(std::future::pending()).await;
            });
            rt.shutdown_timeout(Duration::from_secs(2));
        });
        let handle = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("node started");
        TestNode {
            handle,
            thread: Some(thread),
        }
    }

    /// Stops the node gracefully and waits for its thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Polls `check` every 50 ms until it holds; panics after `secs` seconds.
pub async fn wait_for<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ok(event: Option<Event>) -> ResponseBody {
    match event {
        Some(Event::Response {
            result: Ok(body), ..
        }) => body,
        other => panic!("request failed: {other:?}"),
    }
}

/// Creates the node's identity; returns its author id.
pub async fn identity(h: &NodeHandle, name: &str) -> AuthorId {
    let body = RequestBody::CreateIdentity { name: name.into() };
    match ok(h.request(body).await) {
        ResponseBody::Identity(i) => AuthorId(i.device),
        other => panic!("{other:?}"),
    }
}

/// Creates a space.
pub async fn create_space(h: &NodeHandle, name: &str) -> SpaceId {
    let body = RequestBody::CreateSpace {
        name: name.into(),
        default_credit_limit: 10,
    };
    match ok(h.request(body).await) {
        ResponseBody::Space(s) => Hash(s.id),
        other => panic!("{other:?}"),
    }
}

/// An invite link fragment granting `role` (0 viewer … 3 admin).
pub async fn invite(h: &NodeHandle, space: SpaceId, role: u8) -> String {
    let body = RequestBody::CreateInvite {
        space: space.0,
        role,
        valid_hours: 24,
        uses: 1,
    };
    match ok(h.request(body).await) {
        ResponseBody::Invite { fragment } => fragment,
        other => panic!("{other:?}"),
    }
}

/// Asks to join with an invite.
pub async fn join(h: &NodeHandle, fragment: &str) {
    let body = RequestBody::JoinSpace {
        fragment: fragment.into(),
    };
    ok(h.request(body).await);
}

/// Posts a notice.
pub async fn post(h: &NodeHandle, space: SpaceId, title: &str, body: &str) {
    let payload = encode_payload(&[Op::PostNotice {
        title: title.into(),
        body: body.into(),
    }]);
    let req = RequestBody::Act {
        space: space.0,
        payload,
    };
    ok(h.request(req).await);
}

/// The node's version vector of `space`, if it holds it.
pub async fn vv(h: &NodeHandle, space: SpaceId) -> Option<VersionVector> {
    h.status().await?.spaces.get(&space).cloned()
}

/// Whether two nodes hold the same non-empty version vector of `space`.
pub async fn same(a: &NodeHandle, b: &NodeHandle, space: SpaceId) -> bool {
    match (vv(a, space).await, vv(b, space).await) {
        (Some(x), Some(y)) => !x.is_empty() && x == y,
        _ => false,
    }
}
