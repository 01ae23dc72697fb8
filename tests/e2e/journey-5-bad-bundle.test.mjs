// Journey 5: a corrupted or forged bundle is refused with a clear message
// and nothing stored changes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile, mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startServer, profile, open, createIdentity, createSpace, postNotice, shot } from "./harness.mjs";

async function exportBundle(page) {
  await page.click('button[role="tab"]:has-text("Sync")');
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-bundle")]);
  return readFile(await download.path());
}

test("damaged and forged bundles are refused and change nothing", async () => {
  const server = await startServer();
  const alice = await profile("alice-bundle");
  const bob = await profile("bob-bundle");
  const dir = await mkdtemp(join(tmpdir(), "civicbase-bundles-"));
  try {
    const a = await open(alice.context, server.url);
    await createIdentity(a, "Alice");
    await createSpace(a, "Time bank");
    await postNotice(a, "Tool library opens Monday");
    const bytes = await exportBundle(a);

    const b = await open(bob.context, server.url);
    await createIdentity(b, "Bob");
    await createSpace(b, "Bob's street");
    await postNotice(b, "Ladder to lend");
    await b.click('button[role="tab"]:has-text("Sync")');

    const cases = [
      ["damaged", Buffer.from(bytes).map((x, i) => (i === Math.floor(bytes.length / 2) ? x ^ 0x20 : x)), /altered or forged|damaged/],
      ["truncated", bytes.subarray(0, bytes.length - 100), /altered or forged|damaged/],
      ["not a bundle", Buffer.from("PK\u0003\u0004 this is a zip file"), /not a CivicBase bundle/],
    ];
    for (const [name, data, message] of cases) {
      const file = join(dir, `${name.replace(/ /g, "-")}.civicbase`);
      await writeFile(file, data);
      // Clear earlier messages so only this import's answer is on screen.
      while ((await b.locator(".alert button").count()) > 0) {
        await b.locator(".alert button").first().click();
      }
      await b.setInputFiles("#import-bundle", file);
      const alert = b.locator(".alert").first();
      await alert.waitFor();
      assert.match(await alert.textContent(), message, `${name}: the message says what is wrong`);
    }
    await shot(b, "05-bad-bundle");
    // Nothing changed: still one space with one notice.
    await b.click("text=All spaces");
    const spaces = await b.locator("button.space strong").allTextContents();
    assert.deepEqual(spaces, ["Bob's street"]);
    await b.click('button.space:has-text("Bob\'s street")');
    await b.waitForSelector('li.notice h3:has-text("Ladder to lend")');
    assert.deepEqual(await b.locator("li.notice h3").allTextContents(), ["Ladder to lend"]);

    // The intact bundle imports.
    const good = join(dir, "good.civicbase");
    await writeFile(good, bytes);
    await b.click('button[role="tab"]:has-text("Sync")');
    await b.setInputFiles("#import-bundle", good);
    await b.waitForSelector("#import-summary");
    assert.match(await b.textContent("#import-summary"), /Time bank/);
  } finally {
    await alice.close();
    await bob.close();
    await server.close();
  }
});
