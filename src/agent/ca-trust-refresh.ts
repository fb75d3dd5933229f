import { setTimeout as sleep } from "node:timers/promises";
import { CertificatesService } from "../gen/corral/v1/certificates_pb.ts";
import type { Logger } from "../observability/logger.ts";
import { fromConnectError } from "../rpc/connect-errors.ts";
import type { ControllerLink } from "./controller-link.ts";

/**
 * Keeps the node's trust and certificate in step with the cluster's CA: every interval, while connected,
 * it asks the controller for the CAs to trust now (a rotation adds one, then retires the old) and whether
 * to renew now (a rotation, or an admin's `corral certs renew`), and applies the answer — the listener
 * and the next calls use the new bundle, and the new certificate, at once.
 */
export class TrustRefresher implements AsyncDisposable {
  readonly #link: ControllerLink;
  readonly #intervalMs: number;
  readonly #logger: Logger;
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;
  /** When a CA the controller stopped listing is dropped here too. */
  #dropAt: number | undefined;

  constructor(options: { link: ControllerLink; intervalMs: number; logger: Logger }) {
    this.#link = options.link;
    this.#intervalMs = options.intervalMs;
    this.#logger = options.logger;
  }

  start(): void {
    const signal = this.#stop.signal;
    this.#loop ??= (async () => {
      while (!signal.aborted) {
        await sleep(this.#intervalMs, undefined, { signal }).catch(() => undefined);
        if (signal.aborted || this.#link.state.value !== "CONNECTED") continue;
        await this.check().catch((error: unknown) => {
          const corral = fromConnectError(error);
          // A controller from before the CA API answers UNIMPLEMENTED: nothing to follow there.
          if (corral.code !== "UNIMPLEMENTED" && !signal.aborted)
            this.#logger.warn({ err: corral.message }, "could not check the cluster's trust bundle");
        });
      }
    })();
  }

  /** One check: a new bundle is trusted at once; a renewal asked for is done at once. */
  async check(): Promise<void> {
    const answer = await this.#link
      .client(CertificatesService)
      .getTrustBundle({}, { signal: this.#stop.signal });
    const bundle = this.#withGrace(answer.caCertificatesPem);
    const newBundle = bundle !== "" && bundle !== this.#link.trustedCaPem;
    if (!newBundle && !answer.renewNow) return;
    await this.#link.refreshCredentials({ ...(newBundle ? { caPem: bundle } : {}), renew: answer.renewNow });
    this.#logger.info(
      { newBundle, renewed: answer.renewNow, reason: answer.reason, issuingCa: answer.issuingCaFingerprint },
      answer.renewNow
        ? "renewed the node certificate as the controller asked"
        : "trusting the cluster's new CA bundle",
    );
  }

  /**
   * A CA retired at the end of a rotation's overlap is still trusted here for two more checks: each
   * controller ends the overlap by its own clock, and one a little behind still presents the old CA.
   */
  #withGrace(bundle: string): string {
    const listed = new Set(certificatesIn(bundle));
    const dropped = certificatesIn(this.#link.trustedCaPem ?? "").filter((pem) => !listed.has(pem));
    if (bundle === "" || dropped.length === 0) {
      this.#dropAt = undefined;
      return bundle;
    }
    this.#dropAt ??= Date.now() + 2 * this.#intervalMs;
    if (Date.now() >= this.#dropAt) {
      this.#dropAt = undefined;
      return bundle;
    }
    return `${bundle.trimEnd()}\n${dropped.join("\n")}\n`;
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function certificatesIn(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}
