import type { MessageInitShape } from "@bufbuild/protobuf";
import { CorralError } from "../base/errors.ts";
import type {
  StepEvent,
  StepSpec,
  StepStatus,
  SystemdAction,
} from "../core/provisioning/provisioning-step.ts";
import {
  type RunStepsResponse,
  type RunStepsResponseSchema,
  type StepSpec as StepSpecMessage,
  type StepSpecSchema,
  StepStatus as StepStatusMessage,
} from "../gen/corral/v1/provisioning_pb.ts";

/** corral.v1.ProvisioningAgentService messages ↔ the core's step model: the controller and the agent both use it. */

const statusToWire: Readonly<Record<StepStatus, StepStatusMessage>> = {
  pending: StepStatusMessage.PENDING,
  running: StepStatusMessage.RUNNING,
  succeeded: StepStatusMessage.SUCCEEDED,
  failed: StepStatusMessage.FAILED,
  skipped: StepStatusMessage.SKIPPED,
  unchanged: StepStatusMessage.UNCHANGED,
};

export function stepStatusToWire(status: StepStatus): StepStatusMessage {
  return statusToWire[status];
}

export function stepStatusFromWire(status: StepStatusMessage): StepStatus {
  const found = (Object.keys(statusToWire) as StepStatus[]).find((key) => statusToWire[key] === status);
  if (found === undefined) throw new CorralError("INTERNAL", `step status ${status} is not known`);
  return found;
}

const ms = (value: number | undefined) => BigInt(value ?? 0);

export function stepToWire(step: StepSpec): MessageInitShape<typeof StepSpecSchema> {
  switch (step.kind) {
    case "exec":
      return {
        name: step.name,
        kind: {
          case: "exec",
          value: {
            argv: step.exec.argv,
            creates: step.exec.creates ?? "",
            unless: step.exec.unless ?? [],
            cwd: step.exec.cwd ?? "",
            env: step.exec.env ?? {},
            timeoutMs: ms(step.exec.timeoutMs),
            root: step.exec.root === true,
          },
        },
      };
    case "file":
      return {
        name: step.name,
        kind: {
          case: "file",
          value: {
            path: step.file.path,
            content: step.file.content,
            mode: step.file.mode,
            owner: step.file.owner ?? "",
            roots: step.file.roots ?? [],
          },
        },
      };
    case "systemd":
      return {
        name: step.name,
        kind: {
          case: "systemd",
          value: {
            unit: step.systemd.unit,
            action: step.systemd.action,
            timeoutMs: ms(step.systemd.timeoutMs),
          },
        },
      };
    case "waitFor": {
      const c = step.waitFor.condition;
      const condition =
        "exec" in c
          ? { case: "exec" as const, value: { argv: c.exec } }
          : "file" in c
            ? { case: "file" as const, value: c.file }
            : { case: "tcp" as const, value: c.tcp };
      return {
        name: step.name,
        kind: {
          case: "waitFor",
          value: {
            condition,
            timeoutMs: ms(step.waitFor.timeoutMs),
            intervalMs: ms(step.waitFor.intervalMs),
            root: step.waitFor.root === true,
          },
        },
      };
    }
  }
}

const optionalMs = (value: bigint) => (value > 0n ? { timeoutMs: Number(value) } : {});

/** The step a message describes; shape only — checkStep decides whether it may run. */
export function stepFromWire(message: StepSpecMessage, field: string): StepSpec {
  const kind = message.kind;
  switch (kind.case) {
    case "exec": {
      const e = kind.value;
      return {
        name: message.name,
        kind: "exec",
        exec: {
          argv: e.argv,
          ...(e.creates === "" ? {} : { creates: e.creates }),
          ...(e.unless.length === 0 ? {} : { unless: e.unless }),
          ...(e.cwd === "" ? {} : { cwd: e.cwd }),
          ...(Object.keys(e.env).length === 0 ? {} : { env: e.env }),
          ...optionalMs(e.timeoutMs),
          ...(e.root ? { root: true } : {}),
        },
      };
    }
    case "file":
      return {
        name: message.name,
        kind: "file",
        file: {
          path: kind.value.path,
          content: kind.value.content,
          mode: kind.value.mode,
          ...(kind.value.owner === "" ? {} : { owner: kind.value.owner }),
          ...(kind.value.roots.length === 0 ? {} : { roots: kind.value.roots }),
        },
      };
    case "systemd":
      return {
        name: message.name,
        kind: "systemd",
        systemd: {
          unit: kind.value.unit,
          action: kind.value.action as SystemdAction,
          ...optionalMs(kind.value.timeoutMs),
        },
      };
    case "waitFor": {
      const w = kind.value;
      const c = w.condition;
      const condition =
        c.case === "exec"
          ? { exec: c.value.argv }
          : c.case === "file"
            ? { file: c.value }
            : c.case === "tcp"
              ? { tcp: c.value }
              : undefined;
      if (condition === undefined) throw CorralError.invalidArgument(`${field}.waitFor`, "has no condition");
      return {
        name: message.name,
        kind: "waitFor",
        waitFor: {
          condition,
          timeoutMs: Number(w.timeoutMs),
          intervalMs: Number(w.intervalMs),
          ...(w.root ? { root: true } : {}),
        },
      };
    }
    default:
      throw CorralError.invalidArgument(field, "is not an exec, file, systemd or waitFor step");
  }
}

export function eventToWire(event: StepEvent): MessageInitShape<typeof RunStepsResponseSchema> {
  return {
    index: event.index,
    status: stepStatusToWire(event.status),
    output: event.output ?? "",
    outputTruncated: event.outputTruncated ?? false,
    message: event.message ?? "",
    exitCode: event.exitCode ?? -1,
    timestampMs: BigInt(event.at),
  };
}

export function eventFromWire(message: RunStepsResponse): StepEvent {
  return {
    index: message.index,
    status: stepStatusFromWire(message.status),
    ...(message.output === "" ? {} : { output: message.output }),
    ...(message.outputTruncated ? { outputTruncated: true } : {}),
    ...(message.message === "" ? {} : { message: message.message }),
    ...(message.exitCode === -1 ? {} : { exitCode: message.exitCode }),
    at: Number(message.timestampMs),
  };
}
