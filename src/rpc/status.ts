import { type Code, ConnectError } from "@connectrpc/connect";
import { type status as GrpcStatus, Metadata, type StatusObject } from "@grpc/grpc-js";
import { CorralError, type ErrorCode, grpcStatusOf } from "../base/errors.ts";
import { shownMessage, shownValue } from "../base/safe-text.ts";

const codeOfGrpcStatus = new Map<number, ErrorCode>(
  Object.entries(grpcStatusOf).map(([code, status]) => [status, code as ErrorCode]),
);

/** Trailer keys carrying CorralError details; `corral-` keeps them apart from other metadata. */
const detailPrefix = "corral-";

/**
 * Bounds on what one refusal puts into the response's headers. A client refuses a header block of
 * more than a few KiB (grpc-js: 8 KiB by default) and then reports RESOURCE_EXHAUSTED instead of the
 * status, so a message quoting a long user value is cut, and so is each detail.
 */
const statusLimits = {
  messageChars: 1024,
  /** The message once percent-encoded (grpc-message): non-ASCII text takes up to 9 bytes a character. */
  messageEncodedBytes: 3072,
  details: 8,
  detailKeyChars: 48,
  detailValueChars: 128,
  detailEncodedBytes: 512,
} as const;

/** The status message a client is sent: well formed, no control characters but newlines, bounded. */
export function statusMessage(message: string): string {
  return fitEncoded(shownMessage(message, statusLimits.messageChars), statusLimits.messageEncodedBytes);
}

/** The `corral-*` entries for a CorralError's details: ASCII keys, percent-encoded values, bounded. */
function encodedDetails(details: Readonly<Record<string, string>>): [string, string][] {
  return Object.entries(details)
    .slice(0, statusLimits.details)
    .map(([key, value]) => [
      `${detailPrefix}${key
        .toLowerCase()
        .replace(/[^a-z0-9_.-]/g, "-")
        .slice(0, statusLimits.detailKeyChars)}`,
      fitPercentEncoded(shownValue(String(value), statusLimits.detailValueChars)),
    ]);
}

export function toGrpcStatus(error: unknown): Partial<StatusObject> & { code: GrpcStatus; details: string } {
  const corral = CorralError.from(error);
  const metadata = new Metadata();
  for (const [key, value] of encodedDetails(corral.details)) metadata.set(key, value);
  // grpc-js percent-encodes `details` into grpc-message itself (encodeURI); it must be well formed.
  return { code: grpcStatusOf[corral.code] as GrpcStatus, details: statusMessage(corral.message), metadata };
}

/** The details a peer sent as `corral-*` metadata, decoded (keys lose the prefix, and are lower case). */
export function detailsFromMetadata(
  entries: Iterable<[string, unknown]>,
): Record<string, string> | undefined {
  let details: Record<string, string> | undefined;
  for (const [key, value] of entries) {
    if (!key.startsWith(detailPrefix) || typeof value !== "string") continue;
    details ??= {};
    details[key.slice(detailPrefix.length)] = percentDecode(value);
  }
  return details;
}

/** Turns a status received from a peer (a forwarded call) back into a CorralError, details included. */
export function fromGrpcStatus(code: number, details: string, metadata?: Metadata): CorralError {
  const decoded =
    metadata === undefined
      ? undefined
      : detailsFromMetadata(
          Object.entries(metadata.getMap()).map(([key, value]) => [key, value] as [string, unknown]),
        );
  return new CorralError(
    codeOfGrpcStatus.get(code) ?? "UNKNOWN",
    details,
    decoded === undefined ? undefined : { details: decoded },
  );
}

/** The same mapping for the Connect / gRPC-Web face served to browsers. */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  const corral = CorralError.from(error);
  const connectError = new ConnectError(
    statusMessage(corral.message),
    grpcStatusOf[corral.code] as Code,
    undefined,
    undefined,
    error,
  );
  // Header values must be ASCII (Headers.set throws on anything else): the same encoding as gRPC's.
  for (const [key, value] of encodedDetails(corral.details)) connectError.metadata.set(key, value);
  return connectError;
}

/**
 * gRPC's percent-encoding (the one grpc-message uses): printable ASCII but `%` as is, every other
 * UTF-8 byte as %XX. Values that are plain ASCII (`access-table`, a revision) read unchanged.
 */
export function percentEncode(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export function percentDecode(text: string): string {
  if (!text.includes("%")) return text;
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const hex = text.slice(i + 1, i + 3);
    if (text[i] === "%" && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else bytes.push(...Buffer.from(text[i] as string, "utf8"));
  }
  return Buffer.from(bytes).toString("utf8");
}

/** Percent-encodes a detail value, cut (with …) so that the encoded form stays within its bound. */
function fitPercentEncoded(text: string): string {
  return percentEncode(fit(text, statusLimits.detailEncodedBytes, percentEncodedSize));
}

function utf8Size(codePoint: number): number {
  return codePoint < 0x80 ? 1 : codePoint < 0x800 ? 2 : codePoint < 0x10000 ? 3 : 4;
}

/** What percentEncode makes of one character. */
function percentEncodedSize(codePoint: number): number {
  return codePoint >= 0x20 && codePoint <= 0x7e && codePoint !== 0x25 ? 1 : 3 * utf8Size(codePoint);
}

/** Characters `encodeURI` leaves alone (grpc-js encodes status messages with it). */
const uriUnescaped = /[A-Za-z0-9;,/?:@&=+$\-_.!~*'()#]/;

function uriEncodedSize(codePoint: number): number {
  if (codePoint < 0x80 && uriUnescaped.test(String.fromCharCode(codePoint))) return 1;
  return 3 * utf8Size(codePoint);
}

/** Cuts a message so that grpc-js's percent-encoding of it stays within `maxBytes`. */
function fitEncoded(text: string, maxBytes: number): string {
  return fit(text, maxBytes, uriEncodedSize);
}

/** The longest start of `text` (plus …) whose encoding, by `size` a character, fits in `maxBytes`. */
function fit(text: string, maxBytes: number, size: (codePoint: number) => number): string {
  const room = maxBytes - size(0x2026);
  let total = 0;
  let end = -1;
  let at = 0;
  for (const char of text) {
    total += size(char.codePointAt(0) ?? 0);
    if (end < 0 && total > room) end = at;
    if (total > maxBytes) return `${text.slice(0, end)}…`;
    at += char.length;
  }
  return text;
}
