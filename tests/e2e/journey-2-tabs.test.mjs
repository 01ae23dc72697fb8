// Journey 2: two tabs of one browser profile. An action in one appears in
// the other within a second; the leader tab closes, the other takes over
// and keeps working; nothing is lost.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, profile, open, createIdentity, createSpace, postNotice, shot } from "./harness.mjs";

test("tabs sync within a second and survive the leader closing", async () => {
  const server = await startServer();
  const p = await profile("tabs");
  try {
    const first = await open(p.context, server.url);
    await createIdentity(first, "Alice");
    await createSpace(first, "Neighbourhood");
    const second = await open(p.context, server.url);
    await second.click('button.space:has-text("Neighbourhood")');
    await second.waitForSelector("#space-title");

    for (const [from, to, title] of [
      [first, second, "Generator at the church"],
      [second, first, "Soup kitchen at six"],
    ]) {
      await postNotice(from, title);
      const started = Date.now();
      await to.waitForSelector(`li.notice h3:has-text("${title}")`, { timeout: 1_000 });
      console.log(`  "${title}" reached the other tab in ${Date.now() - started} ms`);
    }
    await first.click('button[role="tab"]:has-text("Sync")');
    await first.waitForSelector("#leader");
    const leaderText = await first.textContent("#leader");
    assert.match(leaderText, /This tab holds/, "the first tab is the leader");
    await shot(first, "04-sync-leader");

    await first.close();
    await second.click('button[role="tab"]:has-text("Sync")');
    const started = Date.now();
    await second.waitForSelector('#leader:has-text("This tab holds")', { timeout: 2_000 });
    console.log(`  leadership moved in ${Date.now() - started} ms`);
    await second.click('button[role="tab"]:has-text("Notices")');
    await postNotice(second, "Written after the leader closed");

    const third = await open(p.context, server.url);
    await third.click('button.space:has-text("Neighbourhood")');
    await third.waitForSelector('li.notice h3:has-text("Written after the leader closed")');
    const titles = (await third.locator("li.notice h3").allTextContents()).sort();
    assert.deepEqual(titles, ["Generator at the church", "Soup kitchen at six", "Written after the leader closed"]);
  } finally {
    await p.close();
    await server.close();
  }
});
