// Journey 8: the always-on anchor keeps a space when every member's device
// is off. Alice creates a space and gives its invite link to the anchor; the
// anchor syncs it over WebRTC; Alice's device goes away; Carol, on a brand-new
// device, opens the invite link and receives the whole space from the anchor
// alone. The anchor is stopped and started again in between: nothing is lost.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startSignaling, startAnchor, profile, open, createIdentity, createSpace, postNotice, shot } from "./harness.mjs";

async function tab(page, name) {
  await page.click(`button[role="tab"]:has-text("${name}")`);
}

async function clearAlerts(page) {
  while ((await page.locator(".alert button").count()) > 0) {
    await page.locator(".alert button").first().click();
  }
}

/** Polls the anchor's database until the space has `entries` entries. */
async function anchorHas(anchor, entries, ms) {
  const until = Date.now() + ms;
  let last = "";
  while (Date.now() < until) {
    last = await anchor.spaces();
    if (new RegExp(`\\b${entries}\\b`).test(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`the anchor did not reach ${entries} entries in ${ms} ms; it lists:\n${last}\n${anchor.log().slice(-2000)}`);
}

test("a new device gets the whole space from the anchor alone", async () => {
  const sig = await startSignaling();
  const alice = await profile("alice-anchor");
  const carol = await profile("carol-anchor");
  let anchor;
  try {
    const a = await open(alice.context, sig.url);
    await createIdentity(a, "Alice");
    await createSpace(a, "Shelter rota");
    const notices = ["Night shift needs two people", "Blankets in room 4", "Kitchen closes at ten"];
    for (const n of notices) await postNotice(a, n);
    await tab(a, "Members");
    await a.click("#create-invite");
    await a.waitForSelector("#invite-output");
    const link = await a.inputValue("#invite-output");

    // The anchor serves the space of the link and syncs it from Alice.
    anchor = await startAnchor(sig.url, { join: [link] });
    await tab(a, "Sync");
    await a.waitForSelector('li.peer[data-via="anchor"]:has-text("Town hall anchor")', { timeout: 20_000 });
    await shot(a, "08-sync-anchor");
    await a.click('button:has-text("All spaces")');
    const entries = Number(await a.getAttribute('button.space:has-text("Shelter rota")', "data-entries"));
    assert.ok(entries >= notices.length + 2, `Alice's device has ${entries} entries`);
    await anchorHas(anchor, entries, 20_000);

    // Alice's device goes away; the anchor restarts from its own store.
    await alice.close();
    await anchor.stop();
    anchor = await startAnchor(sig.url, { dataDir: anchor.dir });
    await anchorHas(anchor, entries, 5_000);

    // Carol, new device, opens the invite link: everything comes from the anchor.
    const c = await open(carol.context, sig.url);
    await createIdentity(c, "Carol");
    await c.goto("about:blank");
    await c.goto(link);
    await c.waitForSelector("button.space", { timeout: 20_000 });
    await clearAlerts(c);
    await c.click("button.space");
    await c.waitForSelector('#space-title:has-text("Shelter rota")', { timeout: 20_000 });
    await tab(c, "Notices");
    for (const n of notices) {
      await c.waitForSelector(`li.notice h3:has-text("${n}")`, { timeout: 10_000 });
    }
    // Carol's join went back to the anchor, so the next device sees her.
    await anchorHas(anchor, entries + 1, 20_000);
    await tab(c, "Sync");
    await c.waitForSelector('li.peer[data-via="anchor"]', { timeout: 10_000 });
    await shot(c, "08-new-device-from-anchor");
  } finally {
    await carol.close();
    await alice.close().catch(() => {});
    if (anchor) await anchor.stop();
    await sig.stop();
  }
});
