import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { CertificateKind, CertificatesService } from "../../src/gen/corral/v1/certificates_pb.ts";
import { ClustersService } from "../../src/gen/corral/v1/clusters_pb.ts";
import { DeviceKind, DevicesService } from "../../src/gen/corral/v1/devices_pb.ts";
import { HardwareService } from "../../src/gen/corral/v1/hardware_pb.ts";
import { Role } from "../../src/gen/corral/v1/tokens_pb.ts";
import { testClusterPlans, testPlans } from "../clusters/test-plans.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { CorralProcesses, startAgentProcess } from "../helpers/corral-processes.ts";
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
  dir = await mkdtemp(join(tmpdir(), "corral-web-hw-"));
  await mkdir(artifacts, { recursive: true });
  await ensureWebBuilt();
});

after(async () => {
  await browser?.close().catch(() => undefined);
  await processes.killAll();
  if (dir !== "") await rm(dir, { recursive: true, force: true });
});

test("the dashboard shows certificates, devices with live readings, and clusters", {
  skip,
  timeout: 240_000,
}, async () => {
  const { chromium } = await import("playwright-core");
  const ports = { cluster: await freePort(), bridge: await freePort(), web: await freePort() };
  const controller = await startWebController(processes, join(dir, "controller"), ports);
  const adminToken = await token(controller, Role.ADMIN);
  const operatorToken = await token(controller, Role.OPERATOR);
  const viewerToken = await token(controller, Role.VIEWER);
  const joinToken = await token(controller, Role.NODE);
  const agent = await startAgentProcess(processes, join(dir, "agent-hw"), [
    "--name",
    "pi-hw",
    "--join",
    controller.cluster,
    "--token",
    joinToken,
  ]);

  browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs, timeout: 60_000 });
  const pages: Page[] = [];
  const open = async (accessToken: string): Promise<Page> => {
    const page = await (browser as Browser).newPage({ viewport: { width: 1400, height: 900 } });
    page.setDefaultTimeout(30_000);
    pages.push(page);
    await signIn(page, controller.webUrl, accessToken);
    await page.waitForSelector("[data-testid=link-state]:has-text('live')");
    return page;
  };
  try {
    // Certificates: the agent's node certificate is listed, with a revoke button for an admin.
    const admin = await open(adminToken);
    await openNav(admin, "Certificates");
    const agentCert = 'tr[data-kind="node"][data-node="pi-hw"]';
    await admin.waitForSelector(agentCert);
    await admin.waitForSelector("[data-testid=cas] tbody tr");
    await admin.waitForSelector("[data-testid=cert-stats]");
    assert.equal(await admin.locator(`${agentCert} button:has-text("Revoke")`).count(), 1);
    const listed = await plaintextClient(CertificatesService, controller.bridgePort).listCertificates({
      kind: CertificateKind.NODE,
      node: "pi-hw",
      currentOnly: true,
    });
    const serial = listed.certificates[0]?.serial ?? "";
    assert.ok(serial !== "", "the controller lists the agent's certificate");
    assert.equal(
      await admin.getAttribute(agentCert, "data-serial"),
      serial,
      "the page shows that certificate",
    );
    await shot(admin, "20-certificates-admin");

    // A viewer sees the same inventory and no revoke button anywhere.
    const viewer = await open(viewerToken);
    await openNav(viewer, "Certificates");
    await viewer.waitForSelector(agentCert);
    assert.equal(await viewer.locator('[data-testid=certificates] button:has-text("Revoke")').count(), 0);
    await shot(viewer, "21-certificates-viewer");

    // Devices: an analog input added from the page draws live readings on its chart.
    const operator = await open(operatorToken);
    await openNav(operator, "Devices");
    await operator.waitForSelector("[data-testid=add-device]");
    await operator.fill('input[aria-label="device name"]', "wave");
    await operator.selectOption('select[aria-label="device node"]', { label: "pi-hw" });
    await operator.selectOption('select[aria-label="device kind"]', { label: "analog" });
    await operator.fill('input[aria-label="device channel"]', "1");
    await operator.click("[data-testid=add-device] button[type=submit]");
    await operator.waitForSelector('tr[data-device="wave"]');
    const stored = await plaintextClient(DevicesService, controller.bridgePort).getDevice({ name: "wave" });
    assert.equal(stored.device?.nodeId, agent.nodeId, "the device belongs to the chosen node");
    await operator.selectOption('select[aria-label="sample rate"]', "10");
    // Readings keep arriving: the chart holds more and more of them.
    await operator.waitForSelector('[data-testid=device-chart][data-device="wave"] .uplot');
    const chartReadings = async () =>
      Number(await operator.getAttribute("[data-testid=device-chart]", "data-readings"));
    const seen = await eventually(
      async () => ((await chartReadings()) >= 15 ? chartReadings() : undefined),
      30_000,
      "15 readings on the chart",
    );
    await eventually(
      async () => ((await chartReadings()) > seen ? true : undefined),
      30_000,
      "more readings",
    );
    await operator.click('tr[data-device="wave"] button:has-text("Read")');
    await operator.waitForSelector('tr[data-device="wave"] [data-testid=last-reading]:not(:text-is("-"))');
    await shot(operator, "22-devices");
    await openNav(viewer, "Devices");
    await viewer.waitForSelector('tr[data-device="wave"]');
    assert.equal(await viewer.locator("[data-testid=add-device]").count(), 0, "a viewer cannot add devices");
    assert.equal(await viewer.locator('tr[data-device="wave"] button:has-text("Remove")').count(), 0);

    // A digital output written from the page drives the node's line.
    await plaintextClient(DevicesService, controller.bridgePort).addDevice({
      device: { name: "led", nodeId: agent.nodeId, kind: DeviceKind.DIGITAL, pin: 22 },
    });
    await openNav(operator, "Overview");
    await openNav(operator, "Devices");
    operator.once("dialog", (dialog) => void dialog.accept("1"));
    await operator.click('tr[data-device="led"] button:has-text("Write")');
    await operator.waitForSelector('tr[data-device="led"] [data-testid=last-reading]:text-is("1")');
    const line = await plaintextClient(HardwareService, controller.bridgePort).readPin({
      nodeId: agent.nodeId,
      pin: 22,
    });
    assert.equal(line.pin?.level, 1, "the node's pin 22 is high");

    // Node page: the PWM state of a line that carries a signal, and an operator configures a pin.
    await plaintextClient(HardwareService, controller.bridgePort).setPwm({
      nodeId: agent.nodeId,
      pin: 12,
      enabled: true,
      frequencyHz: 50,
      dutyCycle: 0.25,
    });
    await operator.goto(`${controller.webUrl}/nodes/${encodeURIComponent(agent.nodeId)}`);
    await operator.waitForSelector("[data-testid=pin-config]");
    await operator.waitForSelector('.pin[data-pin="12"] [data-testid=pin-pwm]:has-text("PWM 25% · 50 Hz")');
    await operator.selectOption('select[aria-label="pin to configure"]', "17");
    await operator.selectOption('select[aria-label="pin direction"]', { label: "input" });
    await operator.selectOption('select[aria-label="pin pull"]', { label: "up" });
    await operator.click('[data-testid=pin-config] button:has-text("Apply")');
    await operator.waitForSelector('.pin[data-pin="17"]:has-text("pull-up")');
    await shot(operator, "23-node-pin-config");

    // Clusters: one created through the API shows with its members and roles, and is provisioned
    // from the page with plans of local commands standing in for k3s.
    const plansDir = join(dir, "controller", "data", "plans");
    await mkdir(plansDir, { recursive: true });
    for (const [file, text] of Object.entries(testPlans)) await writeFile(join(plansDir, file), text);
    const k3sDir = join(dir, "k3s");
    await mkdir(k3sDir);
    await plaintextClient(ClustersService, controller.bridgePort).createCluster({
      name: "edge",
      server: "pi-hw",
      agents: [],
      plans: testClusterPlans,
      parameters: { dir: k3sDir },
    });
    await openNav(operator, "Clusters");
    const edge = '[data-cluster="edge"]';
    await operator.waitForSelector(`${edge}[data-state="new"] tr[data-member="pi-hw"]:has-text("server")`);
    await operator.click(`${edge} button:text-is("Provision")`);
    // No reload: the job's events move the card on.
    await operator.waitForSelector(
      `${edge}[data-state="ready"] tr[data-member="pi-hw"][data-state="provisioned"]`,
    );
    await shot(operator, "24-clusters");
    await openNav(viewer, "Clusters");
    await viewer.waitForSelector(`${edge}[data-state="ready"]`);
    await viewer.waitForSelector(`${edge} tr[data-member="pi-hw"]`);
    assert.equal(await viewer.locator(`${edge} button`).count(), 0, "a viewer gets no cluster buttons");
    operator.once("dialog", (dialog) => void dialog.accept());
    await operator.click(`${edge} button:text-is("Deprovision")`);
    await operator.waitForSelector(`${edge}[data-state="deprovisioned"]`);
    await shot(operator, "27-clusters-deprovisioned");
    assert.deepEqual(await readdir(k3sDir), [], "the uninstall plan removed what the install wrote");

    // A CA rotation under way: both CAs listed, and the page says until when both are trusted.
    await plaintextClient(CertificatesService, controller.bridgePort).rotateCa({
      overlap: { seconds: 3600n },
    });
    await openNav(admin, "Devices");
    await openNav(admin, "Certificates");
    await admin.waitForSelector("[data-testid=ca-rotation]");
    assert.equal(await admin.locator("[data-testid=cas] tbody tr").count(), 2, "old and new CA trusted");
    await shot(admin, "26-certificates-rotation");

    await openNav(admin, "Overview");
    await admin.waitForSelector("[data-testid=status-counts]");
    await admin.waitForSelector("[data-testid=cert-warnings]:has-text('CA rotation')");
    await shot(admin, "25-overview-admin");
  } catch (error) {
    for (const [i, page] of pages.entries()) await shot(page, `failure-hw-${i}`).catch(() => undefined);
    throw error;
  } finally {
    await agent.process.stop("SIGTERM").catch(() => undefined);
  }
});
