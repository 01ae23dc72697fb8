// Shared pieces of the end-to-end tests: a static server for dist/ on
// 127.0.0.1, headless Chromium profiles, and screenshots kept as artefacts.
import { createServer } from "node:http";
import { readFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { join, join as join_, extname, resolve, dirname } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { chromium } from "playwright-core";
import jsQR from "jsqr";
import { PNG } from "pngjs";

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, "..", "..");
export const dist = process.env.CIVICBASE_DIST ?? join(root, "dist");
export const artifacts = join(root, "test-artifacts");

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".css": "text/css; charset=utf-8",
  ".png": "image/png",
  ".webmanifest": "application/manifest+json",
  ".json": "application/json",
};

/** Serves dist/ on 127.0.0.1 (at a free port unless `port` is given). `offline()` makes it refuse everything. */
export async function startServer(port = 0) {
  let down = false;
  const server = createServer(async (req, res) => {
    if (down) {
      req.socket.destroy();
      return;
    }
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const file = join(dist, path.endsWith("/") ? path + "index.html" : path);
    if (!file.startsWith(dist)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, {
        "content-type": MIME[extname(file)] ?? "application/octet-stream",
        "cache-control": "no-cache",
      });
      res.end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    offline() {
      down = true;
    },
    online() {
      down = false;
    },
    close: () => new Promise((ok) => server.close(ok)),
  };
}

/** Path of a binary built by cargo in this workspace's target directory. */
export function binary(name) {
  const dir = process.env.CARGO_TARGET_DIR ?? join(root, "target");
  return join(dir, "debug", name);
}

/**
 * Starts the real signaling server (which also serves dist/) on a free port
 * of 127.0.0.1, as a child process; `stop()` sends SIGTERM and waits.
 */
export async function startSignaling() {
  const bin = process.env.CIVICBASE_SIGNALING_BIN ?? binary("civicbase-signaling");
  const child = spawn(bin, ["--bind", "127.0.0.1:0", "--static-dir", dist], {
    env: { ...process.env, RUST_LOG: "info" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`signaling server did not start in 20 s:\n${log}`)), 20_000);
    child.stderr.on("data", (d) => {
      log += d;
      const m = log.match(/app at (http:\/\/127\.0\.0\.1:\d+\/)/);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    child.on("error", (e) => {
      clearTimeout(timer);
      fail(e);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`signaling server exited with ${code}:\n${log}`));
    });
  });
  return {
    url,
    process: child,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    },
  };
}

/**
 * Starts the always-on anchor peer as a child process, connected to the
 * signaling server at `signalingUrl` (the app's http URL), with its own data
 * directory. `spaces()` runs `civicbase-anchor spaces` on that directory.
 */
export async function startAnchor(signalingUrl, { dataDir, join = [] } = {}) {
  const bin = process.env.CIVICBASE_ANCHOR_BIN ?? binary("civicbase-anchor");
  const dir = dataDir ?? (await mkdtemp(join_(tmpdir(), "civicbase-anchor-")));
  const ws = signalingUrl.replace(/^http/, "ws") + "signal";
  const args = ["--data-dir", dir, "--signaling", ws, "--name", "Town hall anchor"];
  for (const link of join) args.push("--join", link);
  const child = spawn(bin, args, { env: { ...process.env, RUST_LOG: "info" }, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr.on("data", (d) => (log += d));
  const exited = once(child, "exit");
  return {
    dir,
    log: () => log,
    async spaces() {
      const out = spawn(bin, ["--data-dir", dir, "spaces"], { stdio: ["ignore", "pipe", "pipe"] });
      let text = "";
      out.stdout.on("data", (d) => (text += d));
      await once(out, "exit");
      return text;
    },
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        await exited;
      }
    },
  };
}

const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/** A browser profile (a separate device): its own data directory. */
export async function profile(name) {
  const dir = await mkdtemp(join(tmpdir(), `civicbase-${name}-`));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: FLAGS,
    viewport: { width: 420, height: 860 },
    acceptDownloads: true,
  });
  return {
    context,
    dir,
    async close() {
      await context.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Saves a screenshot under test-artifacts/screenshots. */
export async function shot(page, name) {
  const d = join(artifacts, "screenshots");
  await mkdir(d, { recursive: true });
  await page.screenshot({ path: join(d, `${name}.png`), fullPage: true });
}

/** Opens the app and waits until it answers. */
export async function open(context, url) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(url);
  await page.waitForSelector("main h1", { timeout: 20_000 });
  return page;
}

/** First run: creates the identity. */
export async function createIdentity(page, name) {
  await page.fill("#name", name);
  await page.click("#create-identity");
  await page.waitForSelector("#create-space");
}

/** Creates a space and opens it. */
export async function createSpace(page, name) {
  await page.fill("#space-name", name);
  await page.click("#create-space");
  await page.waitForSelector("#space-title");
}

/** Posts a notice in the open space. */
export async function postNotice(page, title, body = "") {
  await page.fill("#notice-title", title);
  await page.fill("#notice-body", body);
  await page.click("#post-notice");
  await page.waitForSelector(`li.notice h3:has-text("${title}")`);
}

/** Reads the QR code shown in `selector`: a screenshot of it, decoded. */
export async function readQr(page, selector) {
  const png = PNG.sync.read(await page.locator(selector).screenshot());
  const code = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
  return code?.data ?? null;
}
