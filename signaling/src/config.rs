//! Configuration: defaults, a TOML file, `CIVICBASE_SIGNALING_*` environment variables and
//! command-line flags, in increasing order of precedence.
//!
//! [`Config`] is what the server runs with. [`Args`] is the command line (each flag also reads
//! its environment variable); [`Args::resolve`] layers flags and environment over the file named
//! by `--config` over [`Config::default`]. Durations are given in seconds (fractions allowed) in
//! the file, the environment and on the command line.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

/// Everything the server needs to run. Build one with [`Config::default`] and struct update
/// syntax, or from the command line with [`Args::resolve`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address the binary listens on. [`crate::serve`] uses the listener it is given instead.
    pub bind: SocketAddr,
    /// Directory of static files served over HTTP (the built app).
    pub static_dir: PathBuf,
    /// Largest WebSocket frame or message accepted, in bytes; a larger one closes the
    /// connection (close code 1009).
    pub max_frame_bytes: usize,
    /// Most topics one connection may be subscribed to at once; one more closes it (1008).
    pub max_topics_per_connection: usize,
    /// Longest topic name accepted, in bytes; a longer one closes the connection (1008).
    pub max_topic_bytes: usize,
    /// Most WebSocket connections open from one IP address; more are refused with 429.
    /// Zero means unlimited.
    pub max_connections_per_ip: usize,
    /// Most WebSocket connections open in total; more are refused with 503. Zero means
    /// unlimited.
    pub max_connections: usize,
    /// Frames per second a connection may send on average (token bucket refill rate); more
    /// closes it (1008). Zero disables the limit.
    pub rate_limit_per_sec: u32,
    /// Frames a connection may send in a burst (token bucket size).
    pub rate_limit_burst: u32,
    /// How often the server sends a WebSocket ping to every connection (all at once).
    pub ping_interval: Duration,
    /// A connection from which nothing (no frame, no pong) arrives for this long is closed
    /// (1001). Checked when pings are sent, so the connection closes between `idle_timeout` and
    /// about `idle_timeout + ping_interval` after the last frame. Must exceed `ping_interval`.
    pub idle_timeout: Duration,
    /// Messages queued for one connection before it counts as a slow consumer and is closed
    /// (1008).
    pub outbound_queue: usize,
    /// Origins (`scheme://host[:port]`) allowed to open WebSockets; an upgrade request with any
    /// other `Origin` header is refused with 403. Empty allows every origin. Requests without an
    /// `Origin` header (non-browser clients) are always allowed.
    pub allowed_origins: Vec<String>,
    /// How long shutdown waits for WebSocket connections to finish their closing handshake.
    pub shutdown_grace: Duration,
    /// Reverse proxies whose `X-Forwarded-For` and `X-Real-IP` headers are believed. A
    /// connection from one of them is counted (and logged) under the client address those
    /// headers name; the headers of any other peer are ignored. Empty trusts no one.
    pub trusted_proxies: Vec<Cidr>,
    /// Bearer token that `GET /metrics` requires in its `Authorization` header. `None` leaves
    /// `/metrics` open.
    pub metrics_token: Option<Secret>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8787)),
            static_dir: PathBuf::from("dist"),
            max_frame_bytes: 64 * 1024,
            max_topics_per_connection: 64,
            max_topic_bytes: 512,
            max_connections_per_ip: 64,
            max_connections: 10_000,
            rate_limit_per_sec: 100,
            rate_limit_burst: 200,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            outbound_queue: 256,
            allowed_origins: Vec::new(),
            shutdown_grace: Duration::from_secs(5),
            trusted_proxies: Vec::new(),
            metrics_token: None,
        }
    }
}

/// An IP address block in CIDR notation (`10.0.0.0/8`, `fd00::/8`), or a single address
/// (`127.0.0.1`, `::1`).
///
/// Parsed with [`str::parse`]; an IPv4-mapped IPv6 block (`::ffff:10.0.0.0/104`) is taken as
/// the IPv4 block it maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address, with every bit after the prefix zero.
    network: IpAddr,
    /// The number of leading bits that addresses in the block share.
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the block. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) counts as
    /// its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && masked(ip, self.prefix) == self.network
    }
}

