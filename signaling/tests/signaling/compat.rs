//! y-webrtc's own client code against the server, when Node and y-webrtc are installed
//! (`npm install --prefix signaling/bench-node`); skipped with a message otherwise.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;
use tokio::process::Command;

use crate::common::{config, unique, Server, STEP};

const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bench-node");

fn node_available() -> bool {
    Path::new(NODE_DIR)
        .join("node_modules/y-webrtc/package.json")
        .is_file()
        && std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
}

fn client(url: &str, room: &str, role: &str) -> Command {
    let mut command = Command::new("node");
    command
        .current_dir(NODE_DIR)
        .args(["y-webrtc-client.mjs", url, room, role])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn y_webrtc_providers_find_each_other_through_the_server() {
    if !node_available() {
        eprintln!(
            "skipped: needs node and `npm install --prefix signaling/bench-node` for y-webrtc"
        );
        return;
    }
    let server = Server::start(config()).await;
    let url = server.url();
    let room = format!("compat-{}-{}", std::process::id(), unique());

    let mut first = client(&url, &room, "first").spawn().expect("start node");
    let mut lines = tokio::io::BufReader::new(first.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(STEP, lines.next_line())
        .await
        .expect("the first provider joined in time")
        .expect("read its output");
    assert_eq!(ready.as_deref(), Some("ready"));

    let second = client(&url, &room, "second").output();
    let second = tokio::time::timeout(Duration::from_secs(15), second)
        .await
        .expect("the second provider finished")
        .expect("run node");
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );
    let status = tokio::time::timeout(Duration::from_secs(15), first.wait())
        .await
        .expect("the first provider finished")
        .expect("wait");
    assert!(status.success(), "the first provider never saw the second");
}
