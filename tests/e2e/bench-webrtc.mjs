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

const sig = await startSignaling();
const alice = await profile("bench-rtc-a");
const bob = await profile("bench-rtc-b");
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
  await b.click('a:has-text("All spaces"), button:has-text("All spaces")');
  await b.waitForSelector("#invite-link");
  await b.fill("#invite-link", `${sig.url}#${link}`);
  // Bob's page notes when the first of the space's entries are stored, to
  // tell finding the peer and opening the session from the transfer.
  await b.evaluate(() => {
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
  });
  const t0 = Date.now();
  await b.click('form:has(#invite-link) button[type="submit"]');
  await b.waitForSelector(`button.space[data-entries="${entries}"]`, { timeout: 600_000 });
  const syncMs = Date.now() - t0;
  const firstMs = await b.evaluate(() => (window.__firstAt ?? NaN) - window.__clickAt);

  console.error(`initial sync took ${syncMs} ms (first entries stored after ${fmt(firstMs, 0)} ms)`);
  // Baseline: a raw data channel between the same two browsers, sending the
  // same bytes in the same size of messages, with the same flow control.
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
  await b.evaluate((n) => (window.__want = n), bundle.length);
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
  const rawMs = await a.evaluate(async (total) => {
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
  }, bundle.length);

  const rate = bundle.length / syncMs;
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
    `| initial sync of a ${entries}-entry space: invite link submitted until every entry is stored on the new device | ${bundle.length} | ${syncMs} | ${fmt((bundle.length / syncMs / 1000), 2)} |`,
    `| of which: until the first entries are stored (finding the space's peer, opening its session) | | ${fmt(firstMs, 0)} | |`,
    `| raw data channel carrying the same bytes in 16 KiB messages | ${bundle.length} | ${fmt(rawMs, 0)} | ${fmt(bundle.length / rawMs / 1000, 2)} |`,
    `| **ratio** | | | **${fmt(rate / rawRate, 2)}×** (target ≥ 0.5×: ${rate / rawRate >= 0.5 ? "met" : "not met"}) |`,
    "",
  );
} finally {
  await alice.close();
  await bob.close();
  await sig.stop();
}
console.log(out.join("\n"));