/// `addr` with every bit after the first `prefix` bits cleared.
fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

impl FromStr for Cidr {
    type Err = ConfigError;

    /// Parses `addr` or `addr/prefix`; surrounding whitespace is ignored. Bits set after the
    /// prefix are refused, since they usually mean a mistyped block.
    fn from_str(text: &str) -> Result<Cidr, ConfigError> {
        let entry = text.trim();
        let invalid = |why: String| ConfigError::Invalid {
            field: "trusted_proxies",
            reason: format!("{entry:?} {why}"),
        };
        let (addr, prefix) = match entry.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (entry, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            invalid("is not an IP address or CIDR block like 10.0.0.0/8 or fd00::/8".to_owned())
        })?;
        let bits: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|len| *len <= bits && prefix.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| invalid(format!("has a prefix length outside 0 to {bits}")))?,
        };
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let network = masked(addr, prefix);
        if network != addr {
            return Err(invalid(format!(
                "has bits set after the prefix; the block is {network}/{prefix}"
            )));
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    /// `addr/prefix`, or the bare address for a block of one address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = if self.network.is_ipv4() { 32 } else { 128 };
        if self.prefix == bits {
            write!(f, "{}", self.network)
        } else {
            write!(f, "{}/{}", self.network, self.prefix)
        }
    }
}

/// A secret string, such as the metrics token. Its `Debug` output is `Secret(***)`, so it
/// never reaches a log through a configuration dump.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct Secret {
    value: String,
    /// The file it was read from, if any; `--print-config` names the file instead.
    file: Option<PathBuf>,
}

