// Browser-to-browser benchmarks over WebRTC on localhost: two browser
// instances (two devices) introduced by the real signaling server. Prints
// figures, each against a raw data channel between the same two browsers in
// the same run. Run with `cargo xtask bench-browser`. Not a test.
import { readFile, writeFile, mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startSignaling, profile, open, createIdentity, createSpace } from "./harness.mjs";

const bundlePath = process.env.BENCH_BUNDLE;
if (!bundlePath) {
  console.error("set BENCH_BUNDLE to a bundle file (cargo xtask bench-browser does)");
  process.exit(2);
}
const PROBES = 40;

function pct(values, p) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const fmt = (x, d = 1) => Number(x).toFixed(d);

async function tab(page, name) {
  await page.click(`button[role="tab"]:has-text("${name}")`);
}

/**
 * Connects a new raw data channel between two pages (SDP passed by this
 * script), replacing any raw channel they had; the app's own connections
 * are untouched.
 */
async function rawChannel(a, b) {
  const setup = () => {
    window.__raw?.pc.close();
    window.__raw = null;
    window.__gathered = (pc) => new Promise((ok) => {
      if (pc.iceGatheringState === "complete") return ok();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && ok());
    });
  };
  await a.evaluate(setup);
  await b.evaluate(setup);
  const offer = await a.evaluate(async () => {
    const pc = new RTCPeerConnection();
    const dc = pc.createDataChannel("raw", { ordered: true });
    dc.binaryType = "arraybuffer";
    window.__raw = { pc, dc, open: new Promise((ok) => (dc.onopen = ok)) };
    await pc.setLocalDescription(await pc.createOffer());
    await window.__gathered(pc);
    return pc.localDescription.sdp;
  });
  const answer = await b.evaluate(async (sdp) => {
    const pc = new RTCPeerConnection();
    window.__raw = { pc, dc: null };
    window.__raw.open = new Promise((ok) => {
      pc.ondatachannel = (e) => {
        window.__raw.dc = e.channel;
        e.channel.binaryType = "arraybuffer";
        e.channel.onopen = ok;
        if (e.channel.readyState === "open") ok();
      };
    });
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    await window.__gathered(pc);
    return pc.localDescription.sdp;
  }, offer);
  await a.evaluate(async (sdp) => {
    await window.__raw.pc.setRemoteDescription({ type: "answer", sdp });
    await window.__raw.open;
  }, answer);
  await b.evaluate(() => window.__raw.open);
  // The receiving page echoes small messages and acknowledges a bulk
  // transfer once `want` bytes arrived.
  await b.evaluate(() => {
    const raw = window.__raw;
    raw.got = 0;
    raw.want = Infinity;
    raw.dc.onmessage = (m) => {
      const n = m.data.byteLength;
      if (n <= 200) return raw.dc.send(m.data);
      raw.got += n;
      if (raw.got >= raw.want) raw.dc.send(new Uint8Array(1));
    };
  });
}

/**
 * Sends `total` bytes over the raw channel from `a` to `b` in 16 KiB
 * messages with the app's flow control (1 MiB high water, 256 KiB low);
 * returns the ms until `b` acknowledged the last byte.
 */
async function rawTransfer(a, b, total) {
  await b.evaluate((n) => {
    window.__raw.got = 0;
    window.__raw.want = n;
  }, total);
  return a.evaluate(async (total) => {
    const dc = window.__raw.dc;
    const piece = new Uint8Array(16 * 1024 + 34);
    dc.bufferedAmountLowThreshold = 256 * 1024;
    const start = performance.now();
    const done = new Promise((ok) => (dc.onmessage = ok));
    let sent = 0;
    while (sent < total) {
      if (dc.bufferedAmount >= 1024 * 1024) {
        await new Promise((ok) => (dc.onbufferedamountlow = ok));
        continue;
      }
      dc.send(piece);
      sent += piece.length;
    }
    await done;
    return performance.now() - start;
  }, total);
}

async function closeRaw(...pages) {
  for (const p of pages) await p.evaluate(() => window.__raw?.pc.close());
}

const QUIET_RAW_RUNS = 3;
const SYNC_RUNS = 3;

/**
 * Lets the benchmark see when a page's data channels carry messages: every
 * channel the page creates or accepts is noted, and once `__armed` is set
 * the time of the first message after it is kept, and the bytes received
 * on them counted. Measurement only; the
 * app's own handlers are untouched.
 */
function watchChannels() {
  const channels = [];
  window.__firstMessageAt = null;
  window.__armed = false;
  window.__wireBytes = 0;
  const watch = (ch) => {
    channels.push(ch);
    ch.addEventListener("message", (m) => {
      if (!window.__armed) return;
      if (window.__firstMessageAt === null) window.__firstMessageAt = performance.now();
      window.__wireBytes += m.data.byteLength ?? m.data.size ?? 0;
    });
  };
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("datachannel", (e) => watch(e.channel));
    }
    createDataChannel(...args) {
      const ch = super.createDataChannel(...args);
      watch(ch);
      return ch;
    }
  };
}

