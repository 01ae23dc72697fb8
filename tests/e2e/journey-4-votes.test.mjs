// Journey 4: two devices with no network between them. Alice invites Bob,
// they exchange bundle files (Bob's join travels back to Alice), Alice
// proposes, both vote, and after exchanging files again both show the
// same tally.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, profile, open, createIdentity, createSpace, shot } from "./harness.mjs";

async function tab(page, name) {
  await page.click(`button[role="tab"]:has-text("${name}")`);
}

/** Dismisses every alert so none covers the controls. */
async function clearAlerts(page) {
  while ((await page.locator(".alert button").count()) > 0) {
    await page.locator(".alert button").first().click();
  }
}

async function exportBundle(page) {
  await tab(page, "Sync");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-bundle")]);
  const stream = await download.createReadStream();
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

async function importBundle(page, bytes) {
  // Opening the Sync tab afresh clears the previous import's summary.
  await tab(page, "Notices");
  await tab(page, "Sync");
  await page.setInputFiles("#import-bundle", {
    name: "space.civicbase",
    mimeType: "application/octet-stream",
    buffer: bytes,
  });
  await page.waitForSelector("#import-summary");
  return page.textContent("#import-summary");
}

/** Moves everything `from` has to `to` by a bundle file. */
async function carry(from, to) {
  return importBundle(to, await exportBundle(from));
}

async function tally(page, title) {
  const item = page.locator(`li.proposal:has-text("${title}")`);
  await item.waitFor();
  const read = async (cls) => Number(await item.locator(`.tally-${cls}`).textContent());
  return { yes: await read("yes"), no: await read("no"), abstain: await read("abstain") };
}

async function members(page) {
  await tab(page, "Members");
  return page.locator("table.members tbody tr td:first-child");
}

test("a vote carried by bundle files gives the same tally on both devices", async () => {
  const server = await startServer();
  const alice = await profile("alice-votes");
  const bob = await profile("bob-votes");
  try {
    // Alice creates the space and an invite for a member.
    const a = await open(alice.context, server.url);
    await createIdentity(a, "Alice");
    await createSpace(a, "Street council");
    await tab(a, "Members");
    await a.click("#create-invite");
    await a.waitForSelector("#invite-output");
    const link = await a.inputValue("#invite-output");
    assert.match(link, /#join1-/);

    // Bob opens the link on his device: the join waits for the space's data.
    const b = await open(bob.context, server.url);
    await createIdentity(b, "Bob");
    await b.goto("about:blank");
    await b.goto(link);
    await b.waitForSelector('.alert:has-text("Waiting for the space")', { timeout: 20_000 });
    await clearAlerts(b);
    await b.click("button.space");
    await b.waitForSelector("#space-title");

    // Alice's file brings the space; Bob's join is then made by itself.
    assert.match(await carry(a, b), /Street council/);
    await b.waitForSelector('#space-title:has-text("Street council")');
    const bobSees = await members(b);
    await b.waitForSelector('table.members td:has-text("Bob")');
    assert.equal(await bobSees.count(), 2, "Bob sees Alice and himself");

    // Bob's file brings his join back to Alice.
    await carry(b, a);
    await members(a);
    await a.waitForSelector('table.members td:has-text("Bob")');

    // Alice proposes (quorum 2) and votes yes.
    const title = "Buy a shared generator";
    await clearAlerts(a);
    await tab(a, "Decisions");
    await a.fill("#propose-title", title);
    await a.fill("#propose-body", "The street pays 40 hearts each.");
    await a.fill("#propose-quorum", "2");
    await a.click("#propose-submit");
    await a.waitForSelector(`li.proposal:has-text("${title}")`);
    await clearAlerts(a);
    await a.click(`li.proposal:has-text("${title}") button.vote-yes`);
    await a.waitForSelector(`li.proposal:has-text("${title}") button.vote-yes[aria-pressed="true"]`);
    assert.deepEqual(await tally(a, title), { yes: 1, no: 0, abstain: 0 });

    // Bob receives it, votes no, then changes his mind to abstain.
    await carry(a, b);
    await clearAlerts(b);
    await tab(b, "Decisions");
    assert.deepEqual(await tally(b, title), { yes: 1, no: 0, abstain: 0 });
    await b.click(`li.proposal:has-text("${title}") button.vote-no`);
    await b.waitForSelector(`li.proposal:has-text("${title}") button.vote-no[aria-pressed="true"]`);
    await b.click(`li.proposal:has-text("${title}") button.vote-abstain`);
    await b.waitForSelector(`li.proposal:has-text("${title}") button.vote-abstain[aria-pressed="true"]`);
    assert.deepEqual(await tally(b, title), { yes: 1, no: 0, abstain: 1 });

    // Bob's file brings his vote to Alice: both show the same tally.
    await carry(b, a);
    await tab(a, "Decisions");
    await a.waitForSelector(`li.proposal:has-text("${title}") .tally-abstain:has-text("1")`);
    const fromAlice = await tally(a, title);
    await tab(b, "Decisions");
    const fromBob = await tally(b, title);
    assert.deepEqual(fromAlice, { yes: 1, no: 0, abstain: 1 });
    assert.deepEqual(fromAlice, fromBob, "both devices show the same tally");
    // Each sees their own vote highlighted.
    assert.equal(await a.getAttribute(`li.proposal:has-text("${title}") button.vote-yes`, "aria-pressed"), "true");
    assert.equal(await b.getAttribute(`li.proposal:has-text("${title}") button.vote-abstain`, "aria-pressed"), "true");
    await shot(a, "06-votes-alice");
    await shot(b, "06-votes-bob");
  } finally {
    await alice.close();
    await bob.close();
    await server.close();
  }
});
