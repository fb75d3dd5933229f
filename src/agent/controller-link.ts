import { setTimeout as sleep } from "node:timers/promises";
import type { DescService } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { formatHostPort, type HostPort, parseHostPort } from "../core/address.ts";
import { parseDuration } from "../core/duration.ts";
import { CorralError } from "../core/errors.ts";
import type { NodeService, Resources } from "../core/node.ts";
import { parseToken } from "../core/tokens.ts";
import { defaults } from "../defaults.ts";
import { metadataToMessage } from "../faces/corral/node-message.ts";
import { AgentService } from "../gen/corral/v1/agent_pb.ts";
import { JoinService } from "../gen/corral/v1/join_pb.ts";
import { NodeService as NodeServiceEnum } from "../gen/corral/v1/nodes_pb.ts";
import type { Logger } from "../observability/logger.ts";
import { fromConnectError } from "../rpc/connect-errors.ts";
import { certificateTimes, createKeyAndCsr } from "../security/node-key.ts";
import { Backoff } from "./backoff.ts";
import { fetchControllerCa, normalizeFingerprint } from "./ca-pin.ts";
import { ConnectionStateCell } from "./connection-state.ts";
import type { IdentityStore, NodeCredentials, NodeIdentity } from "./identity-store.ts";

/** What the node says about itself when it joins and after every (re)connect. */
export interface SelfReport {
  address: string;
  resources: Resources;
  services: NodeService[];
  version: string;
  labels: Record<string, string>;
}

export interface ControllerLinkOptions {
  readonly store: IdentityStore;
  readonly identity: NodeIdentity;
  readonly logger: Logger;
  readonly selfReport: () => Promise<SelfReport>;
  readonly load: () => Promise<{ cpuUsage: number; memoryUsedMb: number }>;
  /** Pin for the controller's CA, from --ca-fingerprint. */
  readonly caFingerprint?: string;
  /** Called with fresh credentials after joining and after each renewal. */
  readonly onCredentials?: (credentials: NodeCredentials) => void;
}

const serviceEnum: Record<NodeService, NodeServiceEnum> = {
  HUB_SERVER: NodeServiceEnum.HUB_SERVER,
  RESOURCES: NodeServiceEnum.RESOURCES,
  LOGGING: NodeServiceEnum.LOGGING,
  PIPELINES: NodeServiceEnum.PIPELINES,
};

/**
 * The agent's tie to its controller: joining (by token or by request), heartbeats on the interval the
 * controller hands out, reconnecting with backoff, certificate renewal at two thirds of its life, and
 * typed clients for calls the agent forwards.
 */
export class ControllerLink implements AsyncDisposable {
  readonly state: ConnectionStateCell;
  readonly #o: ControllerLinkOptions;
  #credentials: NodeCredentials | undefined;
  #controller: HostPort | undefined;
  #loop: Promise<void> | undefined;
  #stop = new AbortController();
  #joining = false;
  #closed = false;

  constructor(options: ControllerLinkOptions) {
    this.#o = options;
    this.state = new ConnectionStateCell("UNAUTHENTICATED");
  }

  get identity(): NodeIdentity {
    return this.#o.identity;
  }

  get authenticated(): boolean {
    return this.state.value !== "UNAUTHENTICATED";
  }

  /** Resumes the membership stored in the data dir, if there is one: no new join request needed. */
  async start(): Promise<void> {
    const credentials = await this.#o.store.loadCredentials();
    const controller = this.#o.identity.controller;
    if (credentials === undefined || controller === undefined) return;
    this.#credentials = credentials;
    this.#controller = parseHostPort(controller.address, "controller address");
    this.#o.onCredentials?.(credentials);
    this.state.set("DISCONNECTED");
    this.#run();
  }

