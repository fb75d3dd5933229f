import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import type { Browser, Page } from "playwright-core";
import { HardwareService } from "../../src/gen/corral/v1/hardware_pb.ts";
import { ModelsService } from "../../src/gen/corral/v1/models_pb.ts";
import { Role } from "../../src/gen/corral/v1/tokens_pb.ts";
import { PipelinesService } from "../../src/gen/pipelines_pb.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { CorralProcesses, startAgentProcess } from "../helpers/corral-processes.ts";
import { guideConfig } from "../pipelines/fixtures.ts";
import { artifacts, openNav, shot, signIn, token } from "./browser-steps.ts";
import {
  chromiumArgs,
  chromiumPath,
  ensureWebBuilt,
  exists,
  freePort,
  startWebController,
} from "./web-cluster.ts";

const haveChromium = await exists(chromiumPath);
const skip = haveChromium ? false : `${chromiumPath} is missing (apt-get install chromium)`;

const processes = new CorralProcesses();
let dir = "";
let browser: Browser | undefined;

before(async () => {
  if (!haveChromium) return;
  dir = await mkdtemp(join(tmpdir(), "corral-web-"));
  await mkdir(artifacts, { recursive: true });
  await ensureWebBuilt();
});

after(async () => {
  await browser?.close().catch(() => undefined);
  await processes.killAll();
  if (dir !== "") await rm(dir, { recursive: true, force: true });
});