impl Secret {
    /// A secret given as is.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret {
            value: value.into(),
            file: None,
        }
    }

    /// Reads a secret from a file: its content with surrounding whitespace (such as the final
    /// newline) removed. An unreadable or empty file is an error that names it.
    pub fn from_file(path: &Path) -> Result<Secret, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            field: "metrics_token_file",
            reason,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| invalid(format!("cannot read {}: {error}", path.display())))?;
        let value = text.trim();
        if value.is_empty() {
            return Err(invalid(format!("{} is empty", path.display())));
        }
        Ok(Secret {
            value: value.to_owned(),
            file: Some(path.to_owned()),
        })
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The file the secret was read from, if it was.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Whether `candidate` is the secret, in a time that depends only on the lengths.
    pub(crate) fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.value.as_bytes();
        if expected.len() != candidate.len() {
            return false;
        }
        let difference = expected
            .iter()
            .zip(candidate)
            .fold(0u8, |acc, (a, b)| std::hint::black_box(acc | (a ^ b)));
        difference == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Secret, Self::Err> {
        Ok(Secret::new(value))
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for this server.
    #[error("invalid configuration file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("invalid value for {field}: {reason}")]
    Invalid {
        /// The option, as named in the file.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Config {
    /// Checks that the values make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.max_frame_bytes < 128 {
            return invalid("max_frame_bytes", "must be at least 128");
        }
        if self.max_topic_bytes == 0 {
            return invalid("max_topic_bytes", "must be at least 1");
        }
        if self.outbound_queue == 0 {
            return invalid("outbound_queue", "must be at least 1");
        }
        if self.rate_limit_per_sec > 0 && self.rate_limit_burst == 0 {
            return invalid(
                "rate_limit_burst",
                "must be at least 1 when rate_limit_per_sec is set",
            );
        }
        if self.ping_interval.is_zero() {
            return invalid("ping_interval_secs", "must be positive");
        }
        if self.idle_timeout <= self.ping_interval {
            return invalid(
                "idle_timeout_secs",
                "must be longer than ping_interval_secs, or live connections would time out",
            );
        }
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(ConfigError::Invalid {
                    field: "allowed_origins",
                    reason: format!(
                        "{origin:?} is not an origin like https://example.org or http://host:8080"
                    ),
                });
            }
        }
        if let Some(token) = &self.metrics_token {
            let field = match token.file() {
                Some(_) => "metrics_token_file",
                None => "metrics_token",
            };
            if token.expose().is_empty() {
                return invalid(field, "the metrics token must not be empty");
            }
            if !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
                return invalid(
                    field,
                    "the metrics token must be printable ASCII without spaces",
                );
            }
        }
        Ok(())
    }

    /// The configuration as a complete TOML file (what `--print-config` prints). The metrics
    /// token is never printed: a token read from a file appears as `metrics_token_file`, one
    /// given directly as a comment saying that it is set.
    pub fn to_toml(&self) -> String {
        let layer = Layer {
            bind: Some(self.bind),
            static_dir: Some(self.static_dir.clone()),
            max_frame_bytes: Some(self.max_frame_bytes),
            max_topics_per_connection: Some(self.max_topics_per_connection),
            max_topic_bytes: Some(self.max_topic_bytes),
            max_connections_per_ip: Some(self.max_connections_per_ip),
            max_connections: Some(self.max_connections),
            rate_limit_per_sec: Some(self.rate_limit_per_sec),
            rate_limit_burst: Some(self.rate_limit_burst),
            ping_interval_secs: Some(self.ping_interval.as_secs_f64()),
            idle_timeout_secs: Some(self.idle_timeout.as_secs_f64()),
            outbound_queue: Some(self.outbound_queue),
            allowed_origins: Some(self.allowed_origins.clone()),
            shutdown_grace_secs: Some(self.shutdown_grace.as_secs_f64()),
            trusted_proxies: Some(self.trusted_proxies.iter().map(Cidr::to_string).collect()),
            metrics_token: None,
            metrics_token_file: self
                .metrics_token
                .as_ref()
                .and_then(|token| token.file().map(Path::to_owned)),
        };
        // Serialising plain numbers, strings and lists cannot fail.
        let mut text = toml::to_string(&layer).unwrap_or_default();
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|token| token.file().is_none())
        {
            text.push_str("# metrics_token is set but not printed\n");
        }
        text
    }

    /// Reads a TOML configuration file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        Layer::from_file(path)?.apply(Config::default())
    }
}

/// One source of settings: every field optional, named as in the TOML file.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    #[serde(skip_serializing_if = "Option::is_none")]
    bind: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    static_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_frame_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_topics_per_connection: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_topic_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections_per_ip: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit_per_sec: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ping_interval_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outbound_queue: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_origins: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_grace_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_proxies: Option<Vec<String>>,
    /// Never serialised: `--print-config` must not show it.
    #[serde(skip_serializing)]
    metrics_token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_token_file: Option<PathBuf>,
}

impl Layer {
    fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Fields set in `self` win over those of `lower`. `metrics_token` and
    /// `metrics_token_file` are one setting: either of them in `self` replaces both of `lower`.
    fn over(self, lower: Layer) -> Layer {
        let (metrics_token, metrics_token_file) =
            if self.metrics_token.is_some() || self.metrics_token_file.is_some() {
                (self.metrics_token, self.metrics_token_file)
            } else {
                (lower.metrics_token, lower.metrics_token_file)
            };
        Layer {
            bind: self.bind.or(lower.bind),
            static_dir: self.static_dir.or(lower.static_dir),
            max_frame_bytes: self.max_frame_bytes.or(lower.max_frame_bytes),
            max_topics_per_connection: self
                .max_topics_per_connection
                .or(lower.max_topics_per_connection),
            max_topic_bytes: self.max_topic_bytes.or(lower.max_topic_bytes),
            max_connections_per_ip: self.max_connections_per_ip.or(lower.max_connections_per_ip),
            max_connections: self.max_connections.or(lower.max_connections),
            rate_limit_per_sec: self.rate_limit_per_sec.or(lower.rate_limit_per_sec),
            rate_limit_burst: self.rate_limit_burst.or(lower.rate_limit_burst),
            ping_interval_secs: self.ping_interval_secs.or(lower.ping_interval_secs),
            idle_timeout_secs: self.idle_timeout_secs.or(lower.idle_timeout_secs),
            outbound_queue: self.outbound_queue.or(lower.outbound_queue),
            allowed_origins: self.allowed_origins.or(lower.allowed_origins),
            shutdown_grace_secs: self.shutdown_grace_secs.or(lower.shutdown_grace_secs),
            trusted_proxies: self.trusted_proxies.or(lower.trusted_proxies),
            metrics_token,
            metrics_token_file,
        }
    }

