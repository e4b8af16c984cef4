// The console in a real browser (Debian's chromium, driven by Playwright's
// core), against a gitfaas on the real control plane that tests/api/console.rs
// started. Asserts on what is on the screen (headings, roles, text); fails on
// any console error or Content-Security-Policy violation of the page, on any
// axe-core violation (WCAG 2.x A/AA and best practices), and on a page wider
// than a 390 px phone. Prints one JSON line of what it did (run uids, the
// texts it saw) for the Rust test to check against the API and the cluster.
//
//   CONSOLE_PHASE=main|pushes CONSOLE_URL=http://host:port CONSOLE_TOKEN=…
//   CONSOLE_NODE_MODULES=<dir>/node_modules CONSOLE_OUT=<dir> node console.mjs
// The `pushes` phase asks the test for pushes to the repository through
// files in CONSOLE_ASKS (handshake below).

import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import assert from "node:assert/strict";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const require = createRequire(path.join(env("CONSOLE_NODE_MODULES"), "/"));
const { chromium } = require("playwright-core");
const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const base = env("CONSOLE_URL");
// What hello's manifest holds and its container prints (tests/api/console.rs):
// an attack on a page that would make elements of a log or a manifest.
const MARKUP = '<img src=x onerror="document.title=1">markup stays text';
// Empty for an open API (--auth none).
const token = process.env.CONSOLE_TOKEN ?? "";
// Every secret the test holds: none may appear in a URL or the console.
const secrets = [token, process.env.CONSOLE_K8S_TOKEN].filter(Boolean);
const out = env("CONSOLE_OUT");
const phase = env("CONSOLE_PHASE");
const seen = { phase };
const problems = [];
// Statuses the scenarios provoke on purpose (a wrong token, a refused
// object, a body over the limit, an unknown run or topic, a rejected
// commit): chromium reports each as a
// console error "Failed to load resource", which is the browser's, not the
// page's. Anything else in the console fails the test.
const EXPECTED_STATUSES = new Set([401, 403, 404, 413, 422]);

const step = (what) => process.stderr.write(`console test: ${what}\n`);

const browser = await chromium.launch({
  executablePath: process.env.CONSOLE_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  // launch() gives chromium a fresh user-data directory of its own, removed
  // when the browser closes.
});

async function context(viewport) {
  const ctx = await browser.newContext({ viewport, serviceWorkers: "block" });
  // Runs before the page's own script, through the DevTools protocol (not
  // subject to the page's policy): records every CSP violation.
  await ctx.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  const page = await watched(ctx);
  return { ctx, page };
}

/// A new tab, its console, errors and requests watched.
async function watched(ctx) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(30_000);
  page.on("console", (msg) => {
    const text = msg.text();
    if (secrets.some((t) => text.includes(t))) problems.push(`a token appeared in the console: ${msg.type()}`);
    if (msg.type() !== "error") return;
    const failed = text.match(/^Failed to load resource: the server responded with a status of (\d+)/);
    if (failed && EXPECTED_STATUSES.has(Number(failed[1]))) return;
    problems.push(`console ${msg.type()}: ${text} (${msg.location().url})`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("request", (req) => {
    if (secrets.some((t) => req.url().includes(t))) problems.push(`a token appeared in a URL: ${req.method()}`);
  });
  page.on("response", (res) => {
    if (res.status() >= 500) problems.push(`${res.status()} from ${res.request().method()} ${res.url()}`);
  });
  return page;
}

async function cspViolations(page, where) {
  const csp = await page.evaluate(() => window.__csp);
  for (const v of csp) problems.push(`CSP violation on ${where}: ${v}`);
}

/// axe-core on the page as it is, evaluated through the protocol (as
/// @axe-core/playwright does), so the page's policy stays on.
async function accessible(page, where) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
    }),
  );
  for (const v of result.violations) {
    problems.push(`axe on ${where}: ${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => n.target.join(" ")).slice(0, 5).join(", ")}`);
  }
  seen.axeChecks = (seen.axeChecks ?? 0) + 1;
}

async function fitsTheScreen(page, where) {
  const { scroll, width } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
  }));
  if (scroll > width) problems.push(`${where} is ${scroll} px wide on a ${width} px screen`);
}

async function signIn(page, with_ = token) {
  await page.goto(base + "/");
  assert.match(page.url(), /\/ui\/$/, "/ redirects to the console");
  await page.getByRole("heading", { name: "Sign in to gitfaas" }).waitFor();
  await page.getByLabel("API token").fill(with_);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Runs", exact: true }).waitFor();
}