test("the dashboard signs in, accepts a join request, toggles a pin and follows liveness", {
  skip,
  timeout: 240_000,
}, async () => {
  const { chromium } = await import("playwright-core");
  const ports = { cluster: await freePort(), bridge: await freePort(), web: await freePort() };
  let controller = await startWebController(processes, join(dir, "controller"), ports);

  // Served by the controller: the page, its hashed assets, and a route of the page (SPA fallback).
  const index = await fetch(controller.webUrl);
  assert.equal(index.status, 200);
  assert.match(index.headers.get("content-type") ?? "", /text\/html/);
  const html = await index.text();
  const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
  assert.ok(asset, `index.html names its script: ${html}`);
  const script = await fetch(controller.webUrl + asset);
  assert.equal(script.status, 200);
  assert.match(script.headers.get("cache-control") ?? "", /immutable/);
  assert.equal((await fetch(`${controller.webUrl}/nodes/some-node`)).status, 200);

  const operatorToken = await token(controller, Role.OPERATOR);
  const viewerToken = await token(controller, Role.VIEWER);
  const joinToken = await token(controller, Role.NODE);

  const agent1 = await startAgentProcess(processes, join(dir, "agent-1"), [
    "--name",
    "agent-1",
    "--join",
    controller.cluster,
    "--token",
    joinToken,
  ]);

  browser = await chromium.launch({
    executablePath: chromiumPath,
    // launch() gives chromium a fresh temporary profile of its own.
    args: chromiumArgs,
    timeout: 60_000,
  });
  const operator = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  operator.setDefaultTimeout(30_000);
  try {
    await walkThrough(operator);
  } catch (error) {
    // What the page showed when it failed, for whoever reads the report.
    await shot(operator, "failure").catch(() => undefined);
    throw error;
  }

  async function walkThrough(operator: Page): Promise<void> {
    await operator.goto(controller.webUrl);
    await operator.waitForSelector("#token");
    await shot(operator, "01-sign-in");
    await signIn(operator, controller.webUrl, operatorToken);
    assert.equal(await operator.textContent("[data-testid=role]"), "operator");
    await operator.waitForSelector("[data-testid=link-state]:has-text('live')");
    // The controller's own node and agent-1.
    await operator.waitForSelector(
      ".status-card.status-ready .stat-value:text-matches('^([2-9]|[1-9][0-9]+)$')",
    );
    await shot(operator, "02-overview");

    // A node that asks to join without a token shows up under requests and is accepted from the page.
    await openNav(operator, "Join requests");
    const agent2 = await startAgentProcess(processes, join(dir, "agent-2"), [
      "--name",
      "agent-2",
      "--join",
      controller.cluster,
    ]);
    const acceptButton = 'tr[data-request="agent-2"] button:has-text("Accept")';
    await operator.waitForSelector(acceptButton);
    await shot(operator, "03-join-requests");
    await operator.click(acceptButton);
    await operator.waitForSelector('tr[data-request="agent-2"]', { state: "detached" });

    await openNav(operator, "Nodes");
    await operator.waitForSelector('.vrow[data-node="agent-2"] .status-ready');
    await operator.waitForSelector('.vrow[data-node="agent-1"] .status-ready');
    await shot(operator, "04-nodes");

    // A model placed across the nodes, for the models page.
    const models = plaintextClient(ModelsService, controller.bridgePort);
    await models.addModel({
      name: "llama-test",
      version: "1",
      layerCount: 32,
      sizeBytes: 4_000_000_000n,
      assign: true,
    });

    // GPIO pin 18 on agent-2: its level changes when toggled from the page, on the node itself too.
    await operator.click('.vrow[data-node="agent-2"]');
    const pin18 = '.pin[data-pin="18"]';
    await operator.waitForSelector(pin18);
    const before = await operator.getAttribute(pin18, "data-level");
    const expected = before === "1" ? "0" : "1";
    await operator.click(`${pin18} button`);
    await operator.waitForSelector(`${pin18}[data-level="${expected}"]`);
    const hardware = plaintextClient(HardwareService, controller.bridgePort);
    const read = await hardware.readPin({ nodeId: agent2.nodeId, pin: 18 });
    assert.equal(String(read.pin?.level), expected, "the node's own pin 18 has the level the page shows");
    await operator.waitForSelector("[data-testid=log] .log-line");
    await operator.locator("[data-testid=charts] .uplot").nth(3).waitFor();
    // Let the charts and the log gather a few samples.
    await operator.waitForSelector(
      "[data-testid=charts]:not([data-samples='0']):not([data-samples='1']):not([data-samples='2'])",
    );
    await operator.fill('input[aria-label="command"]', "uptime");
    await operator.click('button:has-text("Run")');
    await operator.waitForSelector("[data-testid=exec-result]");
    // A pipeline of agent-2 appears, is started and stopped from the page, and its run's log opens.
    await plaintextClient(PipelinesService, controller.bridgePort).createPipeline({
      nodeId: agent2.nodeId,
      name: "traffic",
      jsonConfig: guideConfig.replace('"interval": 25', '"interval": 20000'),
    });
    const pipeline = 'tr[data-pipeline="traffic"]';
    await operator.waitForSelector(`${pipeline}[data-state="stopped"]`);
    await operator.click(`${pipeline} button:has-text("Start")`);
    await operator.waitForSelector(`${pipeline}[data-state="running"]`);
    await operator.click(`${pipeline} button:has-text("Logs")`);
    await operator.waitForSelector('select[aria-label="log source"] option[value^="pipeline:"]', {
      state: "attached",
    });
    await shot(operator, "05-node-detail");
    await operator.click(`${pipeline} button:has-text("Stop")`);
    await operator.waitForSelector(`${pipeline}[data-state="stopped"]`);

    await openNav(operator, "Models");
    await operator.waitForSelector('[data-model="llama-test"] .layer-seg');
    await shot(operator, "06-models");
    await openNav(operator, "Members");
    await operator.waitForSelector("[data-testid=members] tbody tr");
    await shot(operator, "07-members");

    // A viewer sees the pin but has no toggle, and the server refuses the write anyway.
    const viewer = await (browser as Browser).newPage({ viewport: { width: 1400, height: 900 } });
    viewer.setDefaultTimeout(30_000);
    await signIn(viewer, controller.webUrl, viewerToken);
    assert.equal(await viewer.textContent("[data-testid=role]"), "viewer");
    await viewer.goto(`${controller.webUrl}/nodes/${encodeURIComponent(agent2.nodeId)}`);
    await viewer.waitForSelector(pin18);
    assert.equal(await viewer.locator(`${pin18} button`).count(), 0, "no toggle for a viewer");
    assert.equal(
      await viewer.locator('.sidebar nav a:has-text("Tokens")').count(),
      0,
      "viewers cannot list tokens",
    );
    await shot(viewer, "08-viewer-node-detail");
    const asViewer = createClient(
      HardwareService,
      createGrpcWebTransport({
        baseUrl: controller.webUrl,
        httpVersion: "1.1",
        interceptors: [
          (next) => (request) => {
            request.header.set("authorization", `Bearer ${viewerToken}`);
            return next(request);
          },
        ],
      }),
    );
    await assert.rejects(
      asViewer.writePin({ nodeId: agent2.nodeId, pin: 18, level: 1 }),
      (error: unknown) => error instanceof ConnectError && error.code === Code.PermissionDenied,
    );
    await viewer.close();

    // Tokens page (operators may list, not create).
    await openNav(operator, "Tokens");
    await operator.waitForSelector("[data-testid=tokens] tbody tr");
    await shot(operator, "09-tokens");

    // An agent that dies goes suspect, then down, on the nodes page.
    await openNav(operator, "Nodes");
    await operator.waitForSelector('.vrow[data-node="agent-1"] .status-ready');
    await agent1.process.stop("SIGKILL");
    await operator.waitForSelector('.vrow[data-node="agent-1"] .status-suspect', { timeout: 30_000 });
    await shot(operator, "10-nodes-suspect");
    await operator.waitForSelector('.vrow[data-node="agent-1"] .status-down', { timeout: 30_000 });
    await shot(operator, "11-nodes-down");
    await openNav(operator, "Overview");
    await operator.waitForSelector("[data-testid=events] li:has-text('agent-1: suspect → down')");
    await shot(operator, "12-overview-events");

    // The page reconnects by itself after a controller restart (same ports, same data).
    await controller.process.stop("SIGTERM").catch((error: Error) => {
      throw new Error(`${error.message}; its stderr: ${controller.process.stderr().slice(-3000)}`);
    });
    await operator.waitForSelector("[data-testid=link-state]:has-text('reconnecting')");
    await shot(operator, "13-controller-gone");
    controller = await startWebController(processes, join(dir, "controller"), ports);
    await operator.waitForSelector("[data-testid=link-state]:has-text('live')", { timeout: 30_000 });
    await openNav(operator, "Nodes");
    await operator.waitForSelector('.vrow[data-node="agent-2"] .status-ready', { timeout: 30_000 });
    await shot(operator, "14-after-restart");
    await agent2.process.stop("SIGTERM").catch(() => undefined);
  }
});
