//! Relay benchmark: `civicbase-signaling` against y-webrtc's Node signaling server.
//!
//! ```text
//! npm install --prefix signaling/bench-node        # once, for the comparison
//! cargo bench -p civicbase-signaling --bench relay -- [--connections 10000] [--seconds 5]
//! ```
//!
//! Each server runs as a child process on 127.0.0.1 (ours is the built binary, so that its
//! resident memory is measured alone) and gets the same workload from this process:
//!
//! 1. resident memory (VmRSS) after start;
//! 2. `--connections` idle WebSockets, each subscribed to its own topic, then VmRSS again: the
//!    difference divided by the number of connections is the memory per connection;
//! 3. relay latency without load: one client publishes, another receives, one at a time;
//! 4. relay throughput: `--publishers` clients publish to one topic that they and
//!    `--subscribers` more clients subscribe to; a publisher keeps at most `--window` of its
//!    messages not yet received by every receiver, so the rate is one that all receivers
//!    sustain. Deliveries per second are counted over `--seconds` after a warm-up, and latency
//!    is sampled at one subscriber.
//!
//! Limits of ours that would refuse the benchmark itself (connections per IP, messages per
//! second) are lifted; everything else runs with the defaults (`--ours-arg ARG`, repeated, passes
//! more flags to it). If y-webrtc is not installed, or with `--only-ours`, the comparison is
//! skipped with a message. `--out PATH` also writes the table to a file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::stream::{self, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const OUR_BIN: &str = env!("CARGO_BIN_EXE_civicbase-signaling");
/// How many connections are opened at once while building the idle set.
const CONNECT_CONCURRENCY: usize = 100;
/// Every single network wait is bounded by this.
const STEP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Options {
    connections: usize,
    subscribers: usize,
    publishers: usize,
    window: usize,
    payload: usize,
    seconds: f64,
    warmup: f64,
    latency_samples: usize,
    out: Option<PathBuf>,
    only_ours: bool,
    ours_args: Vec<String>,
}

impl Options {
    fn parse() -> anyhow::Result<Options> {
        let mut options = Options {
            connections: 2_000,
            subscribers: 8,
            publishers: 4,
            window: 16,
            payload: 256,
            seconds: 5.0,
            warmup: 1.0,
            latency_samples: 2_000,
            out: None,
            only_ours: false,
            ours_args: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--bench" => {}
                "--connections" => options.connections = value()?.parse()?,
                "--subscribers" => options.subscribers = value()?.parse()?,
                "--publishers" => options.publishers = value()?.parse()?,
                "--window" => options.window = value()?.parse()?,
                "--payload" => options.payload = value()?.parse()?,
                "--seconds" => options.seconds = value()?.parse()?,
                "--warmup" => options.warmup = value()?.parse()?,
                "--latency-samples" => options.latency_samples = value()?.parse()?,
                "--out" => options.out = Some(value()?.into()),
                "--only-ours" => options.only_ours = true,
                "--ours-arg" => options.ours_args.push(value()?),
                other => bail!("unknown argument {other}"),
            }
        }
        if options.publishers == 0 || options.window == 0 || options.latency_samples == 0 {
            bail!("--publishers, --window and --latency-samples must be positive");
        }
        Ok(options)
    }
}

/// What was measured for one server.
#[derive(Debug, Default)]
struct Figures {
    rss_start_kib: u64,
    rss_idle_kib: u64,
    held: usize,
    latency_us: Percentiles,
    deliveries_per_sec: f64,
    publishes_per_sec: f64,
    loaded_latency_us: Percentiles,
    dropped: usize,
}

