// Journey 7: two devices (two browser profiles) sync directly over WebRTC,
// introduced by the real signaling server, which also serves the app.
// Bob joins from Alice's invite link and receives the space from her device;
// entries made on one appear on the other within 2 seconds; both pause
// network sync, both write, resume, and converge; a reloaded peer does not
// leave a stale connection that blocks sync.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startSignaling, profile, open, createIdentity, createSpace, postNotice, shot, readQr } from "./harness.mjs";

async function tab(page, name) {
  await page.click(`button[role="tab"]:has-text("${name}")`);
}

async function clearAlerts(page) {
  while ((await page.locator(".alert button").count()) > 0) {
    await page.locator(".alert button").first().click();
  }
}

/** Waits until `page` shows the notice, at most `ms`; returns the time taken. */
async function arrives(page, title, ms) {
  const started = Date.now();
  await page.waitForSelector(`li.notice h3:has-text("${title}")`, { timeout: ms });
  return Date.now() - started;
}

async function setPaused(page, paused) {
  await tab(page, "Sync");
  const state = await page.getAttribute("#signaling-state", "data-state");
  if ((state === "paused") !== paused) await page.click("#pause-sync");
  await page.waitForSelector(paused ? '#signaling-state[data-state="paused"]' : '#signaling-state[data-state="connected"]');
  await tab(page, "Notices");
}

test("two devices sync over WebRTC through the signaling server", async () => {
  const sig = await startSignaling();
  const alice = await profile("alice-mesh");
  const bob = await profile("bob-mesh");
  try {
    const a = await open(alice.context, sig.url);
    await createIdentity(a, "Alice");
    await createSpace(a, "Flood response");
    await tab(a, "Members");
    await a.click("#create-invite");
    await a.waitForSelector("#invite-output");
    const link = await a.inputValue("#invite-output");
    assert.match(link, /#join1-/);
    assert.equal(await readQr(a, "#invite-qr"), link, "the QR code carries the invite link");
    await shot(a, "07-invite-qr");
    await tab(a, "Notices");
    await postNotice(a, "Sandbags at the school", "Bring gloves.");

    // Bob opens the link: the space arrives from Alice's device directly.
    const b = await open(bob.context, sig.url);
    await createIdentity(b, "Bob");
    await b.goto("about:blank");
    await b.goto(link);
    await b.waitForSelector("button.space", { timeout: 20_000 });
    await clearAlerts(b);
    await b.click("button.space");
    await b.waitForSelector('#space-title:has-text("Flood response")', { timeout: 20_000 });
    await tab(b, "Notices");
    await b.waitForSelector('li.notice h3:has-text("Sandbags at the school")', { timeout: 10_000 });

    // Both directions, within 2 seconds each.
    await postNotice(a, "Water rising on Mill Street");
    console.log(`  Alice → Bob in ${await arrives(b, "Water rising on Mill Street", 2_000)} ms`);
    await postNotice(b, "Two pumps at the depot");
    console.log(`  Bob → Alice in ${await arrives(a, "Two pumps at the depot", 2_000)} ms`);

    // The Sync view names the peer and how it is connected.
    await tab(a, "Sync");
    await a.waitForSelector('li.peer[data-via="direct"]:has-text("Bob")', { timeout: 5_000 });
    await shot(a, "07-sync-peer");
    await tab(a, "Notices");

    // Both go offline (network sync paused), both write.
    await clearAlerts(a);
    await clearAlerts(b);
    await setPaused(a, true);
    await setPaused(b, true);
    await postNotice(a, "Written by Alice while apart");
    await postNotice(b, "Written by Bob while apart");
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(await b.locator('li.notice h3:has-text("Written by Alice while apart")').count(), 0, "paused devices do not sync");
    assert.equal(await a.locator('li.notice h3:has-text("Written by Bob while apart")').count(), 0, "paused devices do not sync");

    // Back together: both converge.
    await setPaused(a, false);
    await setPaused(b, false);
    console.log(`  after resuming, Bob has Alice's entry in ${await arrives(b, "Written by Alice while apart", 15_000)} ms`);
    console.log(`  after resuming, Alice has Bob's entry in ${await arrives(a, "Written by Bob while apart", 15_000)} ms`);
    const titles = async (p) => (await p.locator("li.notice h3").allTextContents()).sort();
    assert.deepEqual(await titles(a), await titles(b), "both devices show the same notices");

    // Bob reloads: his old connection must not block the new one.
    await b.reload();
    await b.waitForSelector("main h1", { timeout: 20_000 });
    await b.click('button.space:has-text("Flood response")');
    await b.waitForSelector("#space-title");
    await postNotice(a, "After Bob reloaded");
    console.log(`  after Bob's reload, Alice → Bob in ${await arrives(b, "After Bob reloaded", 15_000)} ms`);
  } finally {
    await alice.close();
    await bob.close();
    await sig.stop();
  }
});
