// The dashboard in headless Chromium: it loads against a running suite and every number it
// shows equals what the API answers (read through `clm report ... --json`).
// Environment: CLM (the clm binary), CLM_DASHBOARD_URL, the CLM_*_ADDR of the suite,
// CHROMIUM (default /usr/bin/chromium).

import { execFileSync } from "node:child_process";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const clm = process.env.CLM;
const report = (...args) => JSON.parse(execFileSync(clm, ["report", ...args, "--json"], { encoding: "utf8" }));
const number = (text) => Number(text.replace(/[^0-9.-]/g, ""));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // No sandbox as root; no background traffic on a machine without a network.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.log(`page: ${m.text()}`));
  await page.goto(process.env.CLM_DASHBOARD_URL);
  await page.waitForFunction(() => document.body.dataset.ready !== "false", null, { timeout: 30_000 });
  const state = await page.evaluate(() => document.body.dataset.ready);
  assert.equal(state, "true", `the dashboard failed: ${await page.textContent("#error")}`);
  const shown = Object.fromEntries(await page.$$eval("[data-testid]",
    (nodes) => nodes.map((n) => [n.dataset.testid, n.textContent])));
  let checked = 0;
  const expect = (id, value) => {
    assert.ok(id in shown, `${id} is shown`);
    assert.equal(number(shown[id]), value, id);
    checked += 1;
  };

  const funnel = report("funnel", "page_view", "demo_request", "trial_started", "purchase");
  for (const step of funnel.funnels[0].steps) expect(`funnel-${step.step}`, step.contacts);

  for (const stage of report("stages").stages) expect(`stage-${stage.stage}`, stage.contacts);

  const cohorts = report("cohorts").cohorts.filter((c) => c.cohort_start !== null);
  cohorts.forEach((cohort, i) => {
    expect(`cohort-${i}-size`, cohort.size);
    // Shown as percentages with one decimal.
    cohort.shares.forEach((share, k) => expect(`cohort-${i}-${k}`, Number((share * 100).toFixed(1))));
  });

  for (const segment of report("rfm").segments) expect(`rfm-${segment.segment}`, segment.customers);

  assert.ok(funnel.funnels[0].steps[0].contacts > 0, "the demo tenant has contacts");
  assert.ok(cohorts.length > 0, "the demo tenant has purchase cohorts");
  assert.equal(Object.keys(shown).length, checked, "every number shown was checked");
  console.log(`dashboard: ${checked} numbers shown, each equal to the API's`);
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