const sig = await startSignaling();
const alice = await profile("bench-rtc-a");
const bob = await profile("bench-rtc-b");
await bob.context.addInitScript(watchChannels);
const out = [];
try {
  const a = await open(alice.context, sig.url);
  const b = await open(bob.context, sig.url);
  await createIdentity(a, "Alice");
  await createIdentity(b, "Bob");

  // Latency: a space both are members of; Alice posts, Bob's page sees.
  await createSpace(a, "Scratch");
  await tab(a, "Members");
  await a.click("#create-invite");
  await a.waitForSelector("#invite-output");
  const invite = await a.inputValue("#invite-output");
  await tab(a, "Notices");
  await b.fill("#invite-link", invite);
  await b.click('form:has(#invite-link) button[type="submit"]');
  await b.waitForSelector('button.space:has-text("Scratch")', { timeout: 30_000 });
  await b.click('button.space:has-text("Scratch")');
  await b.waitForSelector('#space-title:has-text("Scratch")', { timeout: 30_000 });
  await b.evaluate(() => {
    window.__seen = {};
    new MutationObserver(() => {
      for (const h of document.querySelectorAll("li.notice h3")) {
        if (!(h.textContent in window.__seen)) window.__seen[h.textContent] = performance.timeOrigin + performance.now();
      }
    }).observe(document.body, { childList: true, subtree: true, characterData: true });
  });
  await a.fill("#notice-title", "warm-up");
  await a.click("#post-notice");
  await b.waitForFunction(() => "warm-up" in window.__seen, null, { timeout: 60_000 });
  const lat = [];
  for (let i = 0; i < PROBES; i++) {
    const title = `latency probe ${i}`;
    await a.waitForFunction(
      () => document.querySelector("#notice-title").value === "" && !document.querySelector("#post-notice").disabled,
    );
    const sent = await a.evaluate((t) => {
      const input = document.querySelector("#notice-title");
      input.value = t;
      input.dispatchEvent(new Event("input", { bubbles: true }));
      const at = performance.timeOrigin + performance.now();
      document.querySelector("#post-notice").click();
      return at;
    }, title);
    await b.waitForFunction((t) => t in window.__seen, title, { timeout: 10_000 });
    lat.push((await b.evaluate((t) => window.__seen[t], title)) - sent);
  }

  console.error("latency measured");
  const bundle = await readFile(bundlePath);
  // Context: a raw data channel between the same two browsers while both
  // are quiet, before the import; three transfers on one new channel (the
  // first on a fresh connection, the others on a warmed one).
  await rawChannel(a, b);
  const rawLat = await a.evaluate(async (n) => {
    const dc = window.__raw.dc;
    const out = [];
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await new Promise((ok) => {
        dc.onmessage = ok;
        dc.send(new Uint8Array(200));
      });
      out.push((performance.now() - t) / 2);
    }
    return out;
  }, PROBES);
  const quietRaw = [];
  for (let run = 0; run < QUIET_RAW_RUNS; run++) quietRaw.push(await rawTransfer(a, b, bundle.length));
  await closeRaw(a, b);
  console.error(`raw data channel while quiet: ${quietRaw.map((x) => fmt(x, 0)).join(", ")} ms`);

  // Initial sync: Alice has a 10,000-record space; each device opens a link
  // to it and receives all of it (verify, apply, store).
  const link = (await readFile(`${bundlePath}.link`, "utf8")).trim();
  const dir = await mkdtemp(join(tmpdir(), "civicbase-bench-rtc-"));
  const file = join(dir, "load.civicbase");
  await writeFile(file, bundle);
  await tab(a, "Sync");
  await a.setInputFiles("#import-bundle", file);
  await a.waitForSelector("#import-summary", { timeout: 600_000 });
  const entries = Number(/\+(\d+)/.exec(await a.textContent("#import-summary"))?.[1] ?? 0);
  console.error(`imported ${entries} entries on Alice's device`);

  /**
   * One initial sync onto device `page`. First the baseline for it: a new
   * raw channel between Alice's page and this page carries the same bytes
   * once and is closed, so that the raw transfer and the sync both run on
   * a connection that carried no bulk data before, between the same
   * browsers, with the same browsers running.
   */
  async function syncOnce(page) {
    await rawChannel(a, page);
    const rawMs = await rawTransfer(a, page, bundle.length);
    await closeRaw(a, page);
    await page.waitForSelector("#invite-link");
    await page.fill("#invite-link", `${sig.url}#${link}`);
    // The page notes when the first of the space's entries are stored, to
    // tell finding the peer and opening the session from the transfer, and
    // when all of them are (the moment the list shows the full count).
    await page.evaluate((want) => {
      window.__firstAt = null;
      window.__doneAt = null;
      new MutationObserver(() => {
        for (const el of document.querySelectorAll("button.space[data-entries]")) {
          if (el.textContent.includes("Scratch")) continue;
          const n = Number(el.dataset.entries);
          if (n > 0 && window.__firstAt === null) window.__firstAt = performance.now();
          if (n === want && window.__doneAt === null) window.__doneAt = performance.now();
        }
      }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-entries"] });
      window.__clickAt = performance.now();
      window.__wireBytes = 0;
      window.__armed = true;
    }, entries);
    await page.click('form:has(#invite-link) button[type="submit"]');
    await page.waitForSelector(`button.space[data-entries="${entries}"]`, { timeout: 600_000 });
    const t = await page.evaluate(() => ({
      syncMs: window.__doneAt - window.__clickAt,
      firstMs: (window.__firstAt ?? NaN) - window.__clickAt,
      // From the first message of the new session on the device's channel
      // until every entry is stored.
      transferMs: window.__doneAt - (window.__firstMessageAt ?? NaN),
      wireBytes: window.__wireBytes,
    }));
    console.error(
      `raw ${fmt(rawMs, 0)} ms; initial sync ${fmt(t.syncMs, 0)} ms (first entries stored after ${fmt(t.firstMs, 0)} ms, transfer ${fmt(t.transferMs, 0)} ms, ${t.wireBytes} bytes received on its channels)`,
    );
    return { rawMs, ...t, ratio: rawMs / t.transferMs };
  }

  // Bob's device (connected to Alice since the latency test), then fresh
  // devices, each a new browser instance joining with the invite link.
  await b.click('a:has-text("All spaces"), button:has-text("All spaces")');
  const runs = [await syncOnce(b)];
  for (let i = 1; i < SYNC_RUNS; i++) {
    const device = await profile(`bench-rtc-new-${i}`);
    try {
      await device.context.addInitScript(watchChannels);
      const page = await open(device.context, sig.url);
      await createIdentity(page, `Device ${i}`);
      runs.push(await syncOnce(page));
    } finally {
      await device.close();
    }
  }
  const list = (key, d = 0) => runs.map((r) => fmt(r[key], d)).join(", ");
  const med = (key) => pct(runs.map((r) => r[key]), 50);
  const ratio = med("ratio");
  const mbs = (ms) => fmt(bundle.length / ms / 1000, 2);
  out.push(
    "## Browser to browser over WebRTC (two Chromium instances, localhost)",
    "",
    "| what | p50 ms | p95 ms |",
    "|---|---:|---:|",
    `| notice posted on one device until shown on the other (${PROBES} posts) | ${fmt(pct(lat, 50))} | ${fmt(pct(lat, 95))} |`,
    `| raw data channel, 200-byte message one way (half a round trip) | ${fmt(pct(rawLat, 50), 2)} | ${fmt(pct(rawLat, 95), 2)} |`,
    "",
    `Target p95 < 100 ms: ${pct(lat, 95) < 100 ? "met" : "not met"}.`,
    "",
    `Initial sync of a ${entries}-entry space (${bundle.length} bytes) onto ${SYNC_RUNS} devices, each against a raw data channel between the same two browsers just before it (median per device):`,
    "",
    "| what | per device, ms | median ms | MB/s |",
    "|---|---|---:|---:|",
    `| invite link submitted until every entry is stored | ${list("syncMs")} | ${fmt(med("syncMs"), 0)} | ${mbs(med("syncMs"))} |`,
    `| of which: until the first entries are stored (finding the peer, opening the session, the first batch) | ${list("firstMs")} | ${fmt(med("firstMs"), 0)} | |`,
    `| the transfer: the session's first message on the data channel until every entry is stored | ${list("transferMs")} | ${fmt(med("transferMs"), 0)} | ${mbs(med("transferMs"))} |`,
    `| bytes the device received on its data channels during the sync (compressed link streams) | ${list("wireBytes")} | | |`,
    `| raw data channel, new connection, the bundle's ${bundle.length} bytes in 16 KiB messages | ${list("rawMs")} | ${fmt(med("rawMs"), 0)} | ${mbs(med("rawMs"))} |`,
    `| **throughput ratio** (raw time / transfer time) | ${list("ratio", 2)} | **${fmt(ratio, 2)}×** | target ≥ 0.5×: ${ratio >= 0.5 ? "met" : "not met"} |`,
    `| raw data channel while both devices are quiet, before the import (one connection: first transfer, then two more) | ${quietRaw.map((x) => fmt(x, 0)).join(", ")} | ${fmt(pct(quietRaw, 50), 0)} | ${mbs(pct(quietRaw, 50))} |`,
    `| throughput ratio against that quiet channel's median instead (mostly a warmed connection, no third browser) | | ${fmt(pct(quietRaw, 50) / med("transferMs"), 2)}× | |`,
    "",
  );
} finally {
  await alice.close();
  await bob.close();
  await sig.stop();
}
console.log(out.join("\n"));
