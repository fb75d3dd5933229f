import { setTimeout as sleep } from "node:timers/promises";
import type { DescService, MessageInitShape } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { formatHostPort, type HostPort, parseHostPort } from "../base/address.ts";
import { Backoff } from "../base/backoff.ts";
import { parseDuration } from "../base/duration.ts";
import { CorralError } from "../base/errors.ts";
import { parseToken } from "../core/admission/tokens.ts";
import type { NodeService, Resources } from "../core/nodes/node.ts";
import { defaults } from "../defaults.ts";
import {
  AgentService,
  type HeartbeatRequestSchema,
  type HeartbeatResponse,
} from "../gen/corral/v1/agent_pb.ts";
import { JoinService } from "../gen/corral/v1/join_pb.ts";
import { NodeService as NodeServiceEnum } from "../gen/corral/v1/nodes_pb.ts";
import type { Logger } from "../observability/logger.ts";
import { fromConnectError } from "../rpc/connect-errors.ts";
import { FailoverTransport, parseAddressList } from "../rpc/failover-transport.ts";
import { certificateTimes, createKeyAndCsr } from "../security/node-key.ts";
import { metadataToMessage } from "../wire/corral-node.ts";
import { fetchControllerCa, normalizeFingerprint } from "./ca-pin.ts";
import { ConnectionStateCell } from "./connection-state.ts";
import { HeartbeatStream } from "./heartbeat-stream.ts";
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

/** How long a stopping agent waits for the controller to end its heartbeat stream cleanly. */
const goodbyeTimeoutMs = 1_000;

/** Controllers taken from heartbeat answers at most (the list comes from the network). */
const maxLearnedControllers = 32;

/** Calls of the link itself that may be sent again to another controller after an UNAVAILABLE. */
const repeatableCalls = new Set(["Heartbeat", "UpdateSelf", "RenewCertificate", "Leave"]);
const readCall = /^(Get|List|Watch|Stream|Sync|Describe|Check|Ping|get|list|watch|stream)/;

/**
 * The agent's tie to its controllers: joining (by token or by request), heartbeats on the interval the
 * controller hands out, reconnecting with backoff, certificate renewal at two thirds of its life, and
 * typed clients for calls the agent forwards. With several controllers (`--join a,b,c`) calls go to one
 * of them and move to the next when it cannot be reached; the heartbeat loop re-reports the node to
 * whichever controller it lands on.
 */
