// Browser benchmarks: prints figures, each against a baseline measured in the
// same run. Run with `cargo xtask bench-browser` (builds the app and the
// 10,000-record bundle first). Not a test: nothing here passes or fails.
import { readFile, readdir, writeFile, mkdtemp } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startServer, profile, open, createIdentity, createSpace, dist } from "./harness.mjs";

const bundlePath = process.env.BENCH_BUNDLE;
if (!bundlePath) {
  console.error("set BENCH_BUNDLE to a bundle file (cargo xtask bench-browser does)");
  process.exit(2);
}

function pct(values, p) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const fmt = (x, d = 1) => Number(x).toFixed(d);

async function sizes() {
  const rows = [];
  let wasm = 0;
  let wasmGz = 0;
  for (const f of (await readdir(dist)).sort()) {
    if (!/\.(wasm|js)$/.test(f)) continue;
    const bytes = await readFile(join(dist, f));
    const gz = gzipSync(bytes, { level: 9 }).length;
    rows.push([f, bytes.length, gz]);
    if (f.endsWith(".wasm")) {
      wasm += bytes.length;
      wasmGz += gz;
    }
  }
  return { rows, wasm, wasmGz };
}

const server = await startServer();
const p = await profile("bench");
const out = [];
try {
  const s = await sizes();
  out.push("## Bytes shipped (release build)", "", "| file | raw | gzip |", "|---|---:|---:|");
  for (const [f, raw, gz] of s.rows) out.push(`| ${f.replace(/-[0-9a-f]{12,}/, "-<hash>")} | ${raw} | ${gz} |`);
  out.push(`| **all wasm** | ${s.wasm} | **${s.wasmGz}** (target < 600 KB: ${s.wasmGz < 600_000 ? "met" : "not met"}) |`, "");

  const page = await open(p.context, server.url);
  await createIdentity(page, "Bench");
  await createSpace(page, "Scratch");

  // Ingest: import the generated bundle (verify, apply, store in IndexedDB).
  const bundle = await readFile(bundlePath);
  const dir = await mkdtemp(join(tmpdir(), "civicbase-bench-"));
  const file = join(dir, "load.civicbase");
  await writeFile(file, bundle);
  await page.click('button[role="tab"]:has-text("Sync")');
  const t0 = Date.now();
  await page.setInputFiles("#import-bundle", file);
  await page.waitForSelector("#import-summary", { timeout: 600_000 });
  const ingestMs = Date.now() - t0;
  const summary = await page.textContent("#import-summary");
  const added = Number(/\+(\d+)/.exec(summary)?.[1] ?? 0);

  // Baseline: the same number of records with the same total bytes, put raw
  // into IndexedDB in one batched transaction, in the same page.
  const rawMs = await page.evaluate(
    async ({ n, total }) => {
      const each = Math.max(1, Math.floor(total / n));
      const rec = new Uint8Array(each);
      const db = await new Promise((ok, err) => {
        const r = indexedDB.open("raw-bench", 1);
        r.onupgradeneeded = () => r.result.createObjectStore("log");
        r.onsuccess = () => ok(r.result);
        r.onerror = () => err(r.error);
      });
      const start = performance.now();
      await new Promise((ok, err) => {
        const tx = db.transaction("log", "readwrite", { durability: "strict" });
        const st = tx.objectStore("log");
        for (let i = 0; i < n; i++) st.put(rec.slice(), i);
        tx.oncomplete = ok;
        tx.onerror = () => err(tx.error);
      });
      return performance.now() - start;
    },
    { n: added, total: bundle.length },
  );
  const rate = (added / ingestMs) * 1000;
  const rawRate = (added / rawMs) * 1000;
  out.push(
    "## Ingest into IndexedDB",
    "",
    "| what | entries | ms | entries/s |",
    "|---|---:|---:|---:|",
    `| import of a signed bundle (decode, verify in batches, apply, store) | ${added} | ${ingestMs} | ${fmt(rate, 0)} |`,
    `| raw batched IndexedDB put of the same bytes | ${added} | ${fmt(rawMs, 0)} | ${fmt(rawRate, 0)} |`,
    `| **ratio** | | | **${fmt(rate / rawRate, 2)}×** (target ≥ 0.5×: ${rate / rawRate >= 0.5 ? "met" : "not met"}) |`,
    "",
  );

  // Cold start: reload with 10,000 records stored, until the space list shows.
  const starts = [];
  for (let i = 0; i < 3; i++) {
    const t = Date.now();
    await page.reload();
    await page.waitForSelector('button.space:has-text("Load test")', { timeout: 60_000 });
    starts.push(Date.now() - t);
  }
  const cold = pct(starts, 50);
  out.push(
    "## Cold start with the records stored",
    "",
    `Reload to the space list, median of 3: **${cold} ms** (runs: ${starts.join(", ")} ms; target < 1000 ms: ${cold < 1000 ? "met" : "not met"}).`,
    "",
  );

  // Tab to tab: a notice posted in one tab, seen in the other.
  await page.click('button.space:has-text("Scratch")');
  const other = await open(p.context, server.url);
  await other.click('button.space:has-text("Scratch")');
  await other.waitForSelector("#post-notice");
  await other.evaluate(() => {
    window.__seen = {};
    new MutationObserver(() => {
      for (const h of document.querySelectorAll("li.notice h3")) {
        if (!(h.textContent in window.__seen)) window.__seen[h.textContent] = performance.timeOrigin + performance.now();
      }
    }).observe(document.body, { childList: true, subtree: true, characterData: true });
  });
  // Warm up: the second tab loads the 10,000-record space and the tabs
  // find each other; measure only once a post gets through.
  await page.fill("#notice-title", "warm-up");
  await page.click("#post-notice");
  await other.waitForFunction(() => "warm-up" in window.__seen, null, { timeout: 120_000 });
  // The receiving tab is the visible one (a hidden tab's rendering is
  // throttled by the browser, which is not what this measures).
  await other.bringToFront();
  const lat = [];
  for (let i = 0; i < 40; i++) {
    const title = `latency probe ${i}`;
    // The form clears itself when the previous post is stored.
    await page.waitForFunction(
      () => document.querySelector("#notice-title").value === "" && !document.querySelector("#post-notice").disabled,
    );
    // The sending tab is in the background now, where the browser runs no
    // animation frames; playwright's click waits for one, so the post is
    // made by the page's own script, stamped the moment it is clicked.
    const sent = await page.evaluate((t) => {
      const input = document.querySelector("#notice-title");
      input.value = t;
      input.dispatchEvent(new Event("input", { bubbles: true }));
      const at = performance.timeOrigin + performance.now();
      document.querySelector("#post-notice").click();
      return at;
    }, title);
    await other.waitForFunction((t) => t in window.__seen, title, { timeout: 5_000 });
    const seen = await other.evaluate((t) => window.__seen[t], title);
    lat.push(seen - sent);
  }
  // Baseline: a raw BroadcastChannel message between the same two tabs.
  await other.evaluate(() => {
    const ch = new BroadcastChannel("bench-raw");
    ch.onmessage = (m) => ch.postMessage(m.data);
  });
  const raw = await page.evaluate(async () => {
    const ch = new BroadcastChannel("bench-raw");
    const out = [];
    for (let i = 0; i < 40; i++) {
      const t = performance.now();
      await new Promise((ok) => {
        ch.onmessage = ok;
        ch.postMessage(i);
      });
      out.push((performance.now() - t) / 2);
    }
    return out;
  });
  out.push(
    "## Tab to tab",
    "",
    "| what | p50 ms | p95 ms |",
    "|---|---:|---:|",
    `| notice posted in one tab until shown in the other (40 posts) | ${fmt(pct(lat, 50))} | ${fmt(pct(lat, 95))} |`,
    `| raw BroadcastChannel message, one way (half a round trip) | ${fmt(pct(raw, 50), 2)} | ${fmt(pct(raw, 95), 2)} |`,
    "",
    `Target p95 < 50 ms: ${pct(lat, 95) < 50 ? "met" : "not met"}.`,
    "",
  );
} finally {
  await p.close();
  await server.close();
}
console.log(out.join("\n"));
