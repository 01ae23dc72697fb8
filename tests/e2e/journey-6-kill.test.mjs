// Journey 6: a tab closed in the middle of a burst of writes leaves whole
// entries and a valid state: on reopening, every notice that was stored is
// complete, and the device can keep writing (no fork, no broken chain).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, profile, open, createIdentity, createSpace, postNotice } from "./harness.mjs";

test("closing a tab during a burst of writes leaves a valid log", async () => {
  const server = await startServer();
  const p = await profile("kill");
  try {
    const page = await open(p.context, server.url);
    await createIdentity(page, "Alice");
    await createSpace(page, "Burst");
    const n = 40;
    for (let i = 0; i < n; i++) {
      await page.fill("#notice-title", `burst ${String(i).padStart(2, "0")} ${"x".repeat(200)}`);
      await page.click("#post-notice", { noWaitAfter: true, force: true });
    }
    // Close the tab while writes are still in flight.
    await page.close({ runBeforeUnload: false });

    const again = await open(p.context, server.url);
    await again.click('button.space:has-text("Burst")');
    await again.waitForSelector("#post-notice");
    // Wait until the notices view has loaded (some notices, or none).
    await again.waitForSelector('li.notice h3, p.muted:has-text("No notices")');
    const titles = await again.locator("li.notice h3").allTextContents();
    for (const t of titles) {
      assert.match(t, /^burst \d\d x{200}$/, "every stored notice is whole");
    }
    assert.equal(new Set(titles).size, titles.length, "no notice is duplicated");
    console.log(`  ${titles.length} of ${n} writes were stored before the tab closed`);
    // The device's chain is intact: it can keep writing.
    await postNotice(again, "after the crash");
    await again.reload();
    await again.click('button.space:has-text("Burst")');
    await again.waitForSelector('li.notice h3:has-text("after the crash")');
  } finally {
    await p.close();
    await server.close();
  }
});