impl Figures {
    fn bytes_per_connection(&self, connections: usize) -> f64 {
        (self.rss_idle_kib.saturating_sub(self.rss_start_kib) * 1024) as f64
            / connections.max(1) as f64
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Percentiles {
    p50: f64,
    p99: f64,
}

fn percentiles(mut samples: Vec<f64>) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// A server in a child process, killed when dropped.
struct ServerProcess {
    child: Child,
    port: u16,
}

impl ServerProcess {
    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .context("no VmRSS in /proc/<pid>/status")
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("server exited at start: {status}");
            }
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("server did not listen within {STEP:?}")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_ours(extra: &[String]) -> anyhow::Result<ServerProcess> {
    let port = free_port()?;
    let child = Command::new(OUR_BIN)
        .env_clear()
        .env("RUST_LOG", "warn")
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--static-dir",
            "/nonexistent",
            "--max-connections-per-ip",
            "0",
            "--max-connections",
            "0",
            "--rate-limit-per-sec",
            "0",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {OUR_BIN}"))?;
    Ok(ServerProcess { child, port })
}

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-node")
}

/// y-webrtc's server, or why it cannot run.
fn start_y_webrtc() -> Result<(ServerProcess, String), String> {
    let dir = node_dir();
    let script = dir.join("node_modules/y-webrtc/bin/server.js");
    if !script.is_file() {
        return Err(format!(
            "{} not found: run `npm install --prefix signaling/bench-node` for the comparison",
            script.display()
        ));
    }
    let version = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node is not available: {e}"))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let package =
        std::fs::read_to_string(dir.join("node_modules/y-webrtc/package.json")).unwrap_or_default();
    let y_webrtc = package
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"version\": \""))
        .map(|v| v.trim_end_matches(['"', ',']).to_owned())
        .unwrap_or_else(|| "?".into());
    let port = free_port().map_err(|e| e.to_string())?;
    let child = Command::new("node")
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .args(["--require", "./localhost.cjs"])
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    Ok((
        ServerProcess { child, port },
        format!("y-webrtc {y_webrtc} (Node {version})"),
    ))
}

fn client_config() -> WebSocketConfig {
    // Small buffers: thousands of these live in this process.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

async fn connect(url: &str) -> anyhow::Result<Ws> {
    let (ws, _) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true),
    )
    .await
    .context("connect timed out")??;
    Ok(ws)
}

async fn send(ws: &mut Ws, text: String) -> anyhow::Result<()> {
    tokio::time::timeout(STEP, ws.send(Message::text(text)))
        .await
        .context("send timed out")??;
    Ok(())
}

/// Sends a ping message and waits for the pong: everything sent before has been applied.
async fn sync(ws: &mut Ws) -> anyhow::Result<()> {
    send(ws, r#"{"type":"ping"}"#.into()).await?;
    for _ in 0..100_000 {
        match tokio::time::timeout(STEP, ws.next())
            .await
            .context("pong timed out")?
        {
            Some(Ok(Message::Text(text))) if text.as_str().contains("\"pong\"") => return Ok(()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("closed while waiting for pong"),
        }
    }
    bail!("no pong")
}

async fn subscribed(url: &str, topic: &str) -> anyhow::Result<Ws> {
    let mut ws = connect(url).await?;
    send(
        &mut ws,
        format!(r#"{{"type":"subscribe","topics":["{topic}"]}}"#),
    )
    .await?;
    sync(&mut ws).await?;
    Ok(ws)
}

/// Reads (so that pings are answered) until `stop`; true if still open by then.
async fn hold(mut ws: Ws, mut stop: watch::Receiver<bool>) -> bool {
    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(_)) => continue,
                _ => return false,
            },
            _ = stop.wait_for(|&s| s) => return true,
        }
    }
}

