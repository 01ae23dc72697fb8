// Journey 3: after the first visit the app loads and works with the network
// off (service worker + IndexedDB), and what was done offline is kept.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, profile, open, createIdentity, createSpace, postNotice, shot } from "./harness.mjs";

test("works offline after the first visit and keeps what was done", async () => {
  const server = await startServer();
  const p = await profile("offline");
  try {
    const page = await open(p.context, server.url);
    await page.waitForFunction(() => navigator.serviceWorker?.controller != null, null, { timeout: 15_000 });
    await createIdentity(page, "Alice");
    await createSpace(page, "Flood response");
    await postNotice(page, "Sandbags at the harbour");

    await p.context.setOffline(true);
    server.offline();
    await page.reload();
    await page.waitForSelector('button.space:has-text("Flood response")', { timeout: 15_000 });
    await page.click('button.space:has-text("Flood response")');
    await postNotice(page, "Written with the network off");
    await shot(page, "06-offline");

    await p.context.setOffline(false);
    server.online();
    await page.reload();
    await page.click('button.space:has-text("Flood response")');
    await page.waitForSelector('li.notice h3:has-text("Written with the network off")');
    const titles = (await page.locator("li.notice h3").allTextContents()).sort();
    assert.deepEqual(titles, ["Sandbags at the harbour", "Written with the network off"]);
  } finally {
    await p.close();
    await server.close();
  }
});