    /// Sets the fields present in `self` on `config`, then validates the result.
    fn apply(self, config: Config) -> Result<Config, ConfigError> {
        let secs = |field: &'static str, value: Option<f64>, default: Duration| match value {
            None => Ok(default),
            Some(secs) => Duration::try_from_secs_f64(secs).map_err(|_| ConfigError::Invalid {
                field,
                reason: format!("{secs} is not a number of seconds"),
            }),
        };
        let trusted_proxies = match self.trusted_proxies {
            None => config.trusted_proxies,
            Some(entries) => entries
                .iter()
                .map(|entry| entry.parse())
                .collect::<Result<_, _>>()?,
        };
        let metrics_token = match (self.metrics_token, self.metrics_token_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    field: "metrics_token",
                    reason: "metrics_token and metrics_token_file are both set; give one".into(),
                })
            }
            (Some(token), None) => Some(token),
            (None, Some(path)) => Some(Secret::from_file(&path)?),
            (None, None) => config.metrics_token,
        };
        let config = Config {
            bind: self.bind.unwrap_or(config.bind),
            static_dir: self.static_dir.unwrap_or(config.static_dir),
            max_frame_bytes: self.max_frame_bytes.unwrap_or(config.max_frame_bytes),
            max_topics_per_connection: self
                .max_topics_per_connection
                .unwrap_or(config.max_topics_per_connection),
            max_topic_bytes: self.max_topic_bytes.unwrap_or(config.max_topic_bytes),
            max_connections_per_ip: self
                .max_connections_per_ip
                .unwrap_or(config.max_connections_per_ip),
            max_connections: self.max_connections.unwrap_or(config.max_connections),
            rate_limit_per_sec: self.rate_limit_per_sec.unwrap_or(config.rate_limit_per_sec),
            rate_limit_burst: self.rate_limit_burst.unwrap_or(config.rate_limit_burst),
            ping_interval: secs(
                "ping_interval_secs",
                self.ping_interval_secs,
                config.ping_interval,
            )?,
            idle_timeout: secs(
                "idle_timeout_secs",
                self.idle_timeout_secs,
                config.idle_timeout,
            )?,
            outbound_queue: self.outbound_queue.unwrap_or(config.outbound_queue),
            allowed_origins: self.allowed_origins.unwrap_or(config.allowed_origins),
            shutdown_grace: secs(
                "shutdown_grace_secs",
                self.shutdown_grace_secs,
                config.shutdown_grace,
            )?,
            trusted_proxies,
            metrics_token,
        };
        config.validate()?;
        Ok(config)
    }
}

