import { isAbsolute, relative } from "node:path";

export type ServiceRole = "controller" | "agent";

export const serviceRoles: readonly ServiceRole[] = ["controller", "agent"];

/** systemd's state directory for both units (StateDirectory=corral). */
export const stateRoot = "/var/lib/corral";

/**
 * TimeoutStopSec: above the controller's drain (shutdownGrace, 10 s by default, then at most
 * exitAfterClose, 2 s) and the agent's (5 s for its listeners, reapGrace 2 s for its process groups), with
 * room for a slow disk; only past it does systemd send SIGKILL.
 */
export const timeoutStopSec = 30;

/** The groups that own GPIO, SPI and I²C device nodes on Raspberry Pi OS and most distributions. */
export const deviceGroups = ["gpio", "spi", "i2c"] as const;

export interface UnitOptions {
  readonly role: ServiceRole;
  /** The program and its first arguments: node and the real path of bin/corral.js. */
  readonly exec: readonly string[];
  /** Absolute path of the YAML (`--config`), if any. */
  readonly config?: string;
  /** Absolute data dir (`--data-dir`); default `/var/lib/corral/<role>`. */
  readonly dataDir?: string;
  /** More flags for `corral controller` / `corral up`, after the config. */
  readonly extraArgs?: readonly string[];
  /** The device groups to name (SupplementaryGroups fails the unit if a group does not exist). */
  readonly groups?: readonly string[];
  /** Says who wrote the file, for the person who finds it in /etc/systemd/system. */
  readonly generatedBy?: string;
}

export function unitName(role: ServiceRole): string {
  return `corral-${role}.service`;
}

/** One ExecStart word, quoted the way systemd.service(5) reads it; `%` and `$` are escaped. */
export function systemdQuote(word: string): string {
  const escaped = word.replaceAll("%", "%%").replaceAll("$", "$$$$");
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped)) return escaped;
  return `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

export function renderUnit(options: UnitOptions): string {
  const { role } = options;
  const dataDir = options.dataDir ?? `${stateRoot}/${role}`;
  const args = [
    ...options.exec,
    role === "controller" ? "controller" : "up",
    ...(options.config === undefined ? [] : ["--config", options.config]),
    "--data-dir",
    dataDir,
    ...(options.extraArgs ?? []),
  ];
  // The state directory is writable under ProtectSystem=strict; a data dir elsewhere must be named.
  const inState = !relative(stateRoot, dataDir).startsWith("..") && !isAbsolute(relative(stateRoot, dataDir));
  const writable = inState ? [stateRoot] : [stateRoot, dataDir];
  const groups = options.groups ?? deviceGroups;
  const lines = [
    `# ${unitName(role)}: the corral ${role}${options.generatedBy === undefined ? "" : `, written by ${options.generatedBy}`}.`,
    "# Stop with SIGTERM: corral drains (in-flight calls finish) and exits 0 well within TimeoutStopSec.",
    "[Unit]",
    role === "controller"
      ? "Description=corral controller (fleet control plane: cluster API, store, CA)"
      : "Description=corral agent (joins the controller, serves this node's APIs)",
    "Wants=network-online.target",
    "After=network-online.target",
    "StartLimitIntervalSec=5min",
    "StartLimitBurst=10",
    "",
    "[Service]",
    "Type=simple",
    `ExecStart=${args.map(systemdQuote).join(" ")}`,
    "Restart=on-failure",
    "RestartSec=5s",
    "KillSignal=SIGTERM",
    // The agent stops the pipeline processes it started itself (process groups, reapGrace); mixed lets it.
    "KillMode=mixed",
    `TimeoutStopSec=${timeoutStopSec}s`,
    "StateDirectory=corral",
    "StateDirectoryMode=0700",
    `WorkingDirectory=${stateRoot}`,
    "ProtectSystem=strict",
    `ReadWritePaths=${writable.map(systemdQuote).join(" ")}`,
    "ProtectHome=read-only",
    "PrivateTmp=yes",
    "NoNewPrivileges=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    `SyslogIdentifier=corral-${role}`,
    "Environment=NODE_ENV=production",
  ];
  if (role === "agent") {
    lines.push(
      "# Only the device nodes the agent drives: GPIO, SPI, I2C (and NVIDIA's, for nvidia-smi on GPU nodes).",
      ...(groups.length === 0
        ? ["# SupplementaryGroups: none of gpio, spi, i2c exists on this machine"]
        : [`SupplementaryGroups=${groups.join(" ")}`]),
      "DevicePolicy=closed",
      "DeviceAllow=char-gpiochip rw",
      "DeviceAllow=char-spi rw",
      "DeviceAllow=char-i2c rw",
      "DeviceAllow=char-nvidia-frontend rw",
      "DeviceAllow=char-nvidia-uvm rw",
      "DeviceAllow=char-nvidia-caps rw",
    );
  } else {
    lines.push("# The controller drives no hardware.", "PrivateDevices=yes");
  }
  lines.push("", "[Install]", "WantedBy=multi-user.target", "");
  return lines.join("\n");
}
