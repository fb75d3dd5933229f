/**
 * Calls grpc.health.v1.Health/Check on `<address>` (plaintext) every `<every ms>`, without waiting for
 * the previous answer (a wedged server shows as calls that take long, not as fewer calls), and reports
 * each call's send time and latency to the parent over IPC. A call has 60 s to answer.
 *
 *   prober.ts <address> <every ms>
 */
import * as grpc from "@grpc/grpc-js";

const [address, everyText = "100"] = process.argv.slice(2);
if (address === undefined) throw new Error("usage: prober.ts <address> <every ms>");
const client = new grpc.Client(address, grpc.credentials.createInsecure());
const raw = (bytes: Buffer) => bytes;
// HealthCheckRequest with service "" is the empty message.
const request = Buffer.alloc(0);
const outstanding = new Map<number, number>();
let next = 0;
const probe = () => {
  const id = next++;
  const sentAt = Date.now();
  const started = performance.now();
  outstanding.set(id, sentAt);
  client.makeUnaryRequest(
    "/grpc.health.v1.Health/Check",
    raw,
    raw,
    request,
    { deadline: sentAt + 60_000 },
    (error) => {
      outstanding.delete(id);
      process.send?.({ sentAt, ms: performance.now() - started, ok: error === null });
    },
  );
};
const timer = setInterval(probe, Number(everyText));
process.on("message", (message: { stop?: boolean }) => {
  if (!message.stop) return;
  clearInterval(timer);
  // Calls still unanswered count with the time they have waited so far.
  const now = Date.now();
  for (const sentAt of outstanding.values()) process.send?.({ sentAt, ms: now - sentAt, ok: false });
  client.close();
  process.send?.({ done: true }, () => process.exit(0));
});
process.on("disconnect", () => process.exit(0));