/// The command line of `civicbase-signaling`. Every option can also be set with its environment
/// variable or in the TOML file given with `--config` (same name, without the
/// `CIVICBASE_SIGNALING_` prefix, in lower case). Flags win over the environment, the environment
/// over the file, the file over the defaults.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "civicbase-signaling",
    version,
    about = "CivicBase signaling server: introduces peers over the y-webrtc signaling protocol \
             and serves the built app.",
    long_about = None
)]
pub struct Args {
    /// TOML configuration file; its keys are the option names below with underscores,
    /// e.g. `max_frame_bytes = 65536`.
    #[arg(long, env = "CIVICBASE_SIGNALING_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8787].
    #[arg(long, env = "CIVICBASE_SIGNALING_BIND", value_name = "ADDR:PORT")]
    pub bind: Option<SocketAddr>,
    /// Directory of static files to serve (the built app) [default: dist].
    #[arg(long, env = "CIVICBASE_SIGNALING_STATIC_DIR", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// Largest WebSocket frame accepted, in bytes; larger closes the connection [default: 65536].
    #[arg(
        long,
        env = "CIVICBASE_SIGNALING_MAX_FRAME_BYTES",
        value_name = "BYTES"
    )]
    pub max_frame_bytes: Option<usize>,
    /// Most topics one connection may subscribe to [default: 64].
    #[arg(
        long,
        env = "CIVICBASE_SIGNALING_MAX_TOPICS_PER_CONNECTION",
        value_name = "N"
    )]
    pub max_topics_per_connection: Option<usize>,
    /// Longest topic name accepted, in bytes [default: 512].
    #[arg(
        long,
        env = "CIVICBASE_SIGNALING_MAX_TOPIC_BYTES",
        value_name = "BYTES"
    )]
    pub max_topic_bytes: Option<usize>,
    /// Most WebSocket connections from one IP address, 0 for unlimited [default: 64].
    #[arg(
        long,
        env = "CIVICBASE_SIGNALING_MAX_CONNECTIONS_PER_IP",
        value_name = "N"
    )]
    pub max_connections_per_ip: Option<usize>,
    /// Most WebSocket connections in total, 0 for unlimited [default: 10000].
    #[arg(long, env = "CIVICBASE_SIGNALING_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Frames per second one connection may send on average, 0 for unlimited [default: 100].
    #[arg(long, env = "CIVICBASE_SIGNALING_RATE_LIMIT_PER_SEC", value_name = "N")]
    pub rate_limit_per_sec: Option<u32>,
    /// Frames one connection may send in a burst [default: 200].
    #[arg(long, env = "CIVICBASE_SIGNALING_RATE_LIMIT_BURST", value_name = "N")]
    pub rate_limit_burst: Option<u32>,
    /// Seconds between WebSocket pings sent to each connection [default: 30].
    #[arg(
        long,
        env = "CIVICBASE_SIGNALING_PING_INTERVAL_SECS",
        value_name = "SECS"
    )]
    pub ping_interval_secs: Option<f64>,
    /// Seconds without receiving anything after which a connection is closed; must exceed the
    /// ping interval [default: 75].
    #[arg(
        long,
        env = "CIVICBASE_SIGNALING_IDLE_TIMEOUT_SECS",
        value_name = "SECS"
    )]
    pub idle_timeout_secs: Option<f64>,
    /// Messages queued for one connection before it is closed as a slow consumer
    /// [default: 256].
    #[arg(long, env = "CIVICBASE_SIGNALING_OUTBOUND_QUEUE", value_name = "N")]
    pub outbound_queue: Option<usize>,
    /// Origins allowed to open WebSockets, comma-separated (e.g. `https://civic.example`);
    /// others get 403. Unset allows every origin [default: none].
    #[arg(
        long,
        env = "CIVICBASE_SIGNALING_ALLOWED_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Option<Vec<String>>,
    /// Seconds shutdown waits for WebSocket connections to close [default: 5].
    #[arg(
        long,
        env = "CIVICBASE_SIGNALING_SHUTDOWN_GRACE_SECS",
        value_name = "SECS"
    )]
    pub shutdown_grace_secs: Option<f64>,
    /// Reverse proxies whose X-Forwarded-For and X-Real-IP headers name the client, as
    /// comma-separated addresses or CIDR blocks (e.g. `127.0.0.1,10.0.0.0/8`); those headers
    /// from any other peer are ignored [default: none].
    #[arg(
        long,
        env = "CIVICBASE_SIGNALING_TRUSTED_PROXIES",
        value_name = "ADDRS",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// Bearer token that GET /metrics requires; prefer --metrics-token-file, since a command
    /// line is visible to other users [default: none, /metrics is open].
    #[arg(
        long,
        env = "CIVICBASE_SIGNALING_METRICS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<Secret>,
    /// File holding the bearer token that GET /metrics requires (surrounding whitespace is
    /// ignored) [default: none, /metrics is open].
    #[arg(
        long,
        env = "CIVICBASE_SIGNALING_METRICS_TOKEN_FILE",
        value_name = "PATH"
    )]
    pub metrics_token_file: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl Args {
    /// The effective configuration: these flags (and environment variables) over the
    /// configuration file, over the defaults.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => Layer::from_file(path)?,
            None => Layer::default(),
        };
        let flags = Layer {
            bind: self.bind,
            static_dir: self.static_dir.clone(),
            max_frame_bytes: self.max_frame_bytes,
            max_topics_per_connection: self.max_topics_per_connection,
            max_topic_bytes: self.max_topic_bytes,
            max_connections_per_ip: self.max_connections_per_ip,
            max_connections: self.max_connections,
            rate_limit_per_sec: self.rate_limit_per_sec,
            rate_limit_burst: self.rate_limit_burst,
            ping_interval_secs: self.ping_interval_secs,
            idle_timeout_secs: self.idle_timeout_secs,
            outbound_queue: self.outbound_queue,
            allowed_origins: self.allowed_origins.clone(),
            shutdown_grace_secs: self.shutdown_grace_secs,
            trusted_proxies: self.trusted_proxies.clone(),
            metrics_token: self.metrics_token.clone(),
            metrics_token_file: self.metrics_token_file.clone(),
        };
        flags.over(file).apply(Config::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "civicbase-signaling-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = Config::default();
        config.validate().expect("defaults validate");
        assert_eq!(config.bind.to_string(), "127.0.0.1:8787");
        assert_eq!(config.max_frame_bytes, 65_536);
        assert_eq!(config.static_dir, PathBuf::from("dist"));
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let path = temp_file(
            "layers",
            "max_frame_bytes = 1000\nmax_topics_per_connection = 7\nidle_timeout_secs = 0.5\n\
             ping_interval_secs = 0.25\n",
        );
        let args = Args {
            config: Some(path.clone()),
            max_frame_bytes: Some(2000),
            ..Args::default()
        };
        let config = args.resolve().expect("resolves");
        std::fs::remove_file(&path).ok();
        assert_eq!(config.max_frame_bytes, 2000);
        assert_eq!(config.max_topics_per_connection, 7);
        assert_eq!(config.idle_timeout, Duration::from_millis(500));
        assert_eq!(config.outbound_queue, Config::default().outbound_queue);
    }

    #[test]
    fn unknown_keys_and_bad_values_in_the_file_are_errors() {
        let typo = temp_file("typo", "max_frame_byte = 1000\n");
        assert!(matches!(
            Config::from_file(&typo),
            Err(ConfigError::Parse { .. })
        ));
        std::fs::remove_file(&typo).ok();
        let negative = temp_file("negative", "ping_interval_secs = -1.0\n");
        assert!(matches!(
            Config::from_file(&negative),
            Err(ConfigError::Invalid {
                field: "ping_interval_secs",
                ..
            })
        ));
        std::fs::remove_file(&negative).ok();
        assert!(matches!(
            Config::from_file(Path::new("/nonexistent/civicbase.toml")),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn the_idle_timeout_must_exceed_the_ping_interval() {
        let config = Config {
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                field: "idle_timeout_secs",
                ..
            })
        ));
    }

    #[test]
    fn origins_must_be_origins() {
        let config = Config {
            allowed_origins: vec!["https://civic.example/".into()],
            ..Config::default()
        };
        assert!(config.validate().is_err());
        let config = Config {
            allowed_origins: vec![
                "https://civic.example".into(),
                "http://10.0.0.2:8787".into(),
            ],
            ..Config::default()
        };
        assert!(config.validate().is_ok());
    }

    #[test]
    fn printed_config_reads_back_to_the_same_config() {
        let config = Config {
            allowed_origins: vec!["https://civic.example".into()],
            idle_timeout: Duration::from_millis(1500),
            ping_interval: Duration::from_millis(500),
            ..Config::default()
        };
        let path = temp_file("roundtrip", &config.to_toml());
        let read = Config::from_file(&path).expect("reads back");
        std::fs::remove_file(&path).ok();
        assert_eq!(read, config);
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().expect("a CIDR block")
    }

    #[test]
    fn cidrs_parse_addresses_and_blocks() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("an address");
        let host = cidr("127.0.0.1");
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        let block = cidr("10.0.0.0/8");
        assert!(block.contains(ip("10.255.3.4")));
        assert!(!block.contains(ip("11.0.0.0")));
        assert!(!block.contains(ip("::1")), "families never mix");
        let v6 = cidr("fd00::/8");
        assert!(v6.contains(ip("fd12:3456::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(cidr("::1").contains(ip("::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.7")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(cidr(" 192.168.1.0/24 ").contains(ip("192.168.1.200")));
        // IPv4-mapped IPv6 addresses are their IPv4 address, on either side.
        assert!(block.contains(ip("::ffff:10.1.2.3")));
        assert!(!v6.contains(ip("::ffff:10.1.2.3")));
        let mapped = cidr("::ffff:10.0.0.0/104");
        assert_eq!(mapped, block);
        assert!(mapped.contains(ip("10.9.9.9")));
        // Display gives back what parses to the same block.
        for text in ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "0.0.0.0/0"] {
            assert_eq!(cidr(text).to_string(), text);
            assert_eq!(cidr(&cidr(text).to_string()), cidr(text));
        }
        assert_eq!(cidr("127.0.0.1/32").to_string(), "127.0.0.1");
    }

    #[test]
    fn bad_cidrs_are_refused_naming_the_entry() {
        for bad in [
            "",
            "localhost",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/8/8",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.1/8",
            "fd00::1/8",
            "[::1]",
            "127.0.0.1:80",
            "300.0.0.1",
        ] {
            match bad.parse::<Cidr>() {
                Err(ConfigError::Invalid {
                    field: "trusted_proxies",
                    reason,
                }) => assert!(reason.contains(&format!("{bad:?}")), "{bad}: {reason}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let path = temp_file(
            "bad-proxy",
            "trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/64\"]\n",
        );
        let error = Config::from_file(&path).expect_err("a bad block");
        std::fs::remove_file(&path).ok();
        assert!(error.to_string().contains("10.0.0.0/64"), "{error}");
    }

    #[test]
    fn the_metrics_token_file_is_read_and_trimmed() {
        let path = temp_file("token", "  s3cret-token\n\n");
        let config = Args {
            metrics_token_file: Some(path.clone()),
            ..Args::default()
        }
        .resolve()
        .expect("resolves");
        std::fs::remove_file(&path).ok();
        let token = config.metrics_token.expect("a token");
        assert_eq!(token.expose(), "s3cret-token");
        assert_eq!(token.file(), Some(path.as_path()));
        assert!(token.matches(b"s3cret-token"));
        assert!(!token.matches(b"s3cret-tokem"));
        assert!(!token.matches(b"s3cret-token "));
        assert!(!token.matches(b""));
    }

    #[test]
    fn an_empty_or_missing_token_file_is_an_error_naming_it() {
        let empty = temp_file("empty-token", " \n\t\n");
        let missing = PathBuf::from("/nonexistent/civicbase-metrics-token");
        for path in [&empty, &missing] {
            let args = Args {
                metrics_token_file: Some(path.clone()),
                ..Args::default()
            };
            match args.resolve() {
                Err(
                    error @ ConfigError::Invalid {
                        field: "metrics_token_file",
                        ..
                    },
                ) => assert!(
                    error.to_string().contains(&path.display().to_string()),
                    "{error}"
                ),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        std::fs::remove_file(&empty).ok();
    }

    #[test]
    fn the_token_and_the_token_file_together_are_an_error() {
        let token_file = temp_file("both-token", "s3cret\n");
        let args = Args {
            metrics_token: Some(Secret::new("other")),
            metrics_token_file: Some(token_file.clone()),
            ..Args::default()
        };
        assert!(matches!(
            args.resolve(),
            Err(ConfigError::Invalid {
                field: "metrics_token",
                ..
            })
        ));
        let both = temp_file(
            "both",
            &format!(
                "metrics_token = \"other\"\nmetrics_token_file = {:?}\n",
                token_file.display().to_string()
            ),
        );
        assert!(matches!(
            Config::from_file(&both),
            Err(ConfigError::Invalid {
                field: "metrics_token",
                ..
            })
        ));
        std::fs::remove_file(&both).ok();
        std::fs::remove_file(&token_file).ok();
    }

    #[test]
    fn tokens_must_be_sendable_in_a_header() {
        for bad in ["", "two words", "tab\there", "caf\u{e9}"] {
            let config = Config {
                metrics_token: Some(Secret::new(bad)),
                ..Config::default()
            };
            assert!(
                matches!(
                    config.validate(),
                    Err(ConfigError::Invalid {
                        field: "metrics_token",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn flags_win_over_the_file_for_proxies_and_the_token() {
        let token_file = temp_file("flag-token", "from-the-flag\n");
        let path = temp_file(
            "proxy-layers",
            "trusted_proxies = [\"10.0.0.0/8\"]\nmetrics_token = \"from-the-file\"\n",
        );
        let from_file = Config::from_file(&path).expect("reads");
        assert_eq!(from_file.trusted_proxies, [cidr("10.0.0.0/8")]);
        assert_eq!(
            from_file.metrics_token.as_ref().map(Secret::expose),
            Some("from-the-file")
        );
        let args = Args {
            config: Some(path.clone()),
            trusted_proxies: Some(vec!["127.0.0.1".into(), " ::1".into()]),
            metrics_token_file: Some(token_file.clone()),
            ..Args::default()
        };
        let config = args.resolve().expect("resolves");
        std::fs::remove_file(&path).ok();
        std::fs::remove_file(&token_file).ok();
        assert_eq!(config.trusted_proxies, [cidr("127.0.0.1"), cidr("::1")]);
        assert_eq!(
            config.metrics_token.as_ref().map(Secret::expose),
            Some("from-the-flag")
        );
        // An empty flag list trusts no one, whatever the file says.
        let path = temp_file("proxy-empty", "trusted_proxies = [\"10.0.0.0/8\"]\n");
        let args = Args {
            config: Some(path.clone()),
            trusted_proxies: Some(Vec::new()),
            ..Args::default()
        };
        assert!(args.resolve().expect("resolves").trusted_proxies.is_empty());
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn the_printed_config_never_contains_the_token() {
        let secret = "do-not-print-me-7f3a";
        let given = Config {
            metrics_token: Some(Secret::new(secret)),
            trusted_proxies: vec![cidr("127.0.0.1"), cidr("fd00::/8")],
            ..Config::default()
        };
        let text = given.to_toml();
        assert!(!text.contains(secret), "{text}");
        assert!(
            text.contains("# metrics_token is set but not printed"),
            "{text}"
        );
        assert!(!format!("{given:?}").contains(secret));
        assert!(format!("{given:?}").contains("Secret(***)"));
        let path = temp_file("printed-no-token", &text);
        let read = Config::from_file(&path).expect("reads back");
        std::fs::remove_file(&path).ok();
        assert_eq!(read.metrics_token, None);
        assert_eq!(read.trusted_proxies, given.trusted_proxies);

        // A token from a file is printed as the file, and reads back the same.
        let token_file = temp_file("printed-token", &format!("{secret}\n"));
        let config = Config {
            metrics_token: Some(Secret::from_file(&token_file).expect("token file")),
            ..given
        };
        let text = config.to_toml();
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("metrics_token_file"), "{text}");
        let path = temp_file("printed-token-file", &text);
        let read = Config::from_file(&path).expect("reads back");
        std::fs::remove_file(&path).ok();
        std::fs::remove_file(&token_file).ok();
        assert_eq!(read, config);
    }
}
