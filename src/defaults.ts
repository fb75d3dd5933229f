/**
 * Every default of corral, in one place. Durations are human strings, parsed where they are used,
 * so that this file reads like the documentation of the defaults it is.
 */
export const defaults = {
  controller: {
    nodeName: "My Controller",
    /** The TLS cluster listener (NanoPing's `http.address`). */
    clusterAddress: "0.0.0.0:7443",
    /** Plaintext gRPC for local tools (`grpcurl -plaintext`); loopback only unless --insecure. */
    bridgeAddress: "127.0.0.1:8080",
    webAddress: "127.0.0.1:7080",
    dataDir: ".corral/controller",
    authenticationByRequestTimeout: "5m",
    /** How long SIGINT/SIGTERM waits for in-flight calls before cutting them off. */
    shutdownGrace: "10s",
  },
  rpc: {
    maxReceiveMessageBytes: 4 * 1024 * 1024,
    maxSendMessageBytes: 16 * 1024 * 1024,
    maxConcurrentStreamsPerConnection: 256,
    keepaliveTime: "30s",
    keepaliveTimeout: "10s",
    /** Clients may ping this often without data in flight before being told to back off. */
    keepaliveMinPingInterval: "10s",
  },
  feed: {
    /** Events a watcher may fall behind before it is cut off with RESOURCE_EXHAUSTED. */
    maxLag: 10_000,
  },
  liveness: {
    /** Agents never heartbeat more often than this, however small the cluster. */
    minInterval: "5s",
    /** Heartbeats the controller should receive per second at most: the interval grows with the fleet. */
    maxHeartbeatsPerSecond: 50,
    /** A ready node silent for this many intervals becomes `suspect`. */
    suspectAfterMissed: 3,
    /** A node still silent this long after it became `suspect` is `down`. */
    downAfter: "30s",
    /** Each interval handed to an agent is moved by up to ±this fraction, so agents do not synchronise. */
    jitter: 0.1,
  },
  identity: {
    /** Node certificates are short-lived; agents renew at about two thirds of this. */
    nodeCertificateLifetime: "24h",
    /** Client certificates written for the first admin (`corral init`, first start). */
    adminCertificateLifetime: "365d",
    /** Join tokens made without --ttl. */
    tokenTtl: "1h",
  },
  joinRequests: {
    maxPending: 64,
    perSourcePerMinute: 10,
    keepDecided: "10m",
  },
  agent: {
    /** First wait after a failed call to the controller; doubles up to maxBackoff, with full jitter. */
    initialBackoff: "500ms",
    maxBackoff: "30s",
    dataDir: ".corral/agent",
    localApiAddress: "127.0.0.1:10432",
  },
  demo: {
    dataDir: ".corral/demo",
    agents: 3,
    agentLocalApiFirstPort: 10432,
  },
} as const;
