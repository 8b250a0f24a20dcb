// Drives the dashboard of a running `ballast serve` in headless Chromium (playwright-core with
// Debian's /usr/bin/chromium): signs in with a token, reads the SLO tiles, opens a trace,
// follows a waiting turn live while approving it, checks its waterfall, and saves a screenshot.
// Env: BALLAST_URL, BALLAST_TOKEN, BALLAST_SCREENSHOT, BALLAST_EXPECT_MISS, BALLAST_CHROMIUM (default /usr/bin/chromium).
import { createRequire } from "node:module";
const require = createRequire(process.env.BALLAST_NODE_MODULES + "/");
const { chromium } = require("playwright-core");

const url = process.env.BALLAST_URL;
const fail = (msg) => { console.error("FAIL: " + msg); process.exit(1); };
const browser = await chromium.launch({
  executablePath: process.env.BALLAST_CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  page.on("pageerror", (e) => fail("page error: " + e.message));
  await page.goto(url + "/");
  await page.fill("[data-testid=token]", "blst_wrong");
  await page.click("[data-testid=login-button]");
  await page.waitForFunction(() => document.querySelector("[data-testid=login-error]").textContent.includes("failed"));
  await page.fill("[data-testid=token]", process.env.BALLAST_TOKEN);
  await page.click("[data-testid=login-button]");
  await page.waitForSelector("[data-testid=slo-tile]", { timeout: 15000 });
  const tiles = await page.$$eval("[data-testid=slo-tile]", (ts) => ts.map((t) => ({
    sli: t.dataset.sli, value: t.querySelector("[data-testid=slo-value]").textContent,
    budget: t.querySelector("[data-testid=slo-budget]").textContent })));
  if (tiles.length !== 4) fail("expected 4 SLO tiles, got " + JSON.stringify(tiles));
  for (const t of tiles) {
    if (!/^\d+\.\d\d%$/.test(t.value)) fail("tile without a number: " + JSON.stringify(t));
    if (!/error budget left -?\d/.test(t.budget)) fail("tile without a budget: " + JSON.stringify(t));
  }
  const task = tiles.find((t) => t.sli === "task_success");
  // BALLAST_EXPECT_MISS=1: the data has a turn that counts against task success, and the
  // tile must show it (a served demo labels its staged failures and leaves them out).
  if (!task) fail("no task_success tile");
  if (process.env.BALLAST_EXPECT_MISS === "1" && task.value === "100.00%") fail("the data has a miss; task success shows " + task.value);
  console.log("slo tiles", JSON.stringify(tiles));

  // A trace: open a finished turn.
  await page.waitForSelector("[data-testid=turn-row][data-status=terminal]");
  await page.click("[data-testid=turn-row][data-status=terminal]");
  await page.waitForSelector("[data-testid=trace-event]");
  const kinds = await page.$$eval("[data-testid=trace-event] .kind", (ks) => ks.map((k) => k.textContent));
  if (kinds[0] !== "TurnRequested" || kinds[kinds.length - 1] !== "TurnCompleted") fail("trace: " + kinds.join(","));
  console.log("trace", kinds.length, "events");

  // The escalation queue: approve a waiting call.
  const row = await page.waitForSelector("[data-testid=queue-row]:has([data-testid=approve])", { timeout: 15000 });
  const turn = await row.getAttribute("data-turn");
  // Open the waiting turn first: it is followed live over SSE.
  await page.evaluate((id) => showTrace(id), turn);
  await page.waitForFunction(() => !document.querySelector("[data-testid=trace-live]").hidden, null, { timeout: 15000 });
  await row.$eval("[data-testid=approve]", (b) => b.click());
  await page.waitForFunction((id) => !document.querySelector(`[data-testid=queue-row][data-turn="${id}"]`), turn, { timeout: 15000 });
  // The grant and what followed arrive on the open trace without reloading it.
  await page.waitForFunction(() => [...document.querySelectorAll("[data-testid=trace-event] .kind")].some((k) => k.textContent === "ApprovalGranted"), null, { timeout: 15000 });
  await page.waitForFunction(() => [...document.querySelectorAll("[data-testid=trace-event] .kind")].some((k) => k.textContent === "TurnCompleted"), null, { timeout: 15000 });
  // The waterfall: model steps and tool calls as bars, decisions and the approval as marks.
  const lanes = await page.$$eval("[data-testid=wf-row]", (rs) => rs.map((r) => r.getAttribute("data-kind")));
  for (const want of ["model", "tool", "decision", "approval"]) {
    if (!lanes.some((k) => k.split(" ").includes(want))) fail(`waterfall has no ${want} lane: ${lanes.join(",")}`);
  }
  console.log("waterfall", lanes.length, "lanes");
  const granted = await page.$$eval("[data-testid=trace-event]", (es) => es.map((e) => e.textContent).find((t) => t.includes("ApprovalGranted")));
  if (!granted.includes("ops-anna")) fail("the grant does not name the operator: " + granted);
  console.log("approved", turn, "—", granted);
  await page.screenshot({ path: process.env.BALLAST_SCREENSHOT, fullPage: true });
  console.log("screenshot", process.env.BALLAST_SCREENSHOT);
} finally {
  await browser.close();
}
