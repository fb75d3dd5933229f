import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type ChannelCredentials, Client, Metadata, type ServiceError } from "@grpc/grpc-js";
import {
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
  ServerReflectionResponseSchema,
  ServerReflection as ServerReflectionV1,
} from "../../src/gen/grpc/reflection/v1/reflection_pb.ts";

/**
 * The places the fuzzer sends requests to, each behind one `call(path, body)` that never throws: a
 * gRPC listener through grpc-js (raw bytes in, raw bytes out), or the web listener in the Connect
 * protocol over plain HTTP.
 */

/** A call's outcome: the gRPC status name ("OK", "INVALID_ARGUMENT", …) and its message. */
export interface Outcome {
  readonly code: string;
  readonly message: string;
  /** The response's bytes, when the call succeeded over gRPC. */
  readonly response?: Buffer;
}

export const grpcCodeNames = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

export type Caller = (path: string, body: Buffer) => Promise<Outcome>;

const raw = (bytes: Buffer): Buffer => bytes;

/** Unary calls over one grpc-js channel; `bearer` adds `authorization: Bearer …` to each. */
export function grpcCaller(
  address: string,
  credentials: ChannelCredentials,
  options: { bearer?: string; deadlineMs?: number } = {},
): { call: Caller; client: Client } {
  // The controller's certificate names localhost; an IP as TLS server name draws a warning.
  const client = new Client(address, credentials, { "grpc.ssl_target_name_override": "localhost" });
  const call: Caller = (path, body) =>
    new Promise((resolve) => {
      const metadata = new Metadata();
      if (options.bearer !== undefined) metadata.set("authorization", `Bearer ${options.bearer}`);
      const deadline = Date.now() + (options.deadlineMs ?? 5_000);
      client.makeUnaryRequest(
        path,
        raw,
        raw,
        body,
        metadata,
        { deadline },
        (error: ServiceError | null, response?: Buffer) =>
          resolve({
            code: grpcCodeNames[error?.code ?? 0] ?? `CODE_${error?.code}`,
            message: error?.details ?? "",
            ...(response === undefined ? {} : { response }),
          }),
      );
    });
  return { call, client };
}

/** Unary calls in the Connect protocol (binary), what a browser's client could send to the web listener. */
export function connectCaller(
  baseUrl: string,
  options: { bearer?: string; deadlineMs?: number } = {},
): Caller {
  return async (path, body) => {
    const headers: Record<string, string> = {
      "content-type": "application/proto",
      "connect-protocol-version": "1",
    };
    if (options.bearer !== undefined) headers.authorization = `Bearer ${options.bearer}`;
    try {
      const response = await fetch(`${baseUrl}${path}`, {
        method: "POST",
        headers,
        body,
        signal: AbortSignal.timeout(options.deadlineMs ?? 5_000),
      });
      const text = await response.text();
      if (response.status === 200) return { code: "OK", message: "" };
      try {
        const error = JSON.parse(text) as { code?: string; message?: string };
        return {
          code: (error.code ?? `HTTP_${response.status}`).toUpperCase(),
          message: error.message ?? "",
        };
      } catch {
        return { code: `HTTP_${response.status}`, message: text.slice(0, 200) };
      }
    } catch (error) {
      return { code: "TRANSPORT_ERROR", message: String(error) };
    }
  };
}

/** The names of the services a gRPC listener serves, as its reflection lists them. */
export function listServices(client: Client): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const call = client.makeBidiStreamRequest(
      `/${ServerReflectionV1.typeName}/ServerReflectionInfo`,
      () =>
        Buffer.from(
          toBinary(
            ServerReflectionRequestSchema,
            create(ServerReflectionRequestSchema, {
              messageRequest: { case: "listServices", value: "" },
            }),
          ),
        ),
      (bytes: Buffer) => fromBinary(ServerReflectionResponseSchema, bytes),
      new Metadata(),
      { deadline: Date.now() + 10_000 },
    );
    call.on("data", (answer: ServerReflectionResponse) => {
      assert.equal(answer.messageResponse.case, "listServicesResponse");
      if (answer.messageResponse.case === "listServicesResponse")
        resolve(answer.messageResponse.value.service.map((s) => s.name));
      call.cancel();
    });
    call.on("error", (error) => reject(error));
    call.write({});
    call.end();
  });
}
