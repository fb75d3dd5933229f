import type { HandlerContext } from "@connectrpc/connect";

/** The caller's address as the transport saw it (`ipv4:127.0.0.1:5555` on gRPC), or "unknown". */
export function peerOf(ctx: HandlerContext): string {
  const peer = (ctx as HandlerContext & { peer?: unknown }).peer;
  return typeof peer === "string" && peer !== "" ? peer : "unknown";
}

/** The host part of a grpc-js peer string, for per-source limits. */
export function peerHost(ctx: HandlerContext): string {
  const peer = peerOf(ctx).replace(/^ipv[46]:/, "");
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(peer);
  if (v6?.[1] !== undefined) return v6[1];
  return peer.replace(/:\d+$/, "");
}
