import { formatHostPort } from "../base/address.ts";
import type { TokenRegistry } from "../core/admission/tokens.ts";
import type { Logger } from "../observability/logger.ts";
import type { CertificateAuthority } from "../security/certificate-authority.ts";
import { corralVersion } from "../version.ts";
import type { ControllerConfig } from "./config.ts";
import { InstallPackageSource } from "./install-package.ts";
import { installCommand, installRoutes } from "./install-routes.ts";
import type { WebListener } from "./web-listener.ts";

type WebAddress = { readonly url: string; readonly certificatePem?: string };

/**
 * The one-line join: the routes the web listener serves (`/install.sh`, `/corral.tgz`, `/ca.pem`) and the
 * `curl … | sh` line `corral token create` prints. The line names the web listener's address as nodes
 * reach it, known only once that listener is up (`listening`).
 */
export class JoinLine {
  #web: WebAddress | undefined;

  /** The line up to `| sh -s -- --token …`; undefined until the web listener is up. */
  command(): string | undefined {
    return this.#web === undefined ? undefined : installCommand(this.#web);
  }

  routes(parts: {
    readonly config: ControllerConfig;
    readonly ca: CertificateAuthority;
    readonly tokens: TokenRegistry;
    readonly advertiseAddress: string;
    readonly logger: Logger;
  }): ReturnType<typeof installRoutes> {
    const { config, ca, tokens } = parts;
    return installRoutes({
      packages: new InstallPackageSource({
        ...(config.installPackage === undefined ? {} : { configured: config.installPackage }),
        dataDir: config.dataDir,
        version: corralVersion,
      }),
      caPem: () => ca.presentingCertificatePem,
      clusterAddress: parts.advertiseAddress,
      controllerName: config.nodeName,
      version: corralVersion,
      checkNodeToken: async (token) => {
        await tokens.check(token, "node");
      },
      web: () => this.#web ?? { url: "" },
      logger: parts.logger,
    });
  }

  /** Nodes reach the web listener where they reach the cluster listener (the advertised host). */
  listening(web: WebListener, advertiseHost: string, certificatePem: string): void {
    const webPort = Number(web.address.slice(web.address.lastIndexOf(":") + 1));
    this.#web = web.url.startsWith("https:")
      ? { url: `https://${formatHostPort({ host: advertiseHost, port: webPort })}`, certificatePem }
      : { url: web.url };
  }
}
