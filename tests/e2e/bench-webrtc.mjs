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

/** Connects a raw data channel between two pages (SDP passed by this script). */
async function rawChannel(a, b) {
  const gather = `
    window.__gathered = (pc) => new Promise((ok) => {
      if (pc.iceGatheringState === "complete") return ok();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && ok());
    });`;
  await a.evaluate(gather);
  await b.evaluate(gather);
  const offer = await a.evaluate(async () => {
    const pc = new RTCPeerConnection();
    const dc = pc.createDataChannel("raw", { ordered: true });
    dc.binaryType = "arraybuffer";
    window.__pc = pc;
    window.__dc = dc;
    window.__open = new Promise((ok) => (dc.onopen = ok));
    await pc.setLocalDescription(await pc.createOffer());
    await window.__gathered(pc);
    return pc.localDescription.sdp;
  });
  const answer = await b.evaluate(async (sdp) => {
    const pc = new RTCPeerConnection();
    window.__pc = pc;
    window.__open = new Promise((ok) => {
      pc.ondatachannel = (e) => {
        window.__dc = e.channel;
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
    await window.__pc.setRemoteDescription({ type: "answer", sdp });
    await window.__open;
  }, answer);
  await b.evaluate(() => window.__open);
}

const RAW_RUNS = 3;
const SYNC_RUNS = 3;

/**
 * Lets the benchmark see when a page's data channels carry messages: every
 * channel the page creates or accepts is noted, and once `__armed` is set
 * the time of the first message after it is kept. Measurement only; the
 * app's own handlers are untouched.
 */
function watchChannels() {
  const channels = [];
  window.__firstMessageAt = null;
  window.__armed = false;
  const watch = (ch) => {
    channels.push(ch);
    ch.addEventListener("message", () => {
      if (window.__armed && window.__firstMessageAt === null) window.__firstMessageAt = performance.now();
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
  const bundleLength = (await readFile(bundlePath)).length;
  // Baseline: a raw data channel between the same two browsers, sending the
  // same bytes in the same size of messages, with the same flow control;
  // measured while both devices are quiet, before the import (the median
  // of three runs).
  await rawChannel(a, b);
  await b.evaluate(() => {
    // Bob echoes small messages and acknowledges the bulk transfer.
    window.__got = 0;
    window.__dc.onmessage = (m) => {
      const n = m.data.byteLength;
      if (n <= 200) return window.__dc.send(m.data);
      window.__got += n;
      if (window.__got >= window.__want) window.__dc.send(new Uint8Array(1));
    };
  });
  await b.evaluate((n) => (window.__want = n), bundleLength);
  const rawLat = await a.evaluate(async (n) => {
    const dc = window.__dc;
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
  const rawRuns = [];
  for (let run = 0; run < RAW_RUNS; run++) {
    await b.evaluate(() => (window.__got = 0));
    rawRuns.push(await a.evaluate(async (total) => {
        const dc = window.__dc;
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
    }, bundleLength));
  }
  const rawMs = pct(rawRuns, 50);

  console.error(`raw data channel: ${rawRuns.map((x) => fmt(x, 0)).join(", ")} ms`);
  // Initial sync: Alice has a 10,000-record space; Bob opens a link to it and
  // receives all of it from Alice's device (verify, apply, store).
  const bundle = await readFile(bundlePath);
  const link = (await readFile(`${bundlePath}.link`, "utf8")).trim();
  const dir = await mkdtemp(join(tmpdir(), "civicbase-bench-rtc-"));
  const file = join(dir, "load.civicbase");
  await writeFile(file, bundle);
  await tab(a, "Sync");
  await a.setInputFiles("#import-bundle", file);
  await a.waitForSelector("#import-summary", { timeout: 600_000 });
  const entries = Number(/\+(\d+)/.exec(await a.textContent("#import-summary"))?.[1] ?? 0);
  console.error(`imported ${entries} entries on Alice's device`);
  /** One initial sync onto device `page`, which shows its space list. */
  async function syncOnce(page) {
    await page.waitForSelector("#invite-link");
    await page.fill("#invite-link", `${sig.url}#${link}`);
    // The page notes when the first of the space's entries are stored, to
    // tell finding the peer and opening the session from the transfer.
    await page.evaluate(() => {
      window.__firstAt = null;
      new MutationObserver(() => {
        if (window.__firstAt !== null) return;
        for (const el of document.querySelectorAll("button.space[data-entries]")) {
          if (!el.textContent.includes("Scratch") && Number(el.dataset.entries) > 0) {
            window.__firstAt = performance.now();
          }
        }
      }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-entries"] });
      window.__clickAt = performance.now();
      window.__armed = true;
    });
    const t0 = Date.now();
    await page.click('form:has(#invite-link) button[type="submit"]');
    await page.waitForSelector(`button.space[data-entries="${entries}"]`, { timeout: 600_000 });
    const syncMs = Date.now() - t0;
    const doneAt = await page.evaluate(() => performance.now());
    const firstMs = await page.evaluate(() => (window.__firstAt ?? NaN) - window.__clickAt);
    // The transfer: from the first message of the new session on the
    // device's channel until every entry is stored (the raw baseline, too,
    // is timed on a channel that is already open).
    const transferMs = await page.evaluate((end) => end - (window.__firstMessageAt ?? NaN), doneAt);
    console.error(`initial sync took ${syncMs} ms (first entries stored after ${fmt(firstMs, 0)} ms, transfer ${fmt(transferMs, 0)} ms)`);
    return { syncMs, firstMs, transferMs };
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
  const list = (key) => runs.map((r) => fmt(r[key], 0)).join(", ");
  const syncMs = pct(runs.map((r) => r.syncMs), 50);
  const firstMs = pct(runs.map((r) => r.firstMs), 50);
  const transferMs = pct(runs.map((r) => r.transferMs), 50);
  const rate = bundle.length / transferMs;
  const rawRate = bundle.length / rawMs;
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
    "| what | bytes | ms | MB/s |",
    "|---|---:|---:|---:|",
    `| initial sync of a ${entries}-entry space: invite link submitted until every entry is stored on the new device (median of ${SYNC_RUNS} devices: ${list("syncMs")} ms) | ${bundle.length} | ${fmt(syncMs, 0)} | ${fmt((bundle.length / syncMs / 1000), 2)} |`,
    `| of which: until the first entries are stored (finding the space's peer, opening its session, the first batch; ${list("firstMs")} ms) | | ${fmt(firstMs, 0)} | |`,
    `| of which: the transfer, from the session's first message on the data channel until every entry is stored (${list("transferMs")} ms) | ${bundle.length} | ${fmt(transferMs, 0)} | ${fmt(bundle.length / transferMs / 1000, 2)} |`,
    `| raw data channel carrying the same bytes in 16 KiB messages (median of ${RAW_RUNS}: ${rawRuns.map((x) => fmt(x, 0)).join(", ")} ms) | ${bundle.length} | ${fmt(rawMs, 0)} | ${fmt(bundle.length / rawMs / 1000, 2)} |`,
    `| **throughput ratio** (transfer against raw) | | | **${fmt(rate / rawRate, 2)}×** (target ≥ 0.5×: ${rate / rawRate >= 0.5 ? "met" : "not met"}) |`,
    `| whole initial sync against raw | | | ${fmt(bundle.length / syncMs / rawRate, 2)}× |`,
    "",
  );
} finally {
  await alice.close();
  await bob.close();
  await sig.stop();
}
console.log(out.join("\n"));