  /**
   * Joins the controller at `address` (NanoPing passes it as `http://host:port`). With a token the
   * controller admits the node at once; without one this waits for an operator's answer.
   */
  async join(address: string, options: { token?: string; signal?: AbortSignal } = {}): Promise<void> {
    if (this.authenticated) throw new CorralError("ALREADY_EXISTS", "Client is already authenticated");
    if (this.#joining)
      throw new CorralError("FAILED_PRECONDITION", "a join request is already waiting for an answer");
    this.#joining = true;
    try {
      const controller = parseHostPort(address, "hub_server_address");
      const tokenPin = options.token ? parseToken(options.token).caFingerprint : undefined;
      const pin =
        this.#o.caFingerprint === undefined ? tokenPin : normalizeFingerprint(this.#o.caFingerprint);
      const ca = await fetchControllerCa(controller, pin);
      if (ca.trustedOnFirstUse) {
        this.#o.logger.warn(
          { caFingerprint: ca.fingerprint },
          `trusting the controller's CA on first use: ${ca.fingerprint} — check it against the controller's output`,
        );
      }
      const key = await createKeyAndCsr(this.#o.identity.name);
      const report = await this.#o.selfReport();
      const joinClient = this.#client(JoinService, controller, { caPem: ca.caPem }, 0);
      if (!options.token) {
        this.#o.logger.info(
          { controller: formatHostPort(controller), keyFingerprint: key.keyFingerprint },
          "join request sent; waiting for an operator to accept it (corral requests ls)",
        );
      }
      const response = await joinClient
        .join(
          {
            nodeId: this.#o.identity.nodeId,
            name: this.#o.identity.name,
            metadata: Object.fromEntries(
              Object.entries(this.#o.identity.metadata).map(([k, v]) => [k, metadataToMessage(v)]),
            ),
            address: report.address,
            csrPem: key.csrPem,
            token: options.token ?? "",
            resources: resourcesMessage(report.resources),
            services: report.services.map((s) => serviceEnum[s]),
            version: report.version,
            labels: report.labels,
          },
          options.signal === undefined ? {} : { signal: options.signal },
        )
        .catch((error: unknown) => {
          throw fromConnectError(error);
        });
      const credentials: NodeCredentials = {
        privateKeyPem: key.privateKeyPem,
        certificatePem: response.certificatePem,
        caPem: response.caCertificatePem,
      };
      this.#o.identity.nodeId = response.nodeId;
      this.#o.identity.controller = { address: formatHostPort(controller), caFingerprint: ca.fingerprint };
      await this.#o.store.saveCredentials(credentials);
      await this.#o.store.save(this.#o.identity);
      this.#credentials = credentials;
      this.#controller = controller;
      this.#o.onCredentials?.(credentials);
      this.#o.logger.info({ nodeId: response.nodeId }, "joined the cluster");
      // The controller just answered: the node is connected (as NanoPing reports it right after joining).
      this.state.set("CONNECTED");
      this.#run();
    } finally {
      this.#joining = false;
    }
  }

  /** A typed client of the controller, with this node's identity. */
  client<S extends DescService>(service: S): Client<S> {
    if (this.#credentials === undefined || this.#controller === undefined || !this.authenticated) {
      throw new CorralError("UNAVAILABLE", "this node is not signed in to a hub; authenticate first");
    }
    return this.#client(service, this.#controller, this.#credentials, 15_000);
  }

  /** Signs out: tells the controller the node leaves, and forgets the credentials. */
  async disconnect(): Promise<void> {
    if (!this.authenticated)
      throw new CorralError("FAILED_PRECONDITION", "this node is not signed in to a hub");
    await this.client(AgentService)
      .leave({ reason: "disconnect requested on the node" })
      .catch((error: unknown) =>
        this.#o.logger.warn({ err: error }, "the controller did not hear that the node leaves"),
      );
    await this.#halt();
    await this.#o.store.clearCredentials();
    delete this.#o.identity.controller;
    await this.#o.store.save(this.#o.identity);
    this.#credentials = undefined;
    this.state.set("UNAUTHENTICATED");
  }

  #run(): void {
    this.#stop = new AbortController();
    const signal = this.#stop.signal;
    this.#loop = this.#heartbeatLoop(signal).catch((error: unknown) => {
      if (!signal.aborted) this.#o.logger.error({ err: error }, "the heartbeat loop stopped");
    });
  }

  async #heartbeatLoop(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(
      parseDuration(defaults.agent.initialBackoff),
      parseDuration(defaults.agent.maxBackoff),
    );
    let delay = 0;
    let reported = false;
    while (!signal.aborted) {
      if (delay > 0) await sleep(delay, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
      try {
        const agent = this.client(AgentService);
        if (!reported) {
          await this.#reportSelf();
          reported = true;
        }
        await this.#renewIfDue();
        const load = await this.#o.load();
        const answer = await agent.heartbeat(
          { cpuUsage: load.cpuUsage, memoryUsedMb: BigInt(Math.round(load.memoryUsedMb)) },
          { signal },
        );
        if (this.state.value !== "CONNECTED") this.#o.logger.info("connected to the controller");
        this.state.set("CONNECTED");
        backoff.reset();
        delay =
          answer.nextIn === undefined
            ? parseDuration(defaults.liveness.minInterval)
            : durationMs(answer.nextIn);
      } catch (error) {
        if (signal.aborted) return;
        const corral = fromConnectError(error);
        if (corral.code === "UNAUTHENTICATED") {
          this.#o.logger.error(
            { err: corral.message },
            "the controller no longer accepts this node; it must join again",
          );
          this.state.set("UNAUTHENTICATED");
          return;
        }
        if (this.state.value === "CONNECTED")
          this.#o.logger.warn({ err: corral.message }, "lost the controller; retrying");
        this.state.set("DISCONNECTED");
        reported = reported && corral.code !== "UNAVAILABLE";
        delay = backoff.next();
      }
    }
  }

  /** After every (re)connect the controller hears the node's current address, resources and services. */
  async #reportSelf(): Promise<void> {
    const report = await this.#o.selfReport();
    await this.client(AgentService).updateSelf({
      fields: ["address", "resources", "services", "version", "labels"],
      address: report.address,
      resources: resourcesMessage(report.resources),
      services: report.services.map((s) => serviceEnum[s]),
      version: report.version,
      labels: report.labels,
    });
  }

  async #renewIfDue(): Promise<void> {
    const credentials = this.#credentials;
    if (credentials === undefined || Date.now() < certificateTimes(credentials.certificatePem).renewAt)
      return;
    const key = await createKeyAndCsr(this.#o.identity.name);
    const renewed = await this.client(JoinService).renewCertificate({ csrPem: key.csrPem });
    const next = { ...credentials, privateKeyPem: key.privateKeyPem, certificatePem: renewed.certificatePem };
    await this.#o.store.saveCredentials(next);
    this.#credentials = next;
    this.#o.onCredentials?.(next);
    this.#o.logger.info("renewed the node certificate");
  }

  /** Pushes name and metadata changes made on the node (NanoPing's setNode) to the controller. */
  async pushIdentity(): Promise<void> {
    if (this.state.value !== "CONNECTED") return;
    await this.client(AgentService)
      .updateSelf({
        fields: ["name", "metadata"],
        name: this.#o.identity.name,
        metadata: Object.fromEntries(
          Object.entries(this.#o.identity.metadata).map(([k, v]) => [k, metadataToMessage(v)]),
        ),
      })
      .catch((error: unknown) => {
        throw fromConnectError(error);
      });
  }

  #client<S extends DescService>(
    service: S,
    controller: HostPort,
    tls: { caPem: string; certificatePem?: string; privateKeyPem?: string },
    timeoutMs: number,
  ): Client<S> {
    const transport = createGrpcTransport({
      baseUrl: `https://${formatHostPort(controller)}`,
      nodeOptions: {
        ca: tls.caPem,
        ...(tls.certificatePem === undefined ? {} : { cert: tls.certificatePem }),
        ...(tls.privateKeyPem === undefined ? {} : { key: tls.privateKeyPem }),
      },
      ...(timeoutMs > 0 ? { defaultTimeoutMs: timeoutMs } : {}),
    });
    return createClient(service, transport);
  }

  async #halt(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#halt();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function resourcesMessage(resources: Resources) {
  return {
    cpuCores: resources.cpuCores,
    memoryMb: BigInt(resources.memoryMb),
    gpus: resources.gpus.map((gpu) => ({ name: gpu.name, memoryMb: BigInt(gpu.memoryMb), uuid: gpu.uuid })),
    maxLayers: resources.maxLayers,
    usedLayers: resources.usedLayers,
    disks: resources.disks.map((disk) => ({ mount: disk.mount, sizeBytes: BigInt(disk.sizeBytes) })),
  };
}
