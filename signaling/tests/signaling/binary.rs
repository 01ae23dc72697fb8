//! The `civicbase-signaling` binary: configuration precedence, `--help`, and SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;

use crate::common::{unique, Client, Ending, STEP};

const BIN: &str = env!("CARGO_BIN_EXE_civicbase-signaling");

fn command() -> Command {
    let mut command = Command::new(BIN);
    command.env_clear();
    command
}

fn printed_config(command: &mut Command) -> toml::Table {
    let output = command
        .arg("--print-config")
        .output()
        .expect("run the binary");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .parse()
        .expect("TOML")
}

#[test]
fn flags_beat_environment_beats_file_beats_defaults() {
    let file = std::env::temp_dir().join(format!(
        "civicbase-signaling-precedence-{}-{}.toml",
        std::process::id(),
        unique()
    ));
    std::fs::write(
        &file,
        "max_frame_bytes = 1000\nmax_topics_per_connection = 10\nmax_topic_bytes = 100\n",
    )
    .expect("write config");
    let config = printed_config(
        command()
            .env("CIVICBASE_SIGNALING_CONFIG", &file)
            .env("CIVICBASE_SIGNALING_MAX_TOPICS_PER_CONNECTION", "20")
            .env("CIVICBASE_SIGNALING_MAX_TOPIC_BYTES", "200")
            .env(
                "CIVICBASE_SIGNALING_ALLOWED_ORIGINS",
                "https://a.example,http://b.example:8080",
            )
            .args(["--max-topic-bytes", "300"]),
    );
    std::fs::remove_file(&file).ok();
    assert_eq!(config["max_frame_bytes"].as_integer(), Some(1000), "file");
    assert_eq!(
        config["max_topics_per_connection"].as_integer(),
        Some(20),
        "environment over file"
    );
    assert_eq!(
        config["max_topic_bytes"].as_integer(),
        Some(300),
        "flag over environment"
    );
    assert_eq!(config["outbound_queue"].as_integer(), Some(256), "default");
    assert_eq!(config["bind"].as_str(), Some("127.0.0.1:8787"), "default");
    let origins: Vec<&str> = strings(&config, "allowed_origins");
    assert_eq!(origins, ["https://a.example", "http://b.example:8080"]);
}

#[test]
fn defaults_apply_without_any_source() {
    let config = printed_config(&mut command());
    assert_eq!(config["bind"].as_str(), Some("127.0.0.1:8787"));
    assert_eq!(config["static_dir"].as_str(), Some("dist"));
    assert_eq!(config["max_frame_bytes"].as_integer(), Some(65536));
    assert_eq!(config["max_connections_per_ip"].as_integer(), Some(64));
}

#[test]
fn help_names_every_option_and_its_environment_variable() {
    let output = command().arg("--help").output().expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf-8");
    for option in [
        "config",
        "bind",
        "static-dir",
        "max-frame-bytes",
        "max-topics-per-connection",
        "max-topic-bytes",
        "max-connections-per-ip",
        "max-connections",
        "rate-limit-per-sec",
        "rate-limit-burst",
        "ping-interval-secs",
        "idle-timeout-secs",
        "outbound-queue",
        "allowed-origins",
        "shutdown-grace-secs",
        "trusted-proxies",
        "metrics-token",
        "metrics-token-file",
    ] {
        assert!(help.contains(&format!("--{option}")), "--{option}");
        let env = format!(
            "CIVICBASE_SIGNALING_{}",
            option.to_uppercase().replace('-', "_")
        );
        assert!(help.contains(&env), "{env}");
    }
}

#[test]
fn print_config_never_shows_the_metrics_token() {
    let secret = "never-printed-5d1c";
    let output = command()
        .env("CIVICBASE_SIGNALING_METRICS_TOKEN", secret)
        .env("CIVICBASE_SIGNALING_TRUSTED_PROXIES", "127.0.0.1,fd00::/8")
        .arg("--print-config")
        .output()
        .expect("run the binary");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert!(!text.contains(secret), "{text}");
    assert!(
        text.contains("# metrics_token is set but not printed"),
        "{text}"
    );
    let config: toml::Table = text.parse().expect("TOML");
    let proxies: Vec<&str> = strings(&config, "trusted_proxies");
    assert_eq!(proxies, ["127.0.0.1", "fd00::/8"]);

    let file = std::env::temp_dir().join(format!(
        "civicbase-signaling-token-{}-{}",
        std::process::id(),
        unique()
    ));
    std::fs::write(&file, format!("{secret}\n")).expect("write token");
    let output = command()
        .args(["--metrics-token-file".as_ref(), file.as_os_str()])
        .arg("--print-config")
        .output()
        .expect("run the binary");
    std::fs::remove_file(&file).ok();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert!(!text.contains(secret), "{text}");
    let config: toml::Table = text.parse().expect("TOML");
    assert_eq!(
        config["metrics_token_file"].as_str(),
        file.to_str(),
        "{text}"
    );

    // --help does not show the value of the token's environment variable.
    let help = command()
        .env("CIVICBASE_SIGNALING_METRICS_TOKEN", secret)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(!String::from_utf8_lossy(&help.stdout).contains(secret));
}

#[test]
fn invalid_configuration_is_reported_not_run() {
    let output = command()
        .args(["--outbound-queue", "0", "--print-config"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("outbound_queue"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_websockets_with_going_away_and_exits_cleanly() {
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("RUST_LOG", "info")
        .args(["--bind", "127.0.0.1:0", "--static-dir", "/nonexistent"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the binary");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let addr = tokio::time::timeout(STEP, async {
        for _ in 0..100 {
            let line = lines
                .next_line()
                .await
                .expect("read log")
                .expect("a log line");
            if let Some(rest) = line.split("addr=").nth(1) {
                return rest.split_whitespace().next().expect("address").to_owned();
            }
        }
        panic!("no listening line");
    })
    .await
    .expect("the server logged its address");
    // Keep draining the log so the child never blocks on a full pipe.
    let drain = tokio::spawn(async move {
        let mut log = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            log.push(line);
        }
        log
    });

    let mut client = Client::connect(&format!("ws://{addr}")).await;
    client.subscribe(&["t"]).await;
    let pid = child.id().expect("pid").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    assert_eq!(
        client.ending(100).await,
        Ending::Closed(1001, "going away".into())
    );
    let exit = tokio::time::timeout(STEP, child.wait())
        .await
        .expect("exited after SIGTERM")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
    let log = tokio::time::timeout(Duration::from_secs(2), drain)
        .await
        .expect("log closed")
        .expect("drain");
    assert!(
        log.iter().any(|l| l.contains("SIGTERM received")),
        "{log:?}"
    );
}

/// The strings of the list `key` in a printed configuration.
fn strings<'a>(config: &'a toml::Table, key: &str) -> Vec<&'a str> {
    config[key]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect()
}
