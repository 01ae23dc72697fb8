// Journey 1: create an identity, create a space, post a notice, reload:
// the notice is still there (IndexedDB in a real browser).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, profile, open, createIdentity, createSpace, postNotice, shot } from "./harness.mjs";

test("a notice survives a reload", async () => {
  const server = await startServer();
  const alice = await profile("alice");
  try {
    const page = await open(alice.context, server.url);
    await shot(page, "01-onboarding");
    await createIdentity(page, "Alice");
    await shot(page, "02-spaces");
    await createSpace(page, "Crisis staff");
    await postNotice(page, "Drinking water at the school", "Open 08:00-20:00");
    await shot(page, "03-notices");
    await page.reload();
    await page.waitForSelector("main h1");
    await page.click('button.space:has-text("Crisis staff")');
    await page.waitForSelector('li.notice h3:has-text("Drinking water at the school")');
    const titles = await page.locator("li.notice h3").allTextContents();
    assert.deepEqual(titles, ["Drinking water at the school"]);
    const body = await page.locator("li.notice .body").first().textContent();
    assert.equal(body, "Open 08:00-20:00");
  } finally {
    await alice.close();
    await server.close();
  }
});
