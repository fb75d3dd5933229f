import { Code, ConnectError } from "@connectrpc/connect";

export function errorText(error: unknown): string {
  if (error instanceof ConnectError) return `${Code[error.code] ?? error.code}: ${error.rawMessage}`;
  return error instanceof Error ? error.message : String(error);
}

export function codeOf(error: unknown): Code | undefined {
  return error instanceof ConnectError ? error.code : undefined;
}

/** Failures that a retry cannot fix: the page says so instead of reconnecting forever. */
export function isFinal(error: unknown): boolean {
  const code = codeOf(error);
  return (
    code === Code.Unauthenticated ||
    code === Code.PermissionDenied ||
    code === Code.Unimplemented ||
    code === Code.InvalidArgument ||
    code === Code.NotFound
  );
}
