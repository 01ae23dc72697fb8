//! The CivicBase signaling server: a small WebSocket rendezvous that introduces peers to each
//! other, and the static host of the built app.
//!
//! It speaks the y-webrtc signaling protocol (see [`protocol`]), so existing y-webrtc clients work
//! against it unchanged: a client subscribes to topics, and whatever is published to a topic is
//! relayed to every subscriber, the sender included, with a `clients` field holding the number of
//! receivers. The server knows nothing of CivicBase data; clients use hashed topic names.
//!
//! Every connection is held to limits set in [`Config`]: frame size, topics, topic name length,
//! frames per second (token bucket), connections per IP address and in total, an idle timeout
//! with server pings, an optional `Origin` allowlist, and a bounded outbound queue (a client
//! that does not read fast enough is disconnected; it never slows the relay). A connection that
//! breaks a limit, or sends malformed JSON or a binary frame, is closed with a close code and a
//! reason; every other connection carries on. Behind a reverse proxy listed in
//! [`Config::trusted_proxies`], connections are counted and logged under the client address
//! the proxy passes in `X-Forwarded-For` or `X-Real-IP`.
//!
//! HTTP routes:
//!
//! | path       | serves                                                              |
//! |------------|---------------------------------------------------------------------|
//! | `/`        | WebSocket upgrade, or `index.html` of the static directory          |
//! | `/signal`  | WebSocket upgrade                                                   |
//! | `/healthz` | `200 ok`                                                            |
//! | `/metrics` | Prometheus text format; may require `Authorization: Bearer <token>` |
//! | `/*`       | static files; hashed names cached for a year, the rest `no-cache`   |
//!
//! # Embedding
//!
//! ```
//! use std::time::Duration;
//! use civicbase_signaling::{serve, Config};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//!     println!("signaling on ws://{}", listener.local_addr()?);
//!     let config = Config {
//!         static_dir: "dist".into(),
//!         max_connections_per_ip: 16,
//!         ..Config::default()
//!     };
//!     // Stops at once here; pass a signal (e.g. `tokio::signal::ctrl_c()`) in real use.
//!     let shutdown = tokio::time::sleep(Duration::from_millis(10));
//!     serve(listener, config, shutdown).await?;
//!     Ok(())
//! })
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tracing::{info, warn};

mod config;
mod connection;
mod http;
mod hub;
mod limits;
mod metrics;
mod outbox;
pub mod protocol;
mod proxy;

pub use config::{Args, Cidr, Config, ConfigError, Secret};

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Accepting or serving connections failed.
    #[error("serving failed")]
    Io(#[source] std::io::Error),
}

/// State shared by every connection and route.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) hub: hub::Hub,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) admission: Arc<limits::Admission>,
    pub(crate) heartbeat: Heartbeat,
}

/// The server's heartbeat: wakes every connection once per ping interval (to send its ping and
/// check its idle timeout) and once more when the server shuts down.
///
/// One shared broadcast instead of a timer per connection keeps each connection's state small
/// and the timer wheel empty, at the price of pinging every connection at the same moment.
#[derive(Debug, Default)]
pub(crate) struct Heartbeat {
    stopping: AtomicBool,
    notify: Notify,
}

impl Heartbeat {
    /// Resolves at the next beat or at shutdown, whichever comes first. Take it before checking
    /// [`Heartbeat::is_stopping`]: a shutdown after that check still wakes it.
    pub(crate) fn next(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Whether the server is shutting down.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown has begun.
    pub(crate) async fn stopping(&self) {
        loop {
            let next = self.next();
            if self.is_stopping() {
                return;
            }
            next.await;
        }
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Beats every `period` until shutdown.
    async fn run(&self, period: Duration) {
        let period = limits::at_least_1ms(period);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.is_stopping() {
            tokio::select! {
                _ = ticks.tick() => self.notify.notify_waiters(),
                () = self.stopping() => {}
            }
        }
    }
}

/// Serves signaling and static files on `listener` until `shutdown` resolves.
///
/// On shutdown the server stops accepting, finishes HTTP requests in flight, sends every
/// WebSocket a close frame (1001, "going away") and waits up to [`Config::shutdown_grace`] for
/// them to close; then it returns. `config.bind` is not used: the listener decides the address.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate()?;
    let shared = Arc::new(Shared {
        admission: limits::Admission::new(config.max_connections_per_ip, config.max_connections),
        hub: hub::Hub::default(),
        metrics: metrics::Metrics::default(),
        heartbeat: Heartbeat::default(),
        config,
    });
    let grace = shared.config.shutdown_grace;
    let admission = Arc::clone(&shared.admission);
    let app = http::router(Arc::clone(&shared));
    let heartbeat = tokio::spawn({
        let shared = Arc::clone(&shared);
        async move { shared.heartbeat.run(shared.config.ping_interval).await }
    });

    let signal = async move {
        shutdown.await;
        info!("shutting down");
        shared.heartbeat.stop();
    };
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        // Signaling messages are small and latency-sensitive; the writer batches already.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .await
    .map_err(ServeError::Io)?;
    // Ends by itself after shutdown; an error return must not leave it running.
    heartbeat.abort();

    // Upgraded connections are outside hyper's graceful shutdown: wait for them here.
    if tokio::time::timeout(grace, admission.wait_idle())
        .await
        .is_err()
    {
        warn!(
            open = admission.open(),
            "connections still open after the shutdown grace period"
        );
    }
    info!("stopped");
    Ok(())
}
