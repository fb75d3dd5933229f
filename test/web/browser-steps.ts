import { join } from "node:path";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { Page } from "playwright-core";
import { Role, TokensService } from "../../src/gen/corral/v1/tokens_pb.ts";
import { plaintextClient } from "../helpers/clients.ts";
import type { WebController } from "./web-cluster.ts";

export const artifacts = join(import.meta.dirname, "../../test-artifacts/web");

/** A token of `role` made on the controller's plaintext bridge (a join token allows a few uses). */
export async function token(controller: WebController, role: Role): Promise<string> {
  const tokens = plaintextClient(TokensService, controller.bridgePort);
  const made = await tokens.createToken({
    role,
    ttl: durationFromMs(3_600_000),
    uses: role === Role.NODE ? 5 : 0,
    description: "web test",
  });
  return made.token;
}

export async function signIn(page: Page, url: string, accessToken: string): Promise<void> {
  await page.goto(url);
  await page.fill("#token", accessToken);
  await page.click("button[type=submit]");
  await page.waitForSelector("[data-testid=role]", { timeout: 20_000 });
}

export async function shot(page: Page, name: string): Promise<void> {
  // The whole page in one picture: a viewport as tall as the page (the sidebar is as tall as the viewport).
  await page.evaluate("window.scrollTo(0, 0)");
  const height = Number(await page.evaluate("document.documentElement.scrollHeight"));
  await page.setViewportSize({ width: 1400, height: Math.max(900, Math.min(height, 4000)) });
  await page.screenshot({ path: join(artifacts, `${name}.png`) });
  await page.setViewportSize({ width: 1400, height: 900 });
}

export async function openNav(page: Page, label: string): Promise<void> {
  await page.click(`.sidebar nav a:has-text("${label}")`);
}
