/**
 * A response message that carries its own wire bytes. The grpc listeners send the bytes as they are
 * instead of walking the message by reflection; every other path (the web listener, an in-process
 * caller) sees an ordinary message. For hot streams whose messages have one fixed shape (log batches).
 */
export const preEncodedBytes: unique symbol = Symbol("corral.preEncodedBytes");

export interface PreEncoded {
  readonly [preEncodedBytes]: Uint8Array;
}

export function preEncodedBytesOf(message: unknown): Uint8Array | undefined {
  if (typeof message !== "object" || message === null || !(preEncodedBytes in message)) return undefined;
  return (message as PreEncoded)[preEncodedBytes];
}
