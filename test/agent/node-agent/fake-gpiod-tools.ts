import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";

/**
 * Stand-ins for the libgpiod v1 tools (Debian 12's gpiod 1.6.3), as shell scripts, for machines without
 * a GPIO character device (no gpio-sim / gpio-mockup module can be loaded here). They keep line state in
 * `stateDir` the way the kernel would: a line held by a process is "used" by its consumer until that
 * process exits; a second request of a held line fails with EBUSY; gpioset in signal mode holds its line
 * until SIGTERM. Their output and error messages are the real tools' (captured from gpiod 1.6.3).
 * Every call is appended to `stateDir/log`, one line each.
 */
export interface FakeGpiodTools {
  toolDir: string;
  stateDir: string;
  /** Marks a line as held by another process (as a kernel driver or another program would hold it). */
  holdByOther(chip: string, pin: number, consumer: string): Promise<void>;
  /** The calls so far, one string a call: "<tool> <args…>". */
  log(): Promise<string[]>;
  /** The pids of gpioset processes that are holding a line now. */
  holderPids(): Promise<number[]>;
}

export async function writeFakeGpiodTools(
  root: string,
  chips: ReadonlyArray<{ name: string; label: string; lines: number }> = [
    { name: "gpiochip0", label: "pinctrl-bcm2711", lines: 54 },
    { name: "gpiochip1", label: "raspberrypi-exp-gpio", lines: 8 },
  ],
): Promise<FakeGpiodTools> {
  const toolDir = path.join(root, "bin");
  const stateDir = path.join(root, "state");
  await mkdir(toolDir, { recursive: true });
  await mkdir(stateDir, { recursive: true });
  const q = (text: string) => `'${text.replaceAll("'", "'\\''")}'`;
  const lineCount = chips.map((chip) => `  ${chip.name}) n=${chip.lines};;`).join("\n");
  const common = `#!/bin/sh
S=${q(stateDir)}
lines_of() {
  case "$1" in
${lineCount}
  *) n=0;;
  esac
}
`;
  const tools: Record<string, string> = {
    gpiodetect: `${common}
echo "gpiodetect $*" >> "$S/log"
${chips.map((chip) => `echo ${q(`${chip.name} [${chip.label}] (${chip.lines} lines)`)}`).join("\n")}
`,
    gpioinfo: `${common}
echo "gpioinfo $*" >> "$S/log"
chip=$1
lines_of "$chip"
if [ "$n" = 0 ]; then echo "gpioinfo: looking up chip $chip: No such file or directory" >&2; exit 1; fi
echo "$chip - $n lines:"
i=0
while [ $i -lt $n ]; do
  if [ -d "$S/$chip.$i.lock" ]; then
    c=$(cat "$S/$chip.$i.lock/consumer" 2>/dev/null)
    printf '\\tline %3d:      unnamed %11s  output  active-high [used]\\n' $i "\\"$c\\""
  else
    printf '\\tline %3d:      unnamed       unused   input  active-high \\n' $i
  fi
  i=$((i+1))
done
`,
    gpioget: `${common}
echo "gpioget $*" >> "$S/log"
chip=; off=
for a in "$@"; do
  case "$a" in
    --active-low|-l|--bias=*) ;;
    -*) echo "gpioget: unrecognized option '$a'" >&2; exit 1;;
    *) if [ -z "$chip" ]; then chip=$a; else off=$a; fi;;
  esac
done
lines_of "$chip"
if [ "$n" = 0 ]; then echo "gpioget: error reading GPIO values: No such file or directory" >&2; exit 1; fi
if [ "$off" -ge "$n" ]; then echo "gpioget: error reading GPIO values: Invalid argument" >&2; exit 1; fi
if [ -d "$S/$chip.$off.lock" ]; then echo "gpioget: error reading GPIO values: Device or resource busy" >&2; exit 1; fi
cat "$S/$chip.$off.value" 2>/dev/null || echo 0
`,
    gpioset: `${common}
mode=exit; sec=0; usec=0; chip=; map=
for a in "$@"; do
  case "$a" in
    --version) echo "gpioset (libgpiod) v1.6.3"; echo "Copyright (C) 2017-2018 Bartosz Golaszewski"; exit 0;;
    --mode=*) mode=\${a#--mode=};;
    --sec=*) sec=\${a#--sec=};;
    --usec=*) usec=\${a#--usec=};;
    --active-low|--bias=*|--drive=*) ;;
    -*) echo "gpioset: unrecognized option '$a'" >&2; exit 1;;
    *=*) map=$a;;
    *) chip=$a;;
  esac
done
echo "gpioset $*" >> "$S/log"
off=\${map%=*}; val=\${map#*=}
lines_of "$chip"
if [ "$n" = 0 ]; then echo "gpioset: error setting the GPIO line values: No such file or directory" >&2; exit 1; fi
if [ "$val" != 0 ] && [ "$val" != 1 ]; then echo "gpioset: value must be 0 or 1: $map" >&2; exit 1; fi
if [ "$off" -ge "$n" ]; then echo "gpioset: error setting the GPIO line values: Invalid argument" >&2; exit 1; fi
if ! mkdir "$S/$chip.$off.lock" 2>/dev/null; then
  echo "gpioset: error setting the GPIO line values: Device or resource busy" >&2; exit 1
fi
echo gpioset > "$S/$chip.$off.lock/consumer"
echo $$ > "$S/$chip.$off.lock/pid"
echo "$val" > "$S/$chip.$off.value"
sp=
release() { [ -n "$sp" ] && kill "$sp" 2>/dev/null; rm -rf "$S/$chip.$off.lock"; exit 0; }
trap release TERM INT
case "$mode" in
  signal) sleep 3600 & sp=$!; wait "$sp"; release;;
  time) sleep "$sec.$(printf %06d "$usec")" & sp=$!; wait "$sp"; release;;
  *) release;;
esac
`,
    // Edge events: the lines the test appends to $S/mon.<chip>.<offset> ("<offset> <0|1> <sec>.<nsec>"),
    // printed as they come, until SIGTERM. Like the real gpiomon it holds its line meanwhile (a second
    // request of the line is EBUSY) and is refused a line another process holds.
    gpiomon: `${common}
chip=; off=
for a in "$@"; do
  case "$a" in
    --line-buffered|--active-low|--bias=*|--rising-edge|--falling-edge|--format=*) ;;
    -*) echo "gpiomon: unrecognized option '$a'" >&2; exit 1;;
    *) if [ -z "$chip" ]; then chip=$a; else off=$a; fi;;
  esac
done
lines_of "$chip"
if [ "$n" = 0 ]; then echo "gpiomon: error opening gpiochip: No such file or directory" >&2; exit 1; fi
if ! mkdir "$S/$chip.$off.lock" 2>/dev/null; then
  echo "gpiomon: error requesting GPIO lines: Device or resource busy" >&2; exit 1
fi
echo gpiomon > "$S/$chip.$off.lock/consumer"
: > "$S/mon.$chip.$off"
# Logged once the event file is ready, so a test that saw this line can append events.
echo "gpiomon $*" >> "$S/log"
tail -n +1 -f "$S/mon.$chip.$off" & tp=$!
release() { kill "$tp" 2>/dev/null; rm -rf "$S/$chip.$off.lock"; exit 0; }
trap release TERM INT
wait "$tp"
release
`,
  };
  for (const [name, text] of Object.entries(tools)) {
    const file = path.join(toolDir, name);
    await writeFile(file, text);
    await chmod(file, 0o755);
  }
  return {
    toolDir,
    stateDir,
    async holdByOther(chip, pin, consumer) {
      await mkdir(path.join(stateDir, `${chip}.${pin}.lock`));
      await writeFile(path.join(stateDir, `${chip}.${pin}.lock`, "consumer"), `${consumer}\n`);
    },
    async log() {
      try {
        return (await readFile(path.join(stateDir, "log"), "utf8")).split("\n").filter((line) => line !== "");
      } catch {
        return [];
      }
    },
    async holderPids() {
      const { readdir } = await import("node:fs/promises");
      const pids: number[] = [];
      for (const entry of await readdir(stateDir)) {
        if (!entry.endsWith(".lock")) continue;
        try {
          pids.push(Number((await readFile(path.join(stateDir, entry, "pid"), "utf8")).trim()));
        } catch {
          // held by "another process": no pid
        }
      }
      return pids;
    },
  };
}

export async function removeFakeGpiodTools(root: string): Promise<void> {
  await rm(root, { recursive: true, force: true });
}

/** Whether a process is alive. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
