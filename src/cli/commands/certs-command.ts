import { resolve } from "node:path";
import { toJson } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Command, Option } from "commander";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import type { Connection } from "../../client/connection.ts";
import { ago, enumText, isoTime, shortFingerprint, until } from "../../client/format.ts";
import { defaults } from "../../defaults.ts";
import {
  type CaRotation,
  type CertificateInfo,
  CertificateInfoSchema,
  CertificateKind,
  CertificateStatus,
  CertificatesService,
  GetCaResponseSchema,
  GetCertificateStatisticsResponseSchema,
  ListCertificateRequestsResponseSchema,
  ListCertificatesResponseSchema,
  RenewNodeCertificateResponseSchema,
  RevokeCertificateResponseSchema,
  RotateCaResponseSchema,
  ValidateCertificateResponseSchema,
} from "../../gen/corral/v1/certificates_pb.ts";
import { JoinRequestState } from "../../gen/corral/v1/join_pb.ts";
import { readSealingKey, writeSealingKey } from "../../security/ca-key-file.ts";
import { readIfExists } from "../../security/pem.ts";
import { globalsOf } from "../global-options.ts";
import { type Field, printJson, renderFields, renderTable } from "../output.ts";

const jsonOptions = { alwaysEmitImplicit: true } as const;
const kinds = {
  node: CertificateKind.NODE,
  operator: CertificateKind.OPERATOR,
  controller: CertificateKind.CONTROLLER,
  server: CertificateKind.SERVER,
} as const;

const kindText = (kind: CertificateKind) => enumText(CertificateKind, kind);
const statusText = (status: CertificateStatus) => enumText(CertificateStatus, status).replace(/_/g, " ");

function owner(info: CertificateInfo): string {
  if (info.nodeName || info.nodeId) return info.nodeName || info.nodeId;
  if (info.operatorName) return `${info.operatorRole}:${info.operatorName}`;
  return info.commonName || "-";
}

function certificateFields(info: CertificateInfo, now: number): Field[] {
  return [
    ["serial", info.serial],
    ["kind", kindText(info.kind)],
    ["status", `${statusText(info.status)}${info.current ? " (in use)" : ""}`],
    ["subject", info.subject],
    ...(info.nodeId ? [["node", `${info.nodeName || "-"} (${info.nodeId})`] as Field] : []),
    ...(info.operatorName ? [["operator", `${info.operatorName} (role ${info.operatorRole})`] as Field] : []),
    ["dns names", info.dnsNames.join(", ") || "-"],
    ["ip addresses", info.ipAddresses.join(", ") || "-"],
    ["uris", info.uris.join(", ") || "-"],
    ["not before", isoTime(info.notBefore)],
    ["not after", `${isoTime(info.notAfter)} (${until(info.notAfter, now)})`],
    [
      "issued",
      info.issuedAt === undefined ? "-" : `${isoTime(info.issuedAt)} (${ago(info.issuedAt, now)} ago)`,
    ],
    ["fingerprint", info.fingerprint],
    ["ca", info.caFingerprint || "-"],
    ...(info.status === CertificateStatus.REVOKED
      ? [
          [
            "revoked",
            `${isoTime(info.revokedAt)} by ${info.revokedBy || "-"}${info.revocationReason ? `: ${info.revocationReason}` : ""}`,
          ] as Field,
        ]
      : []),
  ];
}

function rotationText(rotation: CaRotation | undefined, now: number): string {
  if (rotation?.inProgress !== true) return "none";
  return (
    `under way since ${isoTime(rotation.startedAt)} (by ${rotation.startedBy || "-"}): ` +
    `${shortFingerprint(rotation.previousFingerprint)} → ${shortFingerprint(rotation.nextFingerprint)}, ` +
    `the old CA is trusted for ${until(rotation.overlapEndsAt, now)} more`
  );
}