/// Microseconds since `epoch`, the clock carried in published messages.
fn micros(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

/// The `"t":<micros>` field of a relayed message.
fn sent_at(text: &str) -> Option<u64> {
    let rest = &text[text.find("\"t\":")? + 4..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

async fn measure(server: &mut ServerProcess, options: &Options) -> anyhow::Result<Figures> {
    server.wait_ready().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut figures = Figures {
        rss_start_kib: server.rss_kib()?,
        ..Figures::default()
    };
    let url = server.url();
    let epoch = Instant::now();
    let payload = "x".repeat(options.payload);

    // 1. Idle connections, each subscribed to a topic of its own.
    let (stop, stopped) = watch::channel(false);
    let opened: Vec<anyhow::Result<Ws>> = stream::iter(0..options.connections)
        .map(|i| {
            let url = url.clone();
            async move { subscribed(&url, &format!("idle-{i}")).await }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let mut holders = Vec::with_capacity(opened.len());
    for ws in opened {
        holders.push(tokio::spawn(hold(ws?, stopped.clone())));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    figures.rss_idle_kib = server.rss_kib()?;

    // 2. Latency without load: one publisher, one receiver, one message at a time.
    let mut receiver = subscribed(&url, "latency").await?;
    let mut sender = connect(&url).await?;
    let mut samples = Vec::with_capacity(options.latency_samples);
    for seq in 0..options.latency_samples {
        let text = format!(
            r#"{{"type":"publish","topic":"latency","seq":{seq},"t":{},"data":"{payload}"}}"#,
            micros(epoch)
        );
        send(&mut sender, text).await?;
        loop {
            match tokio::time::timeout(STEP, receiver.next()).await? {
                Some(Ok(Message::Text(text))) => {
                    if let Some(t) = sent_at(text.as_str()) {
                        samples.push(micros(epoch).saturating_sub(t) as f64);
                        break;
                    }
                }
                Some(Ok(_)) => continue,
                _ => bail!("latency receiver closed"),
            }
        }
    }
    figures.latency_us = percentiles(samples);
    drop((receiver, sender));

    // 3. Throughput: publishers and subscribers on one topic. Every connection on the topic
    //    receives every message (publishers get their own too); a publisher sends message n
    //    only once every receiver has received its message n - window, so that the rate
    //    measured is one all receivers sustain, and no server is rewarded for buffering.
    let receivers = options.subscribers + options.publishers;
    let flow = Arc::new(Flow {
        progress: (0..receivers)
            .map(|_| (0..options.publishers).map(|_| AtomicU64::new(0)).collect())
            .collect(),
        wake: (0..options.publishers).map(|_| Notify::new()).collect(),
    });
    let deliveries = Arc::new(AtomicU64::new(0));
    let loaded = Arc::new(Mutex::new(Vec::<f64>::new()));
    let sampling = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(true));
    let mut readers = Vec::new();
    let mut write_halves = Vec::new();
    for r in 0..receivers {
        let ws = subscribed(&url, "bench").await?;
        let (write, read) = ws.split();
        if r >= options.subscribers {
            write_halves.push(write);
        }
        readers.push(tokio::spawn(count_deliveries(
            read,
            Receiver {
                index: r,
                flow: Arc::clone(&flow),
                deliveries: Arc::clone(&deliveries),
                sampler: (r == 0).then(|| (Arc::clone(&loaded), Arc::clone(&sampling), epoch)),
                running: Arc::clone(&running),
            },
        )));
    }
    let mut writers = Vec::new();
    for (p, mut write) in write_halves.into_iter().enumerate() {
        let running = Arc::clone(&running);
        let flow = Arc::clone(&flow);
        let payload = payload.clone();
        let window = options.window as u64;
        writers.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while running.load(Ordering::Relaxed) {
                let slowest = flow
                    .progress
                    .iter()
                    .map(|row| row[p].load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0);
                if seq >= slowest + window {
                    let _ = tokio::time::timeout(Duration::from_millis(200), flow.wake[p].notified())
                        .await;
                    continue;
                }
                let text = format!(
                    r#"{{"type":"publish","topic":"bench","from":"p{p}","seq":{seq},"t":{},"data":"{payload}"}}"#,
                    micros(epoch)
                );
                seq += 1;
                if write.send(Message::text(text)).await.is_err() {
                    return seq;
                }
            }
            seq
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(options.warmup)).await;
    sampling.store(true, Ordering::Relaxed);
    let (start_count, started) = (deliveries.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(options.seconds)).await;
    let (end_count, elapsed) = (deliveries.load(Ordering::Relaxed), started.elapsed());
    sampling.store(false, Ordering::Relaxed);
    running.store(false, Ordering::Relaxed);
    figures.deliveries_per_sec = (end_count - start_count) as f64 / elapsed.as_secs_f64();
    figures.publishes_per_sec = figures.deliveries_per_sec / receivers as f64;
    for writer in writers {
        let _ = tokio::time::timeout(STEP, writer).await;
    }
    for reader in readers {
        reader.abort();
        if let Ok(Ok(false)) = tokio::time::timeout(STEP, reader).await {
            figures.dropped += 1;
        }
    }
    figures.loaded_latency_us = percentiles(std::mem::take(
        &mut *loaded.lock().unwrap_or_else(|e| e.into_inner()),
    ));

    // 4. Were the idle connections held throughout?
    let _ = stop.send(true);
    for holder in holders {
        if matches!(tokio::time::timeout(STEP, holder).await, Ok(Ok(true))) {
            figures.held += 1;
        }
    }
    Ok(figures)
}

type LatencySampler = (Arc<Mutex<Vec<f64>>>, Arc<AtomicBool>, Instant);

/// How far each receiver has got with each publisher's messages.
struct Flow {
    /// `progress[receiver][publisher]`: messages received.
    progress: Vec<Vec<AtomicU64>>,
    /// Per publisher: a receiver made progress on its messages.
    wake: Vec<Notify>,
}

/// One receiving connection of the throughput phase.
struct Receiver {
    index: usize,
    flow: Arc<Flow>,
    deliveries: Arc<AtomicU64>,
    sampler: Option<LatencySampler>,
    running: Arc<AtomicBool>,
}

/// The publisher of a relayed benchmark message (`"from":"p<n>"`).
fn publisher_of(text: &str) -> Option<usize> {
    let rest = &text[text.find("\"from\":\"p")? + 9..];
    rest[..rest.find('"')?].parse().ok()
}

/// Counts relayed messages, records per-publisher progress, samples latency if asked.
/// Returns false if the server closed the connection while the benchmark ran.
async fn count_deliveries(mut read: SplitStream<Ws>, receiver: Receiver) -> bool {
    while let Some(message) = read.next().await {
        let Ok(message) = message else {
            return !receiver.running.load(Ordering::Relaxed);
        };
        let Message::Text(text) = message else {
            continue;
        };
        let text = text.as_str();
        receiver.deliveries.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = publisher_of(text) {
            if let Some(progress) = receiver.flow.progress[receiver.index].get(p) {
                progress.fetch_add(1, Ordering::Relaxed);
                receiver.flow.wake[p].notify_one();
            }
        }
        if let Some((samples, sampling, epoch)) = &receiver.sampler {
            if sampling.load(Ordering::Relaxed) {
                if let Some(t) = sent_at(text) {
                    let latency = micros(*epoch).saturating_sub(t) as f64;
                    samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(latency);
                }
            }
        }
    }
    !receiver.running.load(Ordering::Relaxed)
}

/// The non-zero `connections_closed_total` counters of our server, from `/metrics`.
async fn closes(port: u16) -> anyhow::Result<Vec<String>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    tokio::time::timeout(STEP, stream.read_to_string(&mut text)).await??;
    Ok(text
        .lines()
        .filter_map(|line| line.strip_prefix("civicbase_signaling_connections_closed_total"))
        .filter(|line| !line.ends_with(" 0"))
        .map(str::to_owned)
        .collect())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn kib(bytes: f64) -> String {
    format!("{:.2} KiB", bytes / 1024.0)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "NOT MET"
    }
}

fn table(options: &Options, ours: &Figures, theirs: Option<(&Figures, &str)>) -> String {
    let n = options.connections;
    let mut out = String::new();
    let name = theirs.map_or("y-webrtc (not run)", |(_, name)| name);
    let _ = writeln!(
        out,
        "| | civicbase-signaling | {name} | ours / theirs | target | result |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let mut row = |label: &str,
                   ours_value: String,
                   theirs_value: Option<String>,
                   ratio: Option<f64>,
                   target: &str,
                   result: &str| {
        let _ = writeln!(
            out,
            "| {label} | {ours_value} | {} | {} | {target} | {result} |",
            theirs_value.unwrap_or_else(|| "–".into()),
            ratio.map_or_else(|| "–".into(), |r| format!("{r:.2}×")),
        );
    };
    row(
        "idle connections held",
        format!("{}/{n}", ours.held),
        theirs.map(|(t, _)| format!("{}/{n}", t.held)),
        None,
        "",
        "",
    );
    row(
        "RSS after start",
        mib(ours.rss_start_kib),
        theirs.map(|(t, _)| mib(t.rss_start_kib)),
        theirs.map(|(t, _)| ours.rss_start_kib as f64 / t.rss_start_kib as f64),
        "",
        "",
    );
    row(
        &format!("RSS with {n} idle connections"),
        mib(ours.rss_idle_kib),
        theirs.map(|(t, _)| mib(t.rss_idle_kib)),
        theirs.map(|(t, _)| ours.rss_idle_kib as f64 / t.rss_idle_kib as f64),
        if n >= 10_000 {
            "< 150 MiB at 10,000"
        } else {
            ""
        },
        if n >= 10_000 {
            verdict(ours.rss_idle_kib < 150 * 1024 && ours.held == n)
        } else {
            "not run at 10,000"
        },
    );
    let ours_per = ours.bytes_per_connection(n);
    let theirs_per = theirs.map(|(t, _)| t.bytes_per_connection(n));
    row(
        "memory per idle connection",
        kib(ours_per),
        theirs_per.map(kib),
        theirs_per.map(|t| ours_per / t),
        "≤ 0.33×",
        theirs_per.map_or("–", |t| verdict(ours_per * 3.0 <= t)),
    );
    row(
        "relayed messages/s (deliveries)",
        format!("{:.0}", ours.deliveries_per_sec),
        theirs.map(|(t, _)| format!("{:.0}", t.deliveries_per_sec)),
        theirs.map(|(t, _)| ours.deliveries_per_sec / t.deliveries_per_sec),
        "≥ 3×",
        theirs.map_or("–", |(t, _)| {
            verdict(ours.deliveries_per_sec >= 3.0 * t.deliveries_per_sec)
        }),
    );
    row(
        "publishes/s",
        format!("{:.0}", ours.publishes_per_sec),
        theirs.map(|(t, _)| format!("{:.0}", t.publishes_per_sec)),
        theirs.map(|(t, _)| ours.publishes_per_sec / t.publishes_per_sec),
        "",
        "",
    );
    for (label, pick) in [
        (
            "latency p50, one message at a time",
            (|f: &Figures| f.latency_us.p50) as fn(&Figures) -> f64,
        ),
        ("latency p99, one message at a time", |f| f.latency_us.p99),
        ("latency p50 under throughput load", |f| {
            f.loaded_latency_us.p50
        }),
        ("latency p99 under throughput load", |f| {
            f.loaded_latency_us.p99
        }),
    ] {
        row(
            label,
            format!("{:.0} µs", pick(ours)),
            theirs.map(|(t, _)| format!("{:.0} µs", pick(t))),
            theirs.map(|(t, _)| pick(ours) / pick(t)),
            "",
            "",
        );
    }
    row(
        "subscribers dropped during throughput",
        ours.dropped.to_string(),
        theirs.map(|(t, _)| t.dropped.to_string()),
        None,
        "",
        "",
    );
    out
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    #[cfg(unix)]
    {
        let limit = rlimit::increase_nofile_limit(u64::MAX)?;
        if (limit as usize) < options.connections + 256 {
            bail!(
                "open file limit {limit} is too low for {} connections: raise it (ulimit -n)",
                options.connections
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!(
            "workload: {} idle connections; throughput: {} publishers + {} subscribers on one \
             topic, window {} per publisher, {} B payload, {} s after {} s warm-up; latency: {} \
             sequential messages",
            options.connections,
            options.publishers,
            options.subscribers,
            options.window,
            options.payload,
            options.seconds,
            options.warmup,
            options.latency_samples
        );
        let mut ours_server = start_ours(&options.ours_args)?;
        let ours = measure(&mut ours_server, &options)
            .await
            .context("benchmarking civicbase-signaling")?;
        let closes = closes(ours_server.port).await.unwrap_or_default();
        if !closes.is_empty() {
            println!(
                "connections civicbase-signaling closed: {}",
                closes.join(", ")
            );
        }
        drop(ours_server);

        let baseline = if options.only_ours {
            Err("--only-ours was given".to_owned())
        } else {
            start_y_webrtc()
        };
        let theirs = match baseline {
            Ok((mut server, name)) => {
                let figures = measure(&mut server, &options)
                    .await
                    .context("benchmarking y-webrtc")?;
                Some((figures, name))
            }
            Err(why) => {
                println!("skipping the comparison: {why}");
                None
            }
        };
        let table = table(
            &options,
            &ours,
            theirs.as_ref().map(|(f, name)| (f, name.as_str())),
        );
        println!("\n{table}");
        if let Some(path) = &options.out {
            std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    })
}
