import { execFileSync } from "node:child_process";
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { CorralError } from "../base/errors.ts";
import { defaults } from "../defaults.ts";

/**
 * Who the programs an agent starts for others (pipeline `process` blocks, provisioning `exec` steps)
 * run as. A plain object: it crosses into the pipeline worker thread as workerData.
 */
export interface RunAs {
  readonly user: string;
  readonly uid: number;
  readonly gid: number;
  /** HOME for the child: the user's home when it is a directory, else the temp dir. */
  readonly home: string;
  /** True when the child gets another uid than the agent's (spawn's uid/gid options are set). */
  readonly switchUser: boolean;
}

interface PasswdEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

function parsePasswdLine(line: string): PasswdEntry | undefined {
  const [name, , uid, gid, , home] = line.split(":");
  if (name === undefined || uid === undefined || gid === undefined) return undefined;
  if (!/^\d+$/.test(uid) || !/^\d+$/.test(gid)) return undefined;
  return { name, uid: Number(uid), gid: Number(gid), home: home ?? "/" };
}

/**
 * A user by name or uid: /etc/passwd first, then `getent passwd` (NSS: LDAP, systemd-userdb). Node's
 * os.userInfo only knows the current user.
 */
function lookupUser(nameOrUid: string): PasswdEntry | undefined {
  const matches = (entry: PasswdEntry | undefined) =>
    entry !== undefined && (entry.name === nameOrUid || String(entry.uid) === nameOrUid);
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const entry = parsePasswdLine(line);
      if (matches(entry)) return entry;
    }
  } catch {
    // no /etc/passwd: NSS may still know the user
  }
  try {
    const out = execFileSync("getent", ["passwd", nameOrUid], { encoding: "utf8", timeout: 5_000 });
    const entry = parsePasswdLine(out.split("\n")[0] ?? "");
    if (matches(entry)) return entry;
  } catch {
    // getent missing, or no such user (exit 2)
  }
  return undefined;
}

const isDirectory = (path: string) => {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
};

/**
 * Resolves the `--run-as` setting. "auto" (the default): `nobody` when the agent is root, the agent's own
 * user otherwise; "root": root, only when asked for by name; any other name or uid: that user, which
 * needs an agent running as root (a non-root agent cannot switch users, so it refuses to start).
 */
export function resolveRunAs(setting: string = defaults.agent.runAs, what = "--run-as"): RunAs {
  const self = userInfo();
  const agentIsRoot = process.geteuid?.() === 0;
  const wanted = setting.trim();
  if (wanted === "") throw CorralError.invalidArgument(what, "must name a user, a uid, auto or root");
  if (wanted === "auto" && !agentIsRoot) {
    return {
      user: self.username,
      uid: self.uid,
      gid: self.gid,
      home: isDirectory(self.homedir) ? self.homedir : tmpdir(),
      switchUser: false,
    };
  }
  const name = wanted === "auto" ? defaults.agent.runAsWhenRoot : wanted;
  const entry = lookupUser(name);
  if (entry === undefined)
    throw new CorralError(
      "FAILED_PRECONDITION",
      `${what}: no user "${name}" on this node (looked in /etc/passwd and getent passwd); create it or set ${what} to another user`,
    );
  if (entry.uid !== self.uid && !agentIsRoot)
    throw new CorralError(
      "FAILED_PRECONDITION",
      `${what} ${name}: the agent runs as ${self.username}, not root, so it cannot start programs as another user; leave ${what} unset to use ${self.username}`,
    );
  return {
    user: entry.name,
    uid: entry.uid,
    gid: entry.gid,
    home: isDirectory(entry.home) ? entry.home : tmpdir(),
    switchUser: entry.uid !== self.uid,
  };
}

/** The agent's own identity (provisioning `systemd` steps: systemctl needs the agent's rights). */
export function agentIdentity(): RunAs {
  const self = userInfo();
  return {
    user: self.username,
    uid: self.uid,
    gid: self.gid,
    home: isDirectory(self.homedir) ? self.homedir : tmpdir(),
    switchUser: false,
  };
}

let setprivPath: string | null | undefined;

/**
 * util-linux's setpriv, when installed: it sets PR_SET_PDEATHSIG and execs the program, so the program
 * is killed when the thread that started it ends (the agent killed with -9 included). Looked up once,
 * in the safe path only.
 */
function setpriv(): string | undefined {
  if (setprivPath === undefined) {
    setprivPath = null;
    for (const dir of defaults.agentDiagnostics.exec.safePath.split(":")) {
      const candidate = join(dir, "setpriv");
      if (executable(candidate)) {
        setprivPath = candidate;
        break;
      }
    }
  }
  return setprivPath ?? undefined;
}

/**
 * `file args` started through setpriv so that it gets `signal` when the thread that starts it ends
 * (where setpriv is installed; as it is otherwise). For children that must not outlive their parent
 * even when the parent is killed with -9, such as the demo's agents.
 */
export function withParentDeathSignal(
  file: string,
  args: readonly string[],
  signal: "TERM" | "KILL" = "TERM",
): { file: string; args: string[] } {
  const wrapper = setpriv();
  return wrapper === undefined
    ? { file, args: [...args] }
    : { file: wrapper, args: [`--pdeathsig=${signal}`, "--", file, ...args] };
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Whether `program` would be found the way execvp finds it (PATH search for bare names). */
function findable(program: string, path: string, cwd: string): boolean {
  if (program.includes("/")) return executable(isAbsolute(program) ? program : resolve(cwd, program));
  return path.split(delimiter).some((dir) => dir !== "" && executable(join(dir, program)));
}

export interface LaunchRequest {
  readonly argv: readonly string[];
  readonly runAs: RunAs;
  /** The caller's own variables (a block's env, a step's env); nothing else of the agent's is passed. */
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
}

export interface Launch {
  readonly file: string;
  readonly args: string[];
  readonly options: {
    env: Record<string, string>;
    cwd?: string;
    uid?: number;
    gid?: number;
  };
}

/**
 * How to spawn a program for someone else: a clean environment (PATH, HOME, USER, LOGNAME, LANG and the
 * caller's own variables: none of the agent's secrets), the run-as user's uid/gid (libuv also drops the
 * supplementary groups), a working dir that user can use, and, where setpriv exists, a parent-death
 * signal so that the program dies with the thread that started it. argv[0] is kept as given (setpriv
 * execs it by PATH), so /proc shows the program, not the wrapper.
 */
export function launchSpec(request: LaunchRequest): Launch {
  const [program, ...args] = request.argv as [string, ...string[]];
  const { runAs } = request;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? defaults.agentDiagnostics.exec.safePath,
    HOME: runAs.home,
    USER: runAs.user,
    LOGNAME: runAs.user,
    ...(process.env.LANG === undefined ? {} : { LANG: process.env.LANG }),
    ...request.env,
  };
  // A switched user cannot enter the agent's own cwd (its data dir, often): the temp dir instead.
  const cwd = request.cwd ?? (runAs.switchUser ? tmpdir() : undefined);
  const options = {
    env,
    ...(cwd === undefined ? {} : { cwd }),
    ...(runAs.switchUser ? { uid: runAs.uid, gid: runAs.gid } : {}),
  };
  const wrapper = setpriv();
  // A program that cannot be found is spawned directly, so the caller sees spawn's own ENOENT/EACCES.
  if (wrapper !== undefined && findable(program, env.PATH ?? "", cwd ?? process.cwd()))
    return { file: wrapper, args: ["--pdeathsig", "KILL", "--", program, ...args], options };
  return { file: program, args, options };
}
