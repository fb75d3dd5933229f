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
    /** After a clean stop, how long the process may linger on a library's leftover timer or socket. */
    exitAfterClose: "2s",
    /** The controller's own node: how often it reads its machine again (CPU, memory, disks, GPUs). */
    ownResourcesRefresh: "1m",
    /** The nvidia-smi the controller's own node finds its GPUs with: a name on PATH, or a path. */
    nvidiaSmi: "nvidia-smi",
  },
  rpc: {
    maxReceiveMessageBytes: 4 * 1024 * 1024,
    maxSendMessageBytes: 16 * 1024 * 1024,
    /**
     * HTTP/2's own per-connection cap (grpc-js queues calls beyond it rather than refusing them), kept
     * above `streams.perConnection` so that a client over the limit hears RESOURCE_EXHAUSTED, not a wait.
     */
    maxConcurrentStreamsPerConnection: 256,
    /**
     * The server pings every connection this often and drops one that does not answer within
     * keepaliveTimeout: a frozen machine or a cut network ends its agent's heartbeat stream (and so
     * makes it suspect) within their sum, whatever the fleet size. A ping is a few bytes; 10 000 agents
     * make about 1 250 a second.
     */
    keepaliveTime: "8s",
    keepaliveTimeout: "4s",
    /** Clients may ping this often without data in flight before being told to back off. */
    keepaliveMinPingInterval: "10s",
    /**
     * A text field of a request may hold this many characters (documents such as a pipeline's JSON or
     * a PEM excepted); longer is refused with INVALID_ARGUMENT before any handler or forwarding.
     */
    maxStringFieldChars: 16_384,
  },
  /** Several controllers on one etcd (`store.etcd`). */
  ha: {
    /** Leader lease (and each controller's presence lease): a dead leader is replaced this long after. */
    leaseTtl: "10s",
    /**
     * Each controller publishes the last-seen times of the heartbeats it received this often, as one
     * etcd write; the others take them in through a watch. Must stay well below the suspect slack,
     * (liveness.suspectAfterMissed − 1 − jitter) × liveness.minInterval.
     */
    lastSeenFlush: "1s",
    /**
     * The live controllers' list is read this often, for heartbeat answers (agents learn new ones) and
     * for replication between controllers.
     */
    controllersRefresh: "5s",
    /** Each controller passes the metrics samples and heartbeat loads it heard on to the others this often. */
    replicateEvery: "1s",
    replicateTimeout: "5s",
    /**
     * Samples one replication batch carries at most; a fleet pushing more per `replicateEvery` loses
     * the excess on the other controllers, with a warning.
     */
    replicateMaxSamples: 20_000,
    /** A batch is sent as several calls of at most this many bytes (a message may have 4 MiB). */
    replicateMaxCallBytes: 2 * 1024 * 1024,
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
    /**
     * A node whose heartbeat stream ended without a goodbye (its process killed, its connection dropped
     * or timed out by keepalive) is `suspect` at once, and `down` this long after unless it heartbeats
     * again (here or at another controller) meanwhile: enough for a live agent to reconnect.
     */
    streamLostDownAfter: "2s",
    /**
     * Status changes per store txn when many nodes change at once. Every watcher of the feed decodes a
     * batch's events before the event loop turns again, so a batch stays small enough for that to take
     * milliseconds (health probes are answered between batches); 10 000 changes are ~300 txns.
     */
    writeBatch: 32,
  },
  /** AgentService/HeartbeatStream: heartbeats as messages on one stream per agent. */
  heartbeatStream: {
    /**
     * The controller ends a stream (OK) this long after it opened; the agent opens another. Agents
     * thus come back to a controller that restarted or joined, instead of staying where failover put them.
     */
    maxAge: "10m",
    /** An agent that hears no answer to a heartbeat this long gives the stream up and moves on. */
    answerTimeout: "15s",
  },
  identity: {
    /** Node certificates are short-lived; agents renew at about two thirds of this. */
    nodeCertificateLifetime: "24h",
    /** Client certificates written for the first admin (`corral init`, first start). */
    adminCertificateLifetime: "365d",
    /** Join tokens made without --ttl. */
    tokenTtl: "1h",
  },
  /** The cluster CA and the certificates it issues (`corral certs …`). */
  certificates: {
    /** How long the old and the new CA are both trusted after a rotation. */
    rotationOverlap: "48h",
    /** Agents ask for the trust bundle (and whether to renew) this often. */
    trustRefreshInterval: "1m",
    /** `corral status` and GetStatistics warn about certificates and CAs expiring within this. */
    expiryWarning: "30d",
    /** Inventory records of certificates expired longer than this are forgotten. */
    keepExpired: "7d",
    /** ValidateCertificate takes PEM text up to this size. */
    maxPemBytes: 64 * 1024,
    /** RenewCertificate with wait: how long it waits for the node to renew at most. */
    renewWait: "2m",
  },
  /**
   * Open response streams (server streaming and bidi: watches, heartbeat streams, log tails) a caller may
   * hold at once; the next is refused with RESOURCE_EXHAUSTED. A node holds a handful, the dashboard a
   * few watches per tab. Controller YAML: `limits.streamsPerConnection`, `limits.streamsPerPrincipal`.
   */
  streams: {
    perConnection: 100,
    /** Summed over every connection and listener of one principal (a node, an operator, a token). */
    perPrincipal: 200,
  },
  joinRequests: {
    maxPending: 64,
    perSourcePerMinute: 10,
    /** Pending requests from one source address at once (`limits.joinRequests.perSource`). */
    perSource: 4,
    /** … and from one network, an IPv4 /24 or an IPv6 /64 (`limits.joinRequests.perNetwork`). */
    perNetwork: 16,
    keepDecided: "10m",
  },
  agent: {
    /**
     * Node's flags for an agent process that corral starts itself (the demo's agents; the agent's
     * systemd unit): V8's young generation capped at 1 MiB per semi-space instead of growing to 8–16
     * MiB — an idle agent allocates little, and this is about 9 MiB of its RSS (npm run bench:footprint).
     */
    nodeFlags: ["--max-semi-space-size=1"],
    /** First wait after a failed call to the controller; doubles up to maxBackoff, with full jitter. */
    initialBackoff: "500ms",
    maxBackoff: "30s",
    dataDir: ".corral/agent",
    localApiAddress: "127.0.0.1:10432",
    /** The mTLS listener the controller calls (`--listen`). */
    listenAddress: "0.0.0.0:7444",
    /**
     * Who pipeline `process` blocks and provisioning `exec` steps run as (`--run-as`): "auto" is
     * `runAsWhenRoot` for an agent running as root and the agent's own user otherwise; "root" only when
     * named; any other user name or uid.
     */
    runAs: "auto",
    runAsWhenRoot: "nobody",
    /** File in the data dir listing the process groups the agent started (reaped by the next agent). */
    processLedgerFile: "process-groups.json",
    /** At start, groups left by an earlier agent get SIGTERM, then SIGKILL after this. */
    reapGrace: "2s",
  },
  /** The node's hardware as the Pi-Controller NodeAgent shows it: GPIO, metrics, health. */
  agentHardware: {
    /** "auto": the kernel GPIO character device when the node has one and the libgpiod tools work. */
    gpio: "auto",
    /** Lines of the simulated bank (a Raspberry Pi's BCM count). */
    simulatedGpioLines: 54,
    /** File in the agent's data dir that keeps the simulated bank's levels across restarts. */
    simulatedGpioStateFile: "gpio-sim.json",
    /** PWM, SPI, I²C, analog: "auto" (the kernel device where present), "real" or "simulated". */
    pwm: "auto",
    spi: "auto",
    i2c: "auto",
    analog: "auto",
    /** Pin events or samples a slow reader may leave waiting before it is dropped (RESOURCE_EXHAUSTED). */
    streamMaxPending: 2048,
    /** At most this many samples per SampleInput message. */
    sampleMaxBatch: 256,
    /** A SampleInput message waits this long for more samples (one message per sample costs more). */
    sampleFlushInterval: "20ms",
    /** Each run of a libgpiod tool (gpioset, gpioget, gpioinfo, gpiodetect) is killed after this. */
    gpioToolTimeout: "5s",
    /** How long a driven line's gpioset may take to show as holding the line before the write fails. */
    gpioHoldConfirmTimeout: "2s",
    /** `vcgencmd measure_temp` (Raspberry Pi firmware) is killed after this. */
    vcgencmdTimeout: "2s",
    /** si.fsSize (df) can hang on a dead network mount: metrics report no disks after this. */
    diskListTimeout: "5s",
    /** A machine figure (CPU, memory, disks, GPUs…) this recent is shared by the node's readers, not read again. */
    machineSampleMaxAge: "1s",
    health: {
      /** Free space on the data dir's file system below this percent: DEGRADED; below the next: UNHEALTHY. */
      diskFreeDegradedPercent: 5,
      diskFreeUnhealthyPercent: 1,
      /** Memory in use (total − available) at or above this percent: DEGRADED / UNHEALTHY. */
      memoryDegradedPercent: 90,
      memoryUnhealthyPercent: 98,
      /** Board temperature at or above this, in °C: DEGRADED / UNHEALTHY. */
      temperatureDegradedCelsius: 80,
      temperatureUnhealthyCelsius: 90,
    },
  },
  agentDiagnostics: {
    exec: {
      /** The only directories allow-listed commands are looked up in (once, on first use). */
      safePath: "/usr/sbin:/usr/bin:/sbin:/bin",
      /** A command's timeout when neither the request nor its allow-list entry sets one. */
      defaultTimeout: "10s",
      /** The most a request's `timeout_seconds` may ask for. */
      maxTimeout: "60s",
      /** Per stream (stdout, stderr); the rest is dropped and `truncated` set. */
      maxOutputBytes: 64 * 1024,
      maxArgLength: 1024,
      /** `journalctl -n` is capped at this; without `-n` the agent adds `journalctlDefaultLines`. */
      journalctlMaxLines: 1_000,
      journalctlDefaultLines: 200,
      /** `ping -c` and `-W` (seconds) are capped at these. */
      pingMaxCount: 5,
      pingMaxWait: 5,
    },
    logs: {
      /** Lines of the agent's own log kept in memory for StreamLogs. */
      agentRingLines: 10_000,
      /** Longer lines are cut (and marked `truncated`). */
      maxLineBytes: 16 * 1024,
      /** The most a LogFilter's `tail` may ask for. */
      maxTail: 10_000,
      /** Entries waiting for a slow reader before its stream ends with RESOURCE_EXHAUSTED. */
      maxQueued: 1_000,
      /** Files StreamLogs may read (`file:<path>`); `dir/*` is any file directly in dir, `dir/**` any below. */
      allowedFiles: ["/var/log/syslog", "/var/log/messages", "/var/log/corral/*"],
      /** Followed files are checked this often besides fs.watch (missed events, rotation). */
      filePollInterval: "1s",
      /** `tail` reads at most this much from the end of a file. */
      tailMaxBytes: 16 * 1024 * 1024,
      /** The `journalctl` run that answers a journal tail. */
      journalTailTimeout: "30s",
      journalTailMaxBytes: 32 * 1024 * 1024,
    },
  },
  /** The provisioning engine: plans run as jobs on nodes (`corral provision …`). */
  provisioning: {
    /** Nodes of one job provisioned at once, unless the request or the controller YAML says otherwise. */
    concurrency: 4,
    maxConcurrency: 64,
    /** Operator plans: this folder in the controller's data dir, unless `provisioning.plansDir` is set. */
    plansDirName: "plans",
    maxPlanFileBytes: 256 * 1024,
    maxSteps: 64,
    maxParameters: 64,
    /** Longest parameter value (after defaults); NUL and line breaks are refused whatever the length. */
    maxParameterBytes: 4096,
    maxFileContentBytes: 256 * 1024,
    /** An exec or systemd step without a `timeout` is killed after this. */
    stepTimeout: "10m",
    maxStepTimeout: "2h",
    /** A waitFor step without `timeout` / `interval`. */
    waitForTimeout: "5m",
    waitForInterval: "2s",
    /** Output kept per step (stdout and stderr together); the rest is counted and dropped. */
    maxOutputBytes: 16 * 1024,
    /** A running step's output reaches the store at most this often. */
    outputFlushInterval: "1s",
    /** After SIGTERM to a step's process group, SIGKILL follows this much later. */
    killGrace: "3s",
    /** Finished jobs kept in the store; the oldest beyond this are deleted when a new job starts. */
    keepJobs: 500,
  },
  ownership: {
    /** Longest key (cart id, actor id …) in UTF-8 bytes. */
    maxKeyBytes: 1024,
    /** Keys the directory knows at most: each is one store entry. */
    maxKeys: 200_000,
    /** Keys one RegisterKeys call may carry. */
    maxKeysPerCall: 10_000,
    /** A node label that sets the member's weight in the hashing (a number above 0); else 1. */
    weightLabel: "ownership-weight",
    maxWeight: 1_000,
    /** Negotiate pings hosts it does not know, over the cluster's mTLS: at most this many per call. */
    maxProbesPerNegotiate: 16,
    probeTimeout: "2s",
    /** A host that failed a probe is not probed again for this long. */
    probeRetryAfter: "30s",
    /** Hosts learned by probing (other names of members) kept at most. */
    maxAliases: 1_024,
    /** A write waits this long at most for the directory to show it before answering. */
    catchUp: "5s",
  },
  /** Model-layer placement (the controller's reconciler). */
  /** Agent metrics history (`corral.v1.MetricsService`), kept in the controller's memory. */
  metrics: {
    /** How often agents push a sample (handed to them in every answer): the charts' resolution. */
    interval: "10s",
    /** Samples kept per node: 360 × 10 s = one hour, 80 bytes a sample (28 KiB a node). */
    historySamples: 360,
    /** Samples an agent keeps while the controller cannot be reached, sent together when it can. */
    agentBacklog: 60,
    /** Live samples a WatchNodeMetrics reader may fall behind before RESOURCE_EXHAUSTED. */
    maxQueued: 1_024,
    /** The controller never asks for a push more often than this. */
    minInterval: "100ms",
  },
  /** Pipelines (NanoPing's PipelinesService) on every node, the controller's own included. */
  pipelines: {
    /**
     * Programs (absolute paths) that pipeline `process` blocks may run on a node: agent `--pipeline-allow`,
     * controller `pipelines.processAllow`. Empty: the node runs no process blocks.
     */
    processAllow: [] as readonly string[],
    /**
     * performance_mode on (NanoPing's default): the run's worker thread, and the process blocks it
     * starts, at this nice value where the node may raise priority (CAP_SYS_NICE, e.g. root); else they
     * keep the agent's. Sources pace packets by busy-waiting (setImmediate) the last `busyWaitMs` to each
     * packet's due time instead of sleeping on a timer.
     */
    performanceNice: -10,
    busyWaitMs: 2,
    /** performance_mode off: the run gives way to the node's other work (always allowed). */
    backgroundNice: 10,
    /**
     * A run's output waits at most this long for a log reader more than half its ring behind (the run's
     * process is paused meanwhile); a reader that reads on is never lapped, one that stalls longer is.
     */
    logReaderWait: "1s",
  },
  /** Clusters of nodes provisioned with k3s (`corral cluster`). */
  clusters: {
    /** Agents of a cluster provisioned at once. */
    agentConcurrency: 4,
    maxNodes: 256,
    /** Times a failed node's plan is run again (only its failed steps onwards) before the cluster fails. */
    retries: 1,
    /** Store events a WatchClusters reader may fall behind before it is dropped (RESOURCE_EXHAUSTED). */
    watchMaxLag: 1_000,
  },
  placement: {
    /** Wait after a failed placement pass before the next; doubles up to maxRetryMs. */
    retryMs: 500,
    maxRetryMs: 10_000,
    /**
     * A pass waits this long after the event that asked for it, so that a burst (a mass transition,
     * written in batches) costs one pass, not one per batch.
     */
    coalesce: "50ms",
  },
  /** The Distributed LLM API's streams and commands. */
  distributedLlm: {
    /** StreamMetrics / StreamUpdates without `interval_seconds`. */
    defaultIntervalSeconds: 5,
    minIntervalSeconds: 1,
    maxIntervalSeconds: 3_600,
    /**
     * GetMetrics / StreamMetrics ask the node for a reading (NodeAgent/GetSystemMetrics) and wait this
     * long at most; a node that does not answer in time is answered from its last heartbeat.
     */
    readingTimeout: "2s",
    /** The call metadata a stranger puts a join token in to call RegisterWithCluster on the cluster listener. */
    joinTokenHeader: "corral-join-token",
    /** ExecuteCommand: at most this many arguments, each at most this long. */
    maxCommandArgs: 16,
    maxCommandArgLength: 256,
  },
  demo: {
    dataDir: ".corral/demo",
    agents: 3,
    agentLocalApiFirstPort: 10432,
  },
} as const;