export function registerCertsCommand(program: Command): void {
  const certs = program
    .command("certs")
    .alias("certificates")
    .description("the cluster's CA: every certificate it issued, renewal, revocation, validation, rotation");

  certs
    .command("ls")
    .alias("list")
    .description("certificates in use and revoked ones (newest first)")
    .addOption(new Option("--kind <kind>", "only this kind").choices(Object.keys(kinds)))
    .option("--node <node>", "only this node's (id or name)")
    .option("--all", "also expired ones, and those a newer one replaced", false)
    .action(async (options: { kind?: keyof typeof kinds; node?: string; all: boolean }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(
        connection.client(CertificatesService).listCertificates({
          kind: options.kind === undefined ? CertificateKind.UNSPECIFIED : kinds[options.kind],
          node: options.node ?? "",
          includeExpired: options.all,
          currentOnly: !options.all,
        }),
      );
      if (globals.output === "json") {
        printJson(toJson(ListCertificatesResponseSchema, response, jsonOptions));
        return;
      }
      const now = Date.now();
      process.stdout.write(
        renderTable(
          ["serial", "kind", "owner", "status", "issued", "expires in", "ca"],
          response.certificates.map((c) => [
            c.serial,
            kindText(c.kind),
            owner(c),
            statusText(c.status),
            `${ago(c.issuedAt, now)} ago`,
            until(c.notAfter, now),
            shortFingerprint(c.caFingerprint),
          ]),
        ),
      );
    });

  certs
    .command("show <serial>")
    .description("one certificate: subject, names, validity, fingerprint, status")
    .action(async (serial: string, _options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const { certificate } = await connection.call(
        connection.client(CertificatesService).getCertificate({ serial }),
      );
      if (certificate === undefined) throw new CorralError("NOT_FOUND", `certificate ${serial} not found`);
      if (globals.output === "json") {
        printJson(toJson(CertificateInfoSchema, certificate, jsonOptions));
        return;
      }
      process.stdout.write(renderFields(certificateFields(certificate, Date.now())));
    });

  certs
    .command("renew <node>")
    .description("ask a node to renew its certificate now (it keeps its key; it renews on its next check)")
    .option("--no-wait", "return at once instead of waiting for the new certificate")
    .action(async (node: string, options: { wait: boolean }, command: Command) => {
      const globals = globalsOf(command);
      const waitMs = parseDuration(defaults.certificates.renewWait);
      const connection = await globals.connect(options.wait ? waitMs + 10_000 : undefined);
      const response = await connection.call(
        connection.client(CertificatesService).renewCertificate({ node, wait: options.wait }),
      );
      if (globals.output === "json") {
        printJson(toJson(RenewNodeCertificateResponseSchema, response, jsonOptions));
        return;
      }
      const renewed = response.certificate;
      process.stdout.write(
        renewed === undefined
          ? `asked ${response.nodeName} to renew its certificate; it does on its next check (corral certs ls --node ${response.nodeName})\n`
          : `${response.nodeName} renewed its certificate: serial ${renewed.serial}, expires in ${until(renewed.notAfter)}\n`,
      );
    });

  certs
    .command("revoke [serial]")
    .description("revoke a certificate (or every one of a node with --node): refused on the next call")
    .option("--node <node>", "every valid certificate of this node: it must join again")
    .option("--reason <text>", "why (kept with the revocation)", "")
    .action(
      async (serial: string | undefined, options: { node?: string; reason: string }, command: Command) => {
        if ((serial === undefined) === (options.node === undefined)) {
          throw CorralError.invalidArgument("serial", "give a serial or --node <node>, not both");
        }
        const globals = globalsOf(command);
        const connection = await globals.connect();
        const response = await connection.call(
          connection.client(CertificatesService).revokeCertificate({
            serial: serial ?? "",
            node: options.node ?? "",
            reason: options.reason,
          }),
        );
        if (globals.output === "json") {
          printJson(toJson(RevokeCertificateResponseSchema, response, jsonOptions));
          return;
        }
        for (const c of response.revoked) {
          process.stdout.write(`revoked ${kindText(c.kind)} certificate ${c.serial} (${owner(c)})\n`);
        }
      },
    );

  certs
    .command("validate <file>")
    .description(
      "check a PEM certificate: does it chain to this cluster's CA, has it expired, was it revoked",
    )
    .action(async (file: string, _options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const pem = await readIfExists(resolve(file)).catch((error: unknown) => {
        throw CorralError.invalidArgument("file", `cannot read ${file}: ${(error as Error).message}`);
      });
      if (pem === undefined) throw CorralError.invalidArgument("file", `${file} does not exist`);
      const connection = await globals.connect();
      const response = await connection.call(
        connection.client(CertificatesService).validateCertificate({ pem }),
      );
      if (globals.output === "json") {
        printJson(toJson(ValidateCertificateResponseSchema, response, jsonOptions));
      } else {
        const c = response.certificate;
        process.stdout.write(
          `${file}: ${response.valid ? "valid" : "NOT valid"}\n` +
            renderFields([
              ["serial", c?.serial ?? "-"],
              ["subject", c?.subject ?? "-"],
              ["not after", c === undefined ? "-" : `${isoTime(c.notAfter)} (${until(c.notAfter)})`],
              ["chains to ca", response.chainsToCa ? `yes (${response.caFingerprint})` : "no"],
              ["expired", response.expired ? "yes" : "no"],
              ["revoked", response.revoked ? "yes" : "no"],
              ["issued here", response.known ? "yes" : "no"],
              ...response.problems.map((problem): Field => ["problem", problem]),
            ]),
        );
      }
      // Scripts can test the answer: 1 when the certificate is not valid.
      if (!response.valid) process.exitCode = 1;
    });

  certs
    .command("stats")
    .description("how many certificates were issued, expire soon, were revoked; expiry warnings")
    .action(async (_options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const stats = await connection.call(connection.client(CertificatesService).getStatistics({}));
      if (globals.output === "json") {
        printJson(toJson(GetCertificateStatisticsResponseSchema, stats, jsonOptions));
        return;
      }
      const byKind = (counts: Record<string, number>) =>
        Object.entries(counts)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([kind, n]) => `${kind} ${n}`)
          .join(", ") || "-";
      process.stdout.write(
        renderFields([
          ["certificates", String(stats.total)],
          ["issued in 24h", `${stats.issuedLast24h} (${byKind(stats.issuedLast24hByKind)})`],
          ["valid", byKind(stats.validByKind)],
          ["expiring in 30d", String(stats.expiringWithin30d)],
          ["revoked", String(stats.revoked)],
          ["expired", String(stats.expired)],
          ["ca rotation", rotationText(stats.rotation, Date.now())],
        ]),
      );
      for (const warning of stats.warnings) process.stdout.write(`warning: ${warning.message}\n`);
    });

  certs
    .command("ca")
    .description("the CAs the cluster trusts now, where their keys are kept, and any rotation under way")
    .option("--pem", "print the trust bundle (PEM) only", false)
    .action(async (options: { pem: boolean }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const ca = await connection.call(connection.client(CertificatesService).getCa({}));
      if (options.pem) {
        process.stdout.write(ca.trustBundlePem);
        return;
      }
      if (globals.output === "json") {
        printJson(toJson(GetCaResponseSchema, ca, jsonOptions));
        return;
      }
      const now = Date.now();
      process.stdout.write(
        renderTable(
          ["fingerprint", "role", "subject", "expires in"],
          ca.cas.map((c) => [
            c.fingerprint,
            [c.presenting ? "presenting" : "", c.issuing ? "issuing" : ""].filter(Boolean).join("+"),
            c.subject,
            until(c.notAfter, now),
          ]),
        ) +
          renderFields([
            ["keys", ca.keyStorage],
            ["rotation", rotationText(ca.rotation, now)],
          ]),
      );
    });

  certs
    .command("rotate")
    .description("a new CA key and certificate; both trusted for the overlap while every node renews onto it")
    .option(
      "--overlap <duration>",
      "how long the old CA stays trusted (default: the controller's ca.rotationOverlap)",
    )
    .action(async (options: { overlap?: string }, command: Command) => {
      const overlapMs = options.overlap === undefined ? 0 : parseDuration(options.overlap, "--overlap");
      if (options.overlap !== undefined && overlapMs < 1_000) {
        throw CorralError.invalidArgument("--overlap", "must be at least 1s");
      }
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(
        connection
          .client(CertificatesService)
          .rotateCa(overlapMs === 0 ? {} : { overlap: durationFromMs(overlapMs) }),
      );
      if (globals.output === "json") {
        printJson(toJson(RotateCaResponseSchema, response, jsonOptions));
        return;
      }
      const now = Date.now();
      const next = response.cas.find((c) => c.issuing);
      process.stdout.write(
        `new CA ${next?.fingerprint ?? "-"}\n` +
          `${rotationText(response.rotation, now)}\n` +
          "nodes renew onto it as they check in; make new join tokens once the overlap ends (they pin the CA)\n",
      );
    });

  certs
    .command("requests")
    .description(
      "certificate requests waiting for approval (nodes asking to join); approve with corral requests accept",
    )
    .option("--all", "also decided and expired ones", false)
    .action(async (options: { all: boolean }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(
        connection.client(CertificatesService).listCertificateRequests({ includeDecided: options.all }),
      );
      if (globals.output === "json") {
        printJson(toJson(ListCertificateRequestsResponseSchema, response, jsonOptions));
        return;
      }
      const now = Date.now();
      process.stdout.write(
        renderTable(
          ["id", "name", "state", "subject", "key", "key fingerprint", "age"],
          response.requests.map((r) => [
            String(r.request?.id ?? ""),
            r.request?.name ?? "-",
            enumText(JoinRequestState, r.request?.state ?? JoinRequestState.UNSPECIFIED),
            r.csrSubject || "-",
            r.keyAlgorithm || "-",
            shortFingerprint(r.keyFingerprint),
            ago(r.request?.createdAt, now),
          ]),
        ),
      );
    });

  certs
    .command("keygen <file>")
    .description("write a new key file for ca.keyFile (controllers sharing etcd seal the CA key with it)")
    .option("--force", "replace an existing file", false)
    .action(async (file: string, options: { force: boolean }) => {
      const path = resolve(file);
      if (!options.force && (await readIfExists(path)) !== undefined) {
        const existing = await readSealingKey(path).catch(() => undefined);
        throw CorralError.invalidArgument(
          "file",
          `${file} exists${existing === undefined ? "" : ` (key ${existing.id})`}; give every controller that file, or pass --force to replace it`,
        );
      }
      const key = await writeSealingKey(path);
      process.stdout.write(
        `wrote ${path} (key ${key.id}, mode 0600): set ca.keyFile to it on every controller of the cluster\n`,
      );
    });
}

/**
 * `corral status` lines about certificates and CAs that need a person soon (none when the controller
 * has no CA API, or the caller may not read it).
 */
export async function certificateWarningLines(connection: Connection): Promise<string> {
  const stats = await connection
    .client(CertificatesService)
    .getStatistics({})
    .catch(() => undefined);
  if (stats === undefined) return "";
  const rotation = stats.rotation?.inProgress
    ? `ca rotation ${rotationText(stats.rotation, Date.now())}\n`
    : "";
  return rotation + stats.warnings.map((warning) => `warning     ${warning.message}\n`).join("");
}
