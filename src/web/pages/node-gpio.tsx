import { useEffect, useState } from "react";
import { PinDirection, type PinInfo, PinPull, type PwmState } from "../../gen/corral/v1/hardware_pb.ts";
import { errorText } from "../api/errors.ts";
import { follow } from "../api/follow.ts";
import { useSession } from "../live/session.ts";

const writePath = "/corral.v1.HardwareService/WritePin";
const configurePath = "/corral.v1.HardwareService/ConfigurePin";

const pullText: Record<PinPull, string> = {
  [PinPull.UNSPECIFIED]: "",
  [PinPull.NONE]: "",
  [PinPull.UP]: "pull-up",
  [PinPull.DOWN]: "pull-down",
};

function pwmText(pwm: PwmState): string {
  if (!pwm.enabled) return "PWM off";
  return `PWM ${(pwm.dutyCycle * 100).toFixed(0)}% · ${pwm.frequencyHz} Hz${pwm.hardware ? "" : " (sw)"}`;
}

/** The node's GPIO lines with their levels, live from WatchPins; operators get a toggle per line. */
export function NodeGpio({ nodeId }: { nodeId: string }) {
  const { clients, can } = useSession();
  const mayWrite = can(writePath);
  const [chip, setChip] = useState("");
  const [backend, setBackend] = useState("");
  const [pins, setPins] = useState<Map<number, PinInfo>>(new Map());
  const [levels, setLevels] = useState<Map<number, number>>(new Map());
  const [error, setError] = useState("");
  const [busy, setBusy] = useState<number | undefined>();
  const [showAll, setShowAll] = useState(false);
  const [pwm, setPwm] = useState<Map<number, PwmState>>(new Map());

  useEffect(() => {
    const stop = new AbortController();
    follow(
      (signal) => clients.hardware.watchPins({ nodeId, chip: "" }, { signal }),
      {
        onConnect: async () => {
          const list = await clients.hardware.listPins({ nodeId, chip: "" }, { signal: stop.signal });
          setChip(list.chip);
          setBackend(list.backend);
          setPins(new Map(list.pins.map((p) => [p.pin, p])));
          setLevels(new Map(list.pins.map((p) => [p.pin, p.level])));
          setError("");
          // PWM has no watch: read the state of each line the node says carries a signal.
          const withPwm = list.pins.filter((p) => p.pwm);
          const states = await Promise.all(
            withPwm.map((p) =>
              clients.hardware
                .getPwm({ nodeId, chip: list.chip, pin: p.pin }, { signal: stop.signal })
                .then((r) => r.pwm)
                .catch(() => undefined),
            ),
          );
          setPwm(new Map(states.flatMap((st) => (st === undefined ? [] : [[st.pin, st] as const]))));
        },
        onItem: ({ event }) => {
          if (event === undefined) return;
          setLevels((current) => new Map(current).set(event.pin, event.level));
        },
        onState: (state, e) => {
          if (state === "failed" || state === "retrying") setError(e === undefined ? "" : errorText(e));
        },
      },
      stop.signal,
    );
    return () => stop.abort();
  }, [clients, nodeId]);

  const toggle = async (pin: number) => {
    setBusy(pin);
    setError("");
    try {
      const level = levels.get(pin) === 1 ? 0 : 1;
      const written = await clients.hardware.writePin({ nodeId, chip, pin, level });
      // The write also makes the line an output: keep its configuration current (the watch sends levels).
      const info = written.pin;
      if (info !== undefined) setPins((current) => new Map(current).set(info.pin, info));
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(undefined);
    }
  };

  // The usual header pins first (a Raspberry Pi's GPIO 2–27); the rest on request.
  const shown = [...pins.values()]
    .filter((p) => showAll || (p.pin >= 2 && p.pin <= 27))
    .sort((a, b) => a.pin - b.pin);
  return (
    <div>
      <p className="muted small">
        {chip === "" ? "…" : `${chip} · ${backend}`}
        {!mayWrite && " · your role can watch the pins but not drive them"}
      </p>
      {error !== "" && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="pins" data-testid="pins">
        {shown.map((p) => {
          const level = levels.get(p.pin) ?? p.level;
          return (
            <div key={p.pin} className={`pin level-${level}`} data-pin={p.pin} data-level={level}>
              <div className="pin-name">
                GPIO{p.pin}
                {p.name !== "" && p.name !== `GPIO${p.pin}` && <span className="muted"> {p.name}</span>}
              </div>
              <div className="pin-state">
                <span className="led" /> {level === 1 ? "HIGH" : "LOW"}
                <span className="muted small">
                  {" "}
                  {p.config?.direction === PinDirection.OUTPUT ? "out" : "in"}
                  {p.config !== undefined &&
                    pullText[p.config.pull] !== "" &&
                    ` · ${pullText[p.config.pull]}`}
                  {p.config?.activeLow && " · active-low"}
                </span>
              </div>
              {pwm.has(p.pin) && (
                <div className="pin-pwm small" data-testid="pin-pwm">
                  {pwmText(pwm.get(p.pin) as PwmState)}
                </div>
              )}
              {mayWrite && (
                <button
                  type="button"
                  className="small"
                  disabled={busy !== undefined}
                  onClick={() => void toggle(p.pin)}
                >
                  {level === 1 ? "Set low" : "Set high"}
                </button>
              )}
            </div>
          );
        })}
      </div>
      {can(configurePath) && chip !== "" && (
        <PinConfigForm
          nodeId={nodeId}
          chip={chip}
          pins={[...pins.keys()].sort((a, b) => a - b)}
          onConfigured={(info) => {
            setPins((current) => new Map(current).set(info.pin, info));
            setLevels((current) => new Map(current).set(info.pin, info.level));
          }}
          onError={setError}
        />
      )}
      {pins.size > shown.length || showAll ? (
        <button type="button" className="ghost small" onClick={() => setShowAll((v) => !v)}>
          {showAll ? "Header pins only" : `All ${pins.size} lines`}
        </button>
      ) : null}
    </div>
  );
}

/** Direction and pull of one line, for operators (ConfigurePin; the watch then follows the line). */
function PinConfigForm({
  nodeId,
  chip,
  pins,
  onConfigured,
  onError,
}: {
  nodeId: string;
  chip: string;
  pins: readonly number[];
  onConfigured: (info: PinInfo) => void;
  onError: (error: string) => void;
}) {
  const { clients } = useSession();
  const [pin, setPin] = useState(pins.includes(17) ? 17 : (pins[0] ?? 0));
  const [direction, setDirection] = useState<PinDirection>(PinDirection.INPUT);
  const [pull, setPull] = useState<PinPull>(PinPull.NONE);
  const [saving, setSaving] = useState(false);
  const apply = async () => {
    setSaving(true);
    onError("");
    try {
      const { pin: info } = await clients.hardware.configurePin({
        nodeId,
        chip,
        pin,
        config: { direction, pull: direction === PinDirection.INPUT ? pull : PinPull.NONE },
      });
      if (info !== undefined) onConfigured(info);
    } catch (e) {
      onError(errorText(e));
    } finally {
      setSaving(false);
    }
  };
  return (
    <div className="form-row pin-config" data-testid="pin-config">
      <strong>Configure</strong>
      <label>
        Pin
        <select aria-label="pin to configure" value={pin} onChange={(e) => setPin(Number(e.target.value))}>
          {pins.map((p) => (
            <option key={p} value={p}>
              GPIO{p}
            </option>
          ))}
        </select>
      </label>
      <label>
        Direction
        <select
          aria-label="pin direction"
          value={direction}
          onChange={(e) => setDirection(Number(e.target.value) as PinDirection)}
        >
          <option value={PinDirection.INPUT}>input</option>
          <option value={PinDirection.OUTPUT}>output</option>
        </select>
      </label>
      <label>
        Pull
        <select
          aria-label="pin pull"
          value={pull}
          disabled={direction !== PinDirection.INPUT}
          onChange={(e) => setPull(Number(e.target.value) as PinPull)}
        >
          <option value={PinPull.NONE}>none</option>
          <option value={PinPull.UP}>up</option>
          <option value={PinPull.DOWN}>down</option>
        </select>
      </label>
      <button type="button" className="small" disabled={saving} onClick={() => void apply()}>
        Apply
      </button>
    </div>
  );
}
