//! Test harness: a real server on 127.0.0.1:0, WebSocket clients, and a minimal HTTP client.
//! Every wait is bounded by a timeout, every loop by a count.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use civicbase_signaling::{serve, Config, ServeError};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected event may take.
pub const STEP: Duration = Duration::from_secs(5);

/// A test configuration: defaults with an empty static directory that does not exist.
pub fn config() -> Config {
    Config {
        static_dir: PathBuf::from("/nonexistent/civicbase-signaling-test"),
        shutdown_grace: Duration::from_secs(2),
        ..Config::default()
    }
}

/// A server running in this process until dropped or shut down.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Server {
    pub async fn start(config: Config) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, config, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Signals shutdown; returns the task so the caller can await the server's end.
    pub fn shutdown(&mut self) -> JoinHandle<Result<(), ServeError>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("not shut down twice")
    }

    /// Reads one counter or gauge from `/metrics` (`name` includes labels, if any).
    pub async fn metric(&self, name: &str) -> u64 {
        let response = get(self.addr, "/metrics", &[]).await;
        assert_eq!(response.status, 200);
        let text = String::from_utf8(response.body).expect("utf-8 metrics");
        text.lines()
            .find_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                (key == name).then(|| value.parse().expect("a number"))
            })
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }

    /// Waits until `name` reaches `value`.
    pub async fn wait_metric(&self, name: &str, value: u64) {
        for _ in 0..250 {
            if self.metric(name).await == value {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{name} stayed at {} instead of {value}",
            self.metric(name).await
        );
    }

    /// Proves the server still relays: two fresh clients exchange a message.
    pub async fn assert_healthy(&self) {
        let mut a = Client::connect(&self.url()).await;
        let mut b = Client::connect(&self.url()).await;
        let topic = format!("health-{}", unique());
        a.subscribe(&[&topic]).await;
        b.subscribe(&[&topic]).await;
        b.send(&format!(
            r#"{{"type":"publish","topic":"{topic}","data":"alive"}}"#
        ))
        .await;
        let got = a.recv_json().await;
        assert_eq!(got["data"], "alive");
        assert_eq!(got["clients"], 2);
        a.close().await;
        b.close().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn unique() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking the protocol with hand-written JSON.
pub struct Client {
    pub ws: Ws,
}

/// Asserts that an attempt to connect was refused with HTTP `status`; `what` names the attempt
/// in the failure message.
pub fn assert_refused(attempt: Result<Client, tungstenite::Error>, status: u16, what: &str) {
    match attempt {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), status, "{what}"),
        Err(other) => panic!("{what}: unexpected error {other}"),
        Ok(_) => panic!("{what} was accepted"),
    }
}

/// How a connection ended, seen from the client.
#[derive(Debug, PartialEq)]
pub enum Ending {
    /// A close frame with this code and reason.
    Closed(u16, String),
    /// The stream ended without a close frame (reset, EOF).
    Dropped,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        Client::try_connect(url, None)
            .await
            .unwrap_or_else(|error| panic!("connect to {url}: {error}"))
    }

    pub async fn try_connect(
        url: &str,
        origin: Option<&str>,
    ) -> Result<Client, tungstenite::Error> {
        match origin {
            Some(origin) => Client::try_connect_with(url, &[("Origin", origin)]).await,
            None => Client::try_connect_with(url, &[]).await,
        }
    }

    /// Connects with extra request headers (repeated names are sent as separate lines).
    pub async fn try_connect_with(
        url: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Client, tungstenite::Error> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
        let (ws, _) = tokio::time::timeout(
            STEP,
            tokio_tungstenite::connect_async_with_config(request, Some(config), true),
        )
        .await
        .expect("connect timed out")?;
        Ok(Client { ws })
    }

    /// Connects with a small, fixed socket receive buffer, so that a client that stops reading
    /// fills the path from the server quickly.
    pub async fn connect_small_buffer(addr: SocketAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
        let stream = tokio::time::timeout(STEP, socket.connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let (ws, _) = tokio::time::timeout(
            STEP,
            tokio_tungstenite::client_async(format!("ws://{addr}"), MaybeTlsStream::Plain(stream)),
        )
        .await
        .expect("handshake timed out")
        .expect("handshake");
        Client { ws }
    }

    pub async fn send(&mut self, text: &str) {
        self.try_send(Message::text(text))
            .await
            .unwrap_or_else(|error| panic!("send {text:.80}: {error}"));
    }

    pub async fn try_send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        tokio::time::timeout(STEP, self.ws.send(message))
            .await
            .map_err(|_| tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()))?
    }

    /// The next text frame, skipping control frames.
    pub async fn recv_text(&mut self) -> String {
        for _ in 0..1000 {
            let message = tokio::time::timeout(STEP, self.ws.next())
                .await
                .expect("timed out waiting for a text frame")
                .expect("stream ended")
                .expect("read error");
            match message {
                Message::Text(text) => return text.to_string(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected text, got {other:?}"),
            }
        }
        panic!("only control frames arrived");
    }

    pub async fn recv_json(&mut self) -> serde_json::Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    }

    /// Sends a ping message and returns every text frame that arrived before the pong. Since a
    /// connection's messages are handled in order, everything sent before has been applied.
    pub async fn sync(&mut self) -> Vec<String> {
        self.send(r#"{"type":"ping"}"#).await;
        let mut before = Vec::new();
        for _ in 0..10_000 {
            let text = self.recv_text().await;
            if text == r#"{"type":"pong"}"# {
                return before;
            }
            before.push(text);
        }
        panic!("no pong");
    }

    pub async fn subscribe(&mut self, topics: &[&str]) {
        let topics = serde_json::to_string(topics).expect("topics");
        self.send(&format!(r#"{{"type":"subscribe","topics":{topics}}}"#))
            .await;
        assert!(self.sync().await.is_empty());
    }

    /// Reads until the connection ends (at most `limit` frames) and says how.
    pub async fn ending(&mut self, limit: usize) -> Ending {
        let deadline = tokio::time::Instant::now() + STEP;
        for _ in 0..limit {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("connection still open after {STEP:?}"),
                Ok(None) | Ok(Some(Err(_))) => return Ending::Dropped,
                Ok(Some(Ok(Message::Close(Some(frame))))) => {
                    return Ending::Closed(frame.code.into(), frame.reason.to_string())
                }
                Ok(Some(Ok(Message::Close(None)))) => return Ending::Closed(1005, String::new()),
                Ok(Some(Ok(_))) => continue,
            }
        }
        panic!("more than {limit} frames and still open");
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(STEP, self.ws.close(None)).await;
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// `GET path` over HTTP/1.1 with `Connection: close`; decodes a chunked body.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut raw))
        .await
        .expect("response timed out")
        .expect("read response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = std::str::from_utf8(&raw[..split]).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1_000_000 {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).expect("chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
    panic!("too many chunks");
}
