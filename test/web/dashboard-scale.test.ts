import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Browser } from "playwright-core";
import { eventually } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { chromiumArgs, chromiumPath, ensureWebBuilt, exists } from "./web-cluster.ts";

const artifacts = join(import.meta.dirname, "../../test-artifacts/web");
const haveChromium = await exists(chromiumPath);
const skip = haveChromium ? false : `${chromiumPath} is missing (apt-get install chromium)`;
const fleet = 1_000;

let cluster: TestController | undefined;
let browser: Browser | undefined;

before(async () => {
  if (!haveChromium) return;
  await mkdir(artifacts, { recursive: true });
  await ensureWebBuilt();
});

after(async () => {
  await browser?.close().catch(() => undefined);
  await cluster?.close();
});

test(`the nodes table stays live with ${fleet} nodes changing state`, {
  skip,
  timeout: 240_000,
}, async (t) => {
  // Nodes that never heartbeat: the liveness sweep turns all of them suspect a few seconds after they
  // are registered, a burst of status changes the page must follow.
  cluster = await startTestController({
    liveness: { minInterval: "1s", suspectAfterMissed: 3, downAfter: "10m" },
  });
  const { registry, tokens } = cluster.controller.context;
  for (let i = 0; i < fleet; i += 1) {
    await registry.register({
      name: `node-${String(i).padStart(4, "0")}`,
      address: `10.0.${Math.floor(i / 250)}.${i % 250}:7444`,
      status: "ready",
      metadata: { rack: { kind: "string", value: `r${i % 10}` } },
      resources: { cpuCores: 4, memoryMb: 8192, maxLayers: 8 },
    });
  }
  const { token } = await tokens.create({
    role: "admin",
    ttlMs: 600_000,
    uses: 0,
    description: "scale test",
    createdBy: "test",
    caFingerprint: cluster.controller.ca.fingerprint,
  });

  const { chromium } = await import("playwright-core");
  browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs, timeout: 60_000 });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(60_000);
  await page.goto(`${cluster.controller.webUrl}/nodes`);
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForSelector(`.page h1:has-text("Nodes ${fleet + 1}")`);

  // Only what is on screen is in the DOM.
  const rendered = await page.locator(".vrow[data-node]").count();
  assert.ok(rendered > 5 && rendered < 80, `${rendered} rows in the DOM for ${fleet + 1} nodes`);

  // Frame gaps while the whole fleet turns suspect (measured in the page, reported, not asserted).
  await page.evaluate(`(() => {
    window.__gaps = [];
    let last = performance.now();
    const frame = (now) => { window.__gaps.push(now - last); last = now; if (!window.__stopGaps) requestAnimationFrame(frame); };
    requestAnimationFrame(frame);
  })()`);
  await page.selectOption('select[aria-label="status"]', "suspect");
  await page.waitForSelector(`.page h1:has-text("${fleet} of ${fleet + 1}")`, { timeout: 120_000 });
  const gaps = (await page.evaluate("(window.__stopGaps = true, window.__gaps)")) as number[];
  const sorted = [...gaps].sort((a, b) => a - b);
  t.diagnostic(
    `frames while ${fleet} nodes turned suspect: ${gaps.length}, median ${sorted[Math.floor(sorted.length / 2)]?.toFixed(1)} ms, ` +
      `p99 ${sorted[Math.floor(sorted.length * 0.99)]?.toFixed(1)} ms, worst ${sorted[sorted.length - 1]?.toFixed(1)} ms`,
  );

  // Filters by metadata and sorts by name, descending; the last rows are reachable by scrolling.
  await page.fill('input[aria-label="metadata"]', "rack=r3");
  await page.waitForSelector(`.page h1:has-text("${fleet / 10} of ${fleet + 1}")`);
  await page.click('button.th:has-text("Name")');
  await page.waitForSelector('.vrow[data-node="node-0993"]');
  await page.fill('input[aria-label="metadata"]', "");
  await page.evaluate(`document.querySelector("[data-testid=nodes-scroller]").scrollTop = 1e9`);
  await page.waitForSelector('.vrow[data-node="node-0000"]');
  await page.click('button.th:has-text("Name")');
  await page.evaluate(`document.querySelector("[data-testid=nodes-scroller]").scrollTop = 0`);
  await page.waitForSelector('.vrow[data-node="node-0000"]');
  await eventually(
    async () => ((await page.locator(".vrow[data-node] .status-suspect").count()) > 5 ? true : undefined),
    10_000,
    "suspect rows",
  );
  await page.screenshot({ path: join(artifacts, "15-nodes-1000.png") });
});