export class ControllerLink implements AsyncDisposable {
  readonly state: ConnectionStateCell;
  readonly #o: ControllerLinkOptions;
  #credentials: NodeCredentials | undefined;
  #controllers: HostPort[] = [];
  #transport: { for: NodeCredentials; addresses: string; transport: FailoverTransport } | undefined;
  #loop: Promise<void> | undefined;
  #heartbeats: HeartbeatStream | undefined;
  /** Cuts the wait for the next heartbeat short: the stream dropped, and the controller gives it seconds. */
  #wake = new AbortController();
  #leaving = false;
  /**
   * Controllers that answered UNIMPLEMENTED to HeartbeatStream (older versions), and until when they get
   * heartbeats by call (one stream max age: an upgraded controller is found again).
   */
  readonly #callsOnly = new Map<string, number>();
  #stop = new AbortController();
  #joining = false;
  /** setNode changed name or metadata while the controller could not be told. */
  #identityPending = false;
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
    this.#controllers = withLearned(givenControllers(controller), controller.learned);
    this.#o.onCredentials?.(credentials);
    this.state.set("DISCONNECTED");
    this.#run();
  }

  /** The controller calls go to now (host:port), once joined. */
  get controllerAddress(): string | undefined {
    if (this.#controllers.length === 0) return undefined;
    return this.#transport?.transport.current ?? formatHostPort(this.#controllers[0] as HostPort);
  }

  /** Every controller this node may talk to, in the order they are tried. */
  get controllerAddresses(): string[] {
    return this.#controllers.map(formatHostPort);
  }

  /**
   * Replaces the list of controllers of a node that has joined (e.g. `corral up --join a,b,c` on a
   * restart), and keeps it in the data dir.
   */
  async setControllerAddresses(list: string): Promise<void> {
    const controllers = parseAddressList(list, "--join");
    const stored = this.#o.identity.controller;
    if (stored === undefined) return;
    const addresses = controllers.map(formatHostPort);
    if (addresses.join(",") === givenControllers(stored).map(formatHostPort).join(",")) return;
    this.#controllers = withLearned(controllers, stored.learned);
    this.#transport = undefined;
    this.#o.identity.controller = { ...stored, address: addresses[0] as string, addresses };
    await this.#o.store.save(this.#o.identity);
  }

  /**
   * Takes in the controllers a heartbeat answer named: they are tried after the ones given with
   * --join, and kept in the data dir so that a restart finds them even if every given one is gone.
   * Addresses that do not parse are left out (the list comes from the network).
   */
  async #learnControllers(advertised: readonly string[]): Promise<void> {
    const stored = this.#o.identity.controller;
    if (stored === undefined) return;
    const learned = [...new Set(validAddresses(advertised).map(formatHostPort))]
      .sort()
      .slice(0, maxLearnedControllers);
    if (learned.join(",") === (stored.learned ?? []).join(",")) return;
    const controllers = withLearned(givenControllers(stored), learned);
    if (controllers.map(formatHostPort).join(",") !== this.controllerAddresses.join(",")) {
      this.#o.logger.info(
        { controllers: controllers.map(formatHostPort) },
        "the cluster's controllers changed",
      );
      this.#controllers = controllers;
    }
    this.#o.identity.controller = { ...stored, learned };
    await this.#o.store.save(this.#o.identity);
  }

  /**
   * Joins the controller at `address` (NanoPing passes it as `http://host:port`), or the first one of a
   * list `a,b,c` that answers. With a token the controller admits the node at once; without one this
   * waits for an operator's answer.
   */
  async join(address: string, options: { token?: string; signal?: AbortSignal } = {}): Promise<void> {
    if (this.authenticated) throw new CorralError("ALREADY_EXISTS", "Client is already authenticated");
    if (this.#joining)
      throw new CorralError("FAILED_PRECONDITION", "a join request is already waiting for an answer");
    this.#joining = true;
    try {
      const controllers = parseAddressList(address, "hub_server_address");
      const tokenPin = options.token ? parseToken(options.token).caFingerprint : undefined;
      const pin =
        this.#o.caFingerprint === undefined ? tokenPin : normalizeFingerprint(this.#o.caFingerprint);
      const { controller, ca } = await firstAnswering(controllers, pin);
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
      this.#o.identity.controller = {
        address: formatHostPort(controller),
        addresses: controllers.map(formatHostPort),
        caFingerprint: ca.fingerprint,
      };
      await this.#o.store.saveCredentials(credentials);
      await this.#o.store.save(this.#o.identity);
      this.#credentials = credentials;
      // The controller that admitted the node first, then the others in the order given.
      this.#controllers = [
        controller,
        ...controllers.filter((c) => formatHostPort(c) !== formatHostPort(controller)),
      ];
      this.#transport = undefined;
      this.#o.onCredentials?.(credentials);
      this.#o.logger.info({ nodeId: response.nodeId }, "joined the cluster");
      // The controller just answered: the node is connected (as NanoPing reports it right after joining).
      this.state.set("CONNECTED");
      this.#run();
    } finally {
      this.#joining = false;
    }
  }

  /** A typed client of the controllers, with this node's identity; calls fail over between them. */
  client<S extends DescService>(service: S): Client<S> {
    return createClient(service, this.#failover());
  }

  #failover(): FailoverTransport {
    const credentials = this.#credentials;
    if (credentials === undefined || this.#controllers.length === 0 || !this.authenticated) {
      throw new CorralError("UNAVAILABLE", "this node is not signed in to a hub; authenticate first");
    }
    const addresses = this.controllerAddresses.join(",");
    const cached = this.#transport;
    if (cached !== undefined && cached.for === credentials && cached.addresses === addresses)
      return cached.transport;
    const transport = new FailoverTransport({
      targets: this.#controllers.map((controller) => ({
        address: formatHostPort(controller),
        transport: this.#transportTo(controller, credentials, 15_000),
      })),
      idempotent: (method) => repeatableCalls.has(method) || readCall.test(method),
      onFailover: (from, to, error) =>
        this.#o.logger.warn({ from, to, err: error.rawMessage }, "controller unreachable; trying the next"),
    });
    // Keep the controller that answered last (across renewals of the certificate, and when the list grows).
    if (cached !== undefined && transport.addresses.includes(cached.transport.current))
      while (transport.current !== cached.transport.current) transport.rotate();
    this.#transport = { for: credentials, addresses, transport };
    return transport;
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
    let onStream = false;
    while (!signal.aborted) {
      if (delay > 0) {
        if (this.#wake.signal.aborted) this.#wake = new AbortController();
        await sleep(delay, undefined, { signal: AbortSignal.any([signal, this.#wake.signal]) }).catch(
          () => undefined,
        );
      }
      if (signal.aborted) return;
      try {
        if (!reported) {
          await this.#reportSelf();
          reported = true;
        }
        await this.#renewIfDue();
        const load = await this.#o.load();
        const before = this.controllerAddress;
        const answer = await this.#beat(
          { cpuUsage: load.cpuUsage, memoryUsedMb: BigInt(Math.round(load.memoryUsedMb)) },
          signal,
          onStream,
        );
        onStream = true;
        if (answer.controllers.length > 0)
          await this.#learnControllers(answer.controllers).catch((error: unknown) =>
            this.#o.logger.warn({ err: error }, "could not keep the cluster's list of controllers"),
          );
        if (this.controllerAddress !== before) {
          // Landed on another controller: it hears the node's address, resources and services again.
          reported = false;
          delay = 0;
          continue;
        }
        if (this.state.value !== "CONNECTED")
          this.#o.logger.info({ controller: this.controllerAddress }, "connected to the controller");
        this.state.set("CONNECTED");
        if (this.#identityPending) {
          this.#identityPending = false;
          await this.#sendIdentity().catch((error: unknown) => {
            this.#identityPending = true;
            this.#o.logger.warn({ err: error }, "could not send the node's name and metadata; retrying");
          });
        }
        backoff.reset();
        delay =
          answer.nextIn === undefined
            ? parseDuration(defaults.liveness.minInterval)
            : durationMs(answer.nextIn);
      } catch (error) {
        onStream = false;
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
        const before = this.controllerAddress;
        // A controller that hangs answers nothing: move on, as for one that refuses.
        if (corral.code === "DEADLINE_EXCEEDED" || corral.code === "UNAVAILABLE")
          this.#transport?.transport.rotate();
        if (this.state.value === "CONNECTED")
          this.#o.logger.warn(
            { err: corral.message, controller: before, next: this.controllerAddress },
            "lost the controller; retrying",
          );
        this.state.set("DISCONNECTED");
        reported = reported && corral.code !== "UNAVAILABLE" && corral.code !== "DEADLINE_EXCEEDED";
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

  /** The CA bundle this node trusts now (what its listener and its calls check peers against). */
  get trustedCaPem(): string | undefined {
    return this.#credentials?.caPem;
  }

  /**
   * Follows the cluster's CA outside the two-thirds schedule: a new trust bundle (a rotation) is used at
   * once, then, when asked, the certificate is renewed (onto the new CA, or because an admin asked).
   */
  async refreshCredentials(update: { caPem?: string; renew?: boolean }): Promise<void> {
    const credentials = this.#credentials;
    if (credentials === undefined) return;
    let next = update.caPem === undefined ? credentials : { ...credentials, caPem: update.caPem };
    this.#credentials = next;
    if (update.renew === true) {
      const key = await createKeyAndCsr(this.#o.identity.name);
      const renewed = await this.client(JoinService).renewCertificate({ csrPem: key.csrPem });
      next = { ...next, privateKeyPem: key.privateKeyPem, certificatePem: renewed.certificatePem };
    }
    await this.#o.store.saveCredentials(next);
    this.#credentials = next;
    this.#o.onCredentials?.(next);
  }

  /**
   * Pushes name and metadata changes made on the node (NanoPing's setNode) to the controller. While
   * not connected they are kept for the next heartbeat that gets through, so the controller (and so
   * every other node's getNode/getNodes) never keeps an older answer than the node gives itself.
   */
  async pushIdentity(): Promise<void> {
    if (this.state.value !== "CONNECTED") {
      this.#identityPending = true;
      this.#o.logger.info("not connected: the name and metadata go to the controller once it answers");
      return;
    }
    this.#identityPending = false;
    await this.#sendIdentity().catch((error: unknown) => {
      this.#identityPending = true;
      throw error;
    });
  }

  async #sendIdentity(): Promise<void> {
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
    return createClient(service, this.#transportTo(controller, tls, timeoutMs));
  }

  #transportTo(
    controller: HostPort,
    tls: { caPem: string; certificatePem?: string; privateKeyPem?: string },
    timeoutMs: number,
  ): Transport {
    return createGrpcTransport({
      baseUrl: `https://${formatHostPort(controller)}`,
      nodeOptions: {
        ca: tls.caPem,
        ...(tls.certificatePem === undefined ? {} : { cert: tls.certificatePem }),
        ...(tls.privateKeyPem === undefined ? {} : { key: tls.privateKeyPem }),
      },
      ...(timeoutMs > 0 ? { defaultTimeoutMs: timeoutMs } : {}),
    });
  }

  /**
   * One heartbeat. After one went through by call, the next go on a stream to the same controller (a
   * message instead of a call each); after any failure, or when the controller ends the stream, the
   * next is a call again, which fails over between controllers as every call does.
   */
  async #beat(
    request: MessageInitShape<typeof HeartbeatRequestSchema>,
    signal: AbortSignal,
    onStream: boolean,
  ): Promise<HeartbeatResponse> {
    const transport = this.#failover();
    const address = transport.current;
    if (onStream && !this.#leaving && (this.#callsOnly.get(address) ?? 0) <= Date.now()) {
      let stream = this.#heartbeats;
      if (
        stream === undefined ||
        stream.closed ||
        stream.address !== address ||
        stream.opener !== transport
      ) {
        stream?.close();
        stream = new HeartbeatStream(
          createClient(AgentService, transport),
          { address, opener: transport },
          signal,
          () => this.#wake.abort(),
        );
        this.#heartbeats = stream;
      }
      try {
        const answer = await stream.send(request, parseDuration(defaults.heartbeatStream.answerTimeout));
        if (answer !== undefined) return answer;
        // The controller ended the stream (draining, or the stream's max age): the next heartbeat, a
        // call, goes to a controller picked at random (it fails over from there if that one is away).
        transport.spread();
      } catch (error) {
        if (fromConnectError(error).code !== "UNIMPLEMENTED") throw error;
        this.#o.logger.info({ controller: address }, "the controller takes heartbeats by call only");
        this.#callsOnly.set(address, Date.now() + parseDuration(defaults.heartbeatStream.maxAge));
      }
    }
    return createClient(AgentService, transport).heartbeat(request, { signal });
  }

  async #halt(): Promise<void> {
    // Goodbye before the loop is cancelled: a cancelled stream reads to the controller as a dead node.
    this.#leaving = true;
    const stream = this.#heartbeats;
    this.#heartbeats = undefined;
    await stream?.goodbye(goodbyeTimeoutMs);
    this.#stop.abort();
    await this.#loop;
    // A beat in flight during the goodbye may have fallen back to a call; nothing else opens a stream.
    (this.#heartbeats as HeartbeatStream | undefined)?.close();
    this.#heartbeats = undefined;
    this.#leaving = false;
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

/** The controllers given, then the learned ones not among them. */
function withLearned(given: readonly HostPort[], learned: readonly string[] | undefined): HostPort[] {
  const seen = new Set(given.map(formatHostPort));
  // The data dir may have been edited by hand: a bad entry is skipped, not fatal.
  const extra = validAddresses(learned ?? []).filter((address) => !seen.has(formatHostPort(address)));
  return [...given, ...extra];
}

/** The controllers the operator gave (`--join a,b,c`), as kept in the data dir. */
function givenControllers(stored: { address: string; addresses?: string[] }): HostPort[] {
  return parseAddressList((stored.addresses ?? [stored.address]).join(","), "controller addresses");
}

/** The entries of a list from the network or a hand-edited file that parse; the others are left out. */
function validAddresses(list: readonly string[]): HostPort[] {
  return list.flatMap((address) => {
    try {
      return [parseHostPort(address, "controllers")];
    } catch {
      return [];
    }
  });
}

/** The first controller of the list whose CA can be fetched (and matches the pin, when there is one). */
async function firstAnswering(
  controllers: readonly HostPort[],
  pin: string | undefined,
): Promise<{ controller: HostPort; ca: Awaited<ReturnType<typeof fetchControllerCa>> }> {
  let lastError: unknown;
  for (const controller of controllers) {
    try {
      return { controller, ca: await fetchControllerCa(controller, pin) };
    } catch (error) {
      if (!(error instanceof CorralError) || error.code !== "UNAVAILABLE") throw error;
      lastError = error;
    }
  }
  throw lastError;
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