const heading = (page, name) => page.getByRole("heading", { level: 1, name }).waitFor();
const go = async (page, hash) => {
  await page.evaluate((h) => {
    location.hash = h;
  }, hash);
};

async function main() {
  const { ctx, page } = await context({ width: 1280, height: 800 });

  step("loads, with the policy");
  const index = await page.goto(base + "/ui/");
  const headers = index.headers();
  assert.match(headers["content-security-policy"] ?? "", /default-src 'self'/);
  assert.equal(headers["x-content-type-options"], "nosniff");
  await heading(page, "Sign in to gitfaas");
  await accessible(page, "the token prompt");

  step("a wrong token stays at the prompt, with the API's words");
  await page.getByLabel("API token").fill("not-the-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  const refused = page.getByRole("alert");
  await refused.getByText("unauthorized").waitFor();
  seen.wrongToken = await refused.innerText();
  await heading(page, "Sign in to gitfaas");

  step("signs in");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await heading(page, "Runs");
  assert.equal(await page.evaluate(() => sessionStorage.length), 1, "the token is in the tab's session storage");

  step("keyboard: from a fresh load, the skip link, then the navigation");
  await page.reload();
  await heading(page, "Runs");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Runs");

  step("lists the topics");
  await page.getByRole("navigation", { name: "Console" }).getByRole("link", { name: "Topics" }).click();
  await heading(page, "Topics");
  const topicsTable = page.getByRole("table");
  await topicsTable.getByRole("link", { name: "hello", exact: true }).waitFor();
  for (const t of ["hello", "slow", "refused"]) {
    await topicsTable.getByRole("link", { name: t, exact: true }).waitFor();
  }
  seen.topicsApi = (await page.getByRole("alert").count()) === 0;
  seen.topics = await topicsTable.innerText();
  await accessible(page, "the topics");

  if (seen.topicsApi) {
    step("each topic's last run");
    await topicsTable.getByRole("row", { name: /^dead/ }).getByText("Failed", { exact: true }).waitFor();
    step("a topic's manifests, as the repository has them");
    await topicsTable.getByRole("link", { name: "hello", exact: true }).click();
    await heading(page, "Topic hello");
    await page.getByRole("heading", { name: "Manifests" }).waitFor();
    seen.manifest = await page.locator("figure.manifest pre").first().innerText();
    assert.match(seen.manifest, /kind: Job/);
    // The manifest's markup (hello prints it) is text on the page, no element.
    assert.ok(seen.manifest.includes(MARKUP), "the manifest's markup shown as text");
    assert.equal(await page.locator("figure.manifest img").count(), 0, "no element made of a manifest");
    await accessible(page, "a topic");
  }

  step("dry-runs hello: the rendered Job");
  await go(page, "#/publish/hello");
  await heading(page, "Publish");
  await page.getByLabel("Topic").selectOption("hello");
  await page.getByLabel("Body", { exact: true }).fill("from the browser");
  await page.getByLabel("Idempotency-Key").fill(`console-${Date.now()}`);
  const publishButton = page.getByRole("button", { name: "Publish", exact: true });
  assert.equal(await publishButton.isDisabled(), true, "no publish before a dry run");
  await page.getByRole("button", { name: "Dry run" }).click();
  await page.getByText("Allowed: the policy accepts every object").waitFor();
  const rendered = await page.locator("section.rendered pre").first().innerText();
  const job = JSON.parse(rendered);
  assert.equal(job.kind, "Job");
  seen.dryRunJob = job.metadata.name;
  assert.equal(await publishButton.isDisabled(), false, "publish once the dry run passed");
  await accessible(page, "the publish form with a dry run");

  step("publishes and watches the run reach Succeeded on the real node");
  await publishButton.click();
  await page.waitForURL(/#\/runs\/r-/);
  seen.succeeded = decodeURIComponent(new URL(page.url()).hash.replace("#/runs/", ""));
  await page.locator("#run-status").getByText("Succeeded", { exact: true }).waitFor({ timeout: 240_000 });
  await page.getByRole("table", { name: /Objects the run applied/ }).getByText("Succeeded", { exact: true }).waitFor();
  step("its logs");
  await page.locator("#log").getByText("hello from the console").first().waitFor({ timeout: 60_000 });
  await page.locator("#log").getByText("payload: from the browser").first().waitFor({ timeout: 60_000 });
  await page.getByText(/^Followed .* until the run|^Read /).first().waitFor({ timeout: 60_000 });
  seen.log = await page.locator("#log").innerText();
  assert.ok(seen.log.includes(MARKUP), "a log line's markup shown as text");
  assert.equal(await page.locator("#log img").count(), 0, "no element made of a log line");
  assert.notEqual(await page.title(), "1", "no handler of a log line ran");
  await page.getByRole("heading", { name: "Pipeline" }).waitFor();
  await accessible(page, "a run");
  await page.screenshot({ path: path.join(out, "console-run.png"), fullPage: false });

  step("its pipeline tree, once a step of it publishes the next one");
  seen.child = (await handshake("child", seen.succeeded)).trim();
  await page.reload();
  const tree = page.getByRole("region", { name: "Pipeline" }).locator("ul.tree");
  // The root (the published run) is the first item; its step, one below.
  const childItem = tree.locator("li li", { has: page.getByRole("link", { name: seen.child }) });
  await childItem.getByText("Succeeded", { exact: true }).waitFor();
  await page.getByRole("link", { name: seen.child }).first().click();
  await heading(page, `Run ${seen.child}`);
  await page.getByRole("link", { name: seen.succeeded }).first().waitFor();

  step("cancels a second run, by keyboard");
  await go(page, "#/publish/slow");
  await heading(page, "Publish");
  await page.getByLabel("Topic").selectOption("slow");
  await page.getByRole("button", { name: "Dry run" }).click();
  await page.getByText("Allowed: the policy accepts every object").waitFor();
  await publishButton.click();
  await page.waitForURL(/#\/runs\/r-/);
  seen.cancelled = decodeURIComponent(new URL(page.url()).hash.replace("#/runs/", ""));
  await page.locator("#run-status").getByText("Running", { exact: true }).waitFor({ timeout: 60_000 });
  // Its container has started (its first line followed live), so there is
  // a log for gitfaas to keep when the cancel deletes the Job.
  await page.locator("#log").getByText("started").waitFor({ timeout: 60_000 });
  await page.getByRole("button", { name: "Cancel run" }).focus();
  await page.keyboard.press("Enter");
  const confirm = page.getByRole("button", { name: "Confirm cancel" });
  await confirm.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Confirm cancel");
  await page.keyboard.press("Enter");
  await page.locator("#run-status").getByText("Cancelled", { exact: true }).waitFor();
  step("its logs once its Job is gone: the tail gitfaas kept");
  await page.reload();
  await page.getByText(/^(Read|Followed) the lines gitfaas kept/).waitFor({ timeout: 30_000 }).catch(async (e) => {
    const source = await page.locator(".log-source").innerText().catch(() => "(none)");
    const logs = await page.getByRole("region", { name: "Logs" }).innerText().catch(() => "(none)");
    throw new Error(`${e.message}\nthe logs' section said: ${source} / ${logs}`);
  });
  await page.locator("#log").getByText("started").waitFor();

  step("a 403 from the policy, as the API words it");
  await go(page, "#/publish/refused");
  await heading(page, "Publish");
  await page.getByLabel("Topic").selectOption("refused");
  await page.getByRole("button", { name: "Dry run" }).click();
  const policy = page.getByRole("alert");
  await policy.getByText("policy_violation").waitFor();
  seen.policy = await policy.innerText();
  assert.match(seen.policy, /HTTP 403/);
  assert.equal(await publishButton.isDisabled(), true, "nothing to publish after a refusal");
  await accessible(page, "a refused dry run");

  step("a body over the limit, as the API words it");
  await page.getByLabel("Topic").selectOption("hello");
  await page.getByLabel("Body", { exact: true }).fill("x".repeat(5000));
  await page.getByRole("button", { name: "Dry run" }).click();
  const tooLarge = page.getByRole("alert");
  await tooLarge.getByText("payload_too_large").waitFor();
  seen.tooLarge = await tooLarge.innerText();
  assert.match(seen.tooLarge, /HTTP 413/);

  step("retries a dead letter: the same refusal, as a new run");
  const dead = env("CONSOLE_DEAD_LETTER");
  await go(page, "#/runs?status=Failed");
  await heading(page, "Runs");
  await page.getByRole("table", { name: "Runs, newest first" }).getByRole("link", { name: dead }).click();
  await page.locator("#run-status").getByText("Failed", { exact: true }).waitFor();
  await page.getByRole("button", { name: "Retry run" }).click();
  await page.getByRole("button", { name: "Confirm retry" }).click();
  const retryRefused = page.getByRole("alert");
  await retryRefused.getByText("object_rejected").waitFor();
  seen.retryRefused = await retryRefused.innerText();
  await retryRefused.getByRole("link").click();
  await heading(page, /^Run r-/);
  seen.retried = decodeURIComponent(new URL(page.url()).hash.replace("#/runs/", ""));
  assert.notEqual(seen.retried, dead);
  await page.getByRole("link", { name: dead }).waitFor();
  await accessible(page, "a retried run");

  step("an unknown run is a 404 page");
  await go(page, "#/runs/r-0000000000000000000000000000");
  await heading(page, "Run not found");
  seen.notFound = await page.getByRole("alert").innerText();
  assert.match(seen.notFound, /HTTP 404/);
  await accessible(page, "the 404 page");

  step("the runs, filtered");
  await go(page, "#/runs");
  await heading(page, "Runs");
  const runs = page.getByRole("table", { name: "Runs, newest first" });
  await runs.getByRole("link", { name: seen.succeeded }).waitFor();
  await runs.getByRole("link", { name: seen.cancelled }).waitFor();
  const row = (uid) => runs.getByRole("row", { name: new RegExp(`^${uid}`) });
  await row(seen.succeeded).getByText("Succeeded", { exact: true }).waitFor();
  await row(seen.cancelled).getByText("Cancelled", { exact: true }).waitFor();
  await page.getByLabel("Status").selectOption("Succeeded");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/status=Succeeded/);
  await runs.getByRole("link", { name: seen.succeeded }).waitFor();
  await page.getByRole("table", { name: "Runs, newest first" }).getByText("Cancelled", { exact: true }).waitFor({ state: "detached" });
  await go(page, "#/runs");
  await runs.getByRole("link", { name: seen.cancelled }).waitFor();
  await accessible(page, "the runs");
  await page.screenshot({ path: path.join(out, "console-runs.png"), fullPage: false });

  step("the sync page");
  await go(page, "#/sync");
  await heading(page, "Sync");
  await page.locator("#serving-commit").waitFor();
  await accessible(page, "the sync");
  await cspViolations(page, "the desktop pages");
  await ctx.close();

  step("a phone: 390 × 844");
  const phone = await context({ width: 390, height: 844 });
  await signIn(phone.page);
  await phone.page.getByRole("table", { name: "Runs, newest first" }).waitFor();
  for (const [hash, name] of [
    [`#/runs/${seen.succeeded}`, /^Run r-/],
    ["#/topics", "Topics"],
    ["#/publish/hello", "Publish"],
    ["#/sync", "Sync"],
    ["#/runs", "Runs"],
  ]) {
    await go(phone.page, hash);
    await heading(phone.page, name);
    await phone.page.waitForTimeout(500);
    await fitsTheScreen(phone.page, hash);
    await accessible(phone.page, `${hash} on a phone`);
  }
  await phone.page.screenshot({ path: path.join(out, "console-phone.png"), fullPage: false });
  await cspViolations(phone.page, "the phone pages");
  await phone.ctx.close();
}

/// The runs page over a big store (an open API): how long each page takes
/// to show its 50 runs, from the click to the rows on the screen.
async function history() {
  const { ctx, page } = await context({ width: 1280, height: 800 });
  seen.timings = {};
  const time = async (what, act, shown) => {
    const t = performance.now();
    await act();
    await shown();
    seen.timings[what] = Math.round(performance.now() - t);
  };
  const rows = () => page.getByRole("table", { name: "Runs, newest first" }).locator("tbody tr");
  const fifty = async () => {
    await page.waitForFunction(() => document.querySelectorAll("main tbody tr").length === 50);
  };
  await page.goto(base + "/");
  await heading(page, "Sign in to gitfaas");
  step("an open API: on without a token");
  await time("first page", () => page.getByRole("button", { name: "Continue without a token" }).click(), fifty);
  const first = await rows().first().innerText();
  for (let i = 2; i <= 4; i++) {
    const before = await rows().first().textContent();
    await time(`page ${i}`, () => page.getByRole("link", { name: "Next page" }).click(), async () => {
      await page.waitForFunction((f) => document.querySelector("main tbody tr")?.textContent !== f, before);
      await fifty();
    });
  }
  step("one topic's runs: one in a hundred");
  await page.getByLabel("Topic").fill("history");
  await time("topic filter", () => page.getByRole("button", { name: "Filter" }).click(), async () => {
    await page.waitForURL(/topic=history/);
    await page.waitForFunction(() => [...document.querySelectorAll("main tbody tr")].every((r) => r.children[1]?.textContent === "history") && document.querySelectorAll("main tbody tr").length === 50);
  });
  const before = await rows().first().textContent();
  await time("topic page 2", () => page.getByRole("link", { name: "Next page" }).click(), async () => {
    await page.waitForFunction((f) => document.querySelector("main tbody tr")?.textContent !== f, before);
    await fifty();
  });
  assert.notEqual(first, "");
  await accessible(page, "a page of a big history");
  await cspViolations(page, "the history");
  await ctx.close();
}

/// Asks the Rust test to do `what` (a push to the repository, a publish by
/// another client) and waits for its answer: `<asks>/<what>.ask`, answered by `<asks>/<what>.done`.
async function handshake(what, argument = "") {
  const asks = env("CONSOLE_ASKS");
  fs.writeFileSync(path.join(asks, `${what}.ask`), argument);
  const done = path.join(asks, `${what}.done`);
  for (let i = 0; i < 600; i++) {
    if (fs.existsSync(done)) return fs.readFileSync(done, "utf8");
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the test did not answer ${what}`);
}

async function pushes() {
  step("a Kubernetes service account's token, allowed to read runs only");
  const k8s = await context({ width: 1280, height: 800 });
  await signIn(k8s.page, env("CONSOLE_K8S_TOKEN"));
  await k8s.page.getByRole("table", { name: "Runs, newest first" }).waitFor();
  await go(k8s.page, "#/publish/hello");
  await heading(k8s.page, "Publish");
  await k8s.page.getByLabel("Topic").selectOption("hello");
  await k8s.page.getByRole("button", { name: "Dry run" }).click();
  const denied = k8s.page.getByRole("alert");
  await denied.getByText("access_denied").waitFor();
  seen.accessDenied = await denied.innerText();
  assert.match(seen.accessDenied, /HTTP 403/);
  await cspViolations(k8s.page, "the service account's pages");
  await k8s.ctx.close();

  const { ctx, page } = await context({ width: 1280, height: 800 });
  await signIn(page);

  step("a topic removed by a push while its form is open");
  await go(page, "#/publish/slow");
  await heading(page, "Publish");
  await page.getByLabel("Topic").selectOption("slow");
  await page.getByLabel("Body", { exact: true }).fill("x");
  await handshake("remove-slow");
  // Someone syncs the push in another tab (which asks for the token again:
  // it is kept per tab).
  const other = await watched(ctx);
  await signIn(other);
  await go(other, "#/sync");
  await heading(other, "Sync");
  await other.getByRole("button", { name: "Refresh now" }).click();
  await other.getByText(/^Synced: now serving/).waitFor();
  await other.close();
  await page.getByRole("button", { name: "Dry run" }).click();
  const gone = page.getByRole("alert");
  await gone.getByText("unknown_topic").waitFor();
  seen.removed = await gone.innerText();
  assert.match(seen.removed, /HTTP 404/);
  assert.equal(await page.getByRole("button", { name: "Publish", exact: true }).isDisabled(), true);

  step("a rejected commit after a bad push");
  const rejectedCommit = (await handshake("bad-push")).trim();
  await go(page, "#/sync");
  await heading(page, "Sync");
  await page.getByRole("button", { name: "Refresh now" }).click();
  const alert = page.getByRole("alert");
  await alert.getByText("repository_rejected").waitFor();
  seen.refresh = await alert.innerText();
  await page.getByRole("heading", { name: `Rejected commit ${rejectedCommit}` }).waitFor();
  seen.problems = await page.getByRole("list", { name: "Problems" }).last().innerText();
  await accessible(page, "a rejected commit");
  await cspViolations(page, "the sync page");
  await ctx.close();
}

try {
  if (phase === "main") await main();
  else if (phase === "pushes") await pushes();
  else if (phase === "history") await history();
  else throw new Error(`unknown phase ${phase}`);
} catch (e) {
  problems.push(`${e.stack ?? e}`);
} finally {
  await browser.close();
}
seen.problems_found = problems;
process.stdout.write(JSON.stringify(seen) + "\n");
if (problems.length) {
  process.stderr.write(`console test failed:\n- ${problems.join("\n- ")}\n`);
  process.exit(1);
}
