// A run worker that ignores stop: it starts a process group (a shell and its background child),
// reports the group like the real runtime does, and spins forever once asked to stop.
import { spawn } from "node:child_process";
import { parentPort } from "node:worker_threads";

const child = spawn("/bin/sh", ["-c", "sleep 300 & exec sleep 301"], { detached: true, stdio: "ignore" });
parentPort.postMessage({ type: "child", pid: child.pid });
parentPort.postMessage({ type: "stats", blocks: { stuck: { pid: child.pid } } });
parentPort.postMessage({ type: "ready" });
parentPort.on("message", (message) => {
  if (message.type === "stop") for (;;) {}
});
