import { type FormEvent, useCallback, useEffect, useState } from "react";
import { type Device, DeviceKind, DevicesService, type Reading } from "../../gen/corral/v1/devices_pb.ts";
import { NodeStatus } from "../../gen/corral/v1/nodes_pb.ts";
import { errorText } from "../api/errors.ts";
import { follow, type LinkState } from "../api/follow.ts";
import { LiveChart } from "../components/chart.tsx";
import { Link } from "../components/link.tsx";
import { clockText, tsMs } from "../live/format.ts";
import { useCluster, useSession } from "../live/session.ts";

export const deviceKindText: Record<DeviceKind, string> = {
  [DeviceKind.UNSPECIFIED]: "?",
  [DeviceKind.DIGITAL]: "digital",
  [DeviceKind.ANALOG]: "analog",
  [DeviceKind.PWM]: "PWM",
  [DeviceKind.SPI]: "SPI",
  [DeviceKind.I2C]: "I²C",
};

const kinds = [DeviceKind.DIGITAL, DeviceKind.ANALOG, DeviceKind.PWM, DeviceKind.SPI, DeviceKind.I2C];
const rates = [1, 2, 5, 10, 25, 50];
const maxPoints = 600;
const hex = (n: number) => `0x${n.toString(16).padStart(2, "0")}`;

function whereText(d: Device): string {
  switch (d.kind) {
    case DeviceKind.DIGITAL:
    case DeviceKind.PWM:
      return `${d.chip || "chip 0"} · pin ${d.pin}`;
    case DeviceKind.ANALOG:
      return `${d.iioDevice || "iio 0"} · channel ${d.register}`;
    case DeviceKind.SPI:
      return `spidev${d.bus}.${d.chipSelect} · ${d.length} B`;
    case DeviceKind.I2C:
      return `i2c-${d.bus} · ${hex(d.address)} reg ${hex(d.register)} · ${d.length} B`;
    default:
      return "-";
  }
}

function readingText(r: Reading | undefined): string {
  if (r === undefined) return "-";
  const value = Number.isInteger(r.value) ? String(r.value) : r.value.toFixed(3);
  return `${value}${r.unit === "" ? "" : ` ${r.unit}`}`;
}

/** Named devices (DevicesService). The list has no watch; readings stream live from WatchReadings. */
export function DevicesPage() {
  const { clients, can } = useSession();
  const mayAdd = can("/corral.v1.DevicesService/AddDevice");
  const mayRemove = can("/corral.v1.DevicesService/RemoveDevice");
  const mayWrite = can("/corral.v1.DevicesService/WriteDevice");
  const [devices, setDevices] = useState<Device[]>([]);
  const [readings, setReadings] = useState<Map<string, Reading>>(new Map());
  const [selected, setSelected] = useState<string>(
    () => new URLSearchParams(window.location.search).get("device") ?? "",
  );
  const [error, setError] = useState("");
  const [loaded, setLoaded] = useState(false);

  const load = useCallback(async () => {
    try {
      const list = await clients.client(DevicesService).listDevices({});
      setDevices(list.devices);
      setError("");
    } catch (e) {
      setError(errorText(e));
    } finally {
      setLoaded(true);
    }
  }, [clients]);
  useEffect(() => {
    void load();
  }, [load]);

  const act = async (what: () => Promise<void>) => {
    setError("");
    try {
      await what();
    } catch (e) {
      setError(errorText(e));
    }
  };
  const read = (name: string) =>
    act(async () => {
      const { reading } = await clients.client(DevicesService).readDevice({ name });
      if (reading !== undefined) setReadings((m) => new Map(m).set(name, reading));
    });
  const write = (device: Device) =>
    act(async () => {
      const spiOrI2c = device.kind === DeviceKind.SPI || device.kind === DeviceKind.I2C;
      const answer = window.prompt(
        spiOrI2c
          ? `Bytes to write to ${device.name} (hex, e.g. "01 ff"):`
          : device.kind === DeviceKind.PWM
            ? `Duty cycle for ${device.name} (0 … 1):`
            : `Level for ${device.name} (0 or 1):`,
      );
      if (answer === null) return;
      const request = spiOrI2c
        ? { name: device.name, data: hexBytes(answer) }
        : { name: device.name, value: Number(answer) };
      const { reading } = await clients.client(DevicesService).writeDevice(request);
      if (reading !== undefined) setReadings((m) => new Map(m).set(device.name, reading));
    });
  const remove = (name: string) =>
    act(async () => {
      if (!window.confirm(`Remove device ${name}? Its node's hardware is left as it is.`)) return;
      await clients.client(DevicesService).removeDevice({ name });
      if (selected === name) setSelected("");
      await load();
    });

  const shown = devices.find((d) => d.name === selected);
  return (
    <div className="page">
      <h1>Devices</h1>
      {error !== "" && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {mayAdd && (
        <AddDeviceForm
          onAdded={async (name) => {
            await load();
            setSelected(name);
          }}
          onError={setError}
        />
      )}
      <div className="card">
        <table className="table" data-testid="devices">
          <thead>
            <tr>
              <th>Name</th>
              <th>Kind</th>
              <th>Node</th>
              <th>Where</th>
              <th>Last reading</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {devices.length === 0 && (
              <tr>
                <td colSpan={6} className="muted">
                  {loaded ? "No devices yet." : "Loading…"}
                  {loaded && mayAdd && " Add one above."}
                </td>
              </tr>
            )}
            {devices.map((d) => (
              <tr key={d.name} data-device={d.name} className={d.name === selected ? "selected" : ""}>
                <td className="strong">
                  {d.name}
                  {d.config.description !== undefined && (
                    <div className="muted small">{d.config.description}</div>
                  )}
                </td>
                <td>{deviceKindText[d.kind]}</td>
                <td>
                  <Link to={`/nodes/${encodeURIComponent(d.nodeId)}`}>{d.nodeName || d.nodeId}</Link>
                </td>
                <td className="mono small">{whereText(d)}</td>
                <td className="mono" data-testid="last-reading">
                  {readingText(readings.get(d.name))}
                </td>
                <td className="actions">
                  <button type="button" className="small" onClick={() => setSelected(d.name)}>
                    Chart
                  </button>
                  <button type="button" className="small ghost" onClick={() => void read(d.name)}>
                    Read
                  </button>
                  {mayWrite && d.kind !== DeviceKind.ANALOG && (
                    <button type="button" className="small ghost" onClick={() => void write(d)}>
                      Write
                    </button>
                  )}
                  {mayRemove && (
                    <button type="button" className="small danger" onClick={() => void remove(d.name)}>
                      Remove
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {shown !== undefined && <DeviceChart key={shown.name} device={shown} />}
    </div>
  );
}

function hexBytes(text: string): Uint8Array {
  const clean = text.replace(/0x/gi, "").replace(/[^0-9a-f]/gi, "");
  if (clean.length === 0 || clean.length % 2 !== 0) throw new Error(`"${text}" is not a list of hex bytes`);
  return Uint8Array.from(clean.match(/../g) ?? [], (b) => Number.parseInt(b, 16));
}

function AddDeviceForm({
  onAdded,
  onError,
}: {
  onAdded: (name: string) => Promise<void>;
  onError: (error: string) => void;
}) {
  const { clients } = useSession();
  const cluster = useCluster();
  const nodes = [...cluster.nodes.values()]
    .filter((n) => n.status !== NodeStatus.LEFT)
    .sort((a, b) => a.name.localeCompare(b.name));
  const [name, setName] = useState("");
  const [node, setNode] = useState("");
  const [kind, setKind] = useState<DeviceKind>(DeviceKind.ANALOG);
  const [pin, setPin] = useState(18);
  const [bus, setBus] = useState(1);
  const [address, setAddress] = useState("0x48");
  const [register, setRegister] = useState(0);
  const [length, setLength] = useState(2);
  const [unit, setUnit] = useState("");
  const nodeId = node === "" ? (nodes[0]?.id ?? "") : node;

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    onError("");
    try {
      await clients.client(DevicesService).addDevice({
        device: {
          name: name.trim(),
          nodeId,
          kind,
          pin,
          bus,
          address: Number.parseInt(address, address.toLowerCase().startsWith("0x") ? 16 : 10) || 0,
          register,
          length,
          config: unit.trim() === "" ? {} : { unit: unit.trim() },
        },
      });
      setName("");
      await onAdded(name.trim());
    } catch (e) {
      onError(errorText(e));
    }
  };
  const pinLike = kind === DeviceKind.DIGITAL || kind === DeviceKind.PWM;
  const busLike = kind === DeviceKind.SPI || kind === DeviceKind.I2C;
  return (
    <form className="card form-row" onSubmit={(e) => void submit(e)} data-testid="add-device">
      <h2>Add a device</h2>
      <label>
        Name
        <input aria-label="device name" value={name} onChange={(e) => setName(e.target.value)} required />
      </label>
      <label>
        Node
        <select aria-label="device node" value={nodeId} onChange={(e) => setNode(e.target.value)}>
          {nodes.map((n) => (
            <option key={n.id} value={n.id}>
              {n.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Kind
        <select
          aria-label="device kind"
          value={kind}
          onChange={(e) => setKind(Number(e.target.value) as DeviceKind)}
        >
          {kinds.map((k) => (
            <option key={k} value={k}>
              {deviceKindText[k]}
            </option>
          ))}
        </select>
      </label>
      {pinLike && (
        <label>
          Pin
          <input
            aria-label="device pin"
            type="number"
            min={0}
            value={pin}
            onChange={(e) => setPin(Number(e.target.value))}
          />
        </label>
      )}
      {busLike && (
        <label>
          Bus
          <input type="number" min={0} value={bus} onChange={(e) => setBus(Number(e.target.value))} />
        </label>
      )}
      {kind === DeviceKind.I2C && (
        <label>
          Address
          <input value={address} onChange={(e) => setAddress(e.target.value)} size={5} />
        </label>
      )}
      {(kind === DeviceKind.ANALOG || kind === DeviceKind.I2C) && (
        <label>
          {kind === DeviceKind.ANALOG ? "Channel" : "Register"}
          <input
            aria-label="device channel"
            type="number"
            min={0}
            value={register}
            onChange={(e) => setRegister(Number(e.target.value))}
          />
        </label>
      )}
      {busLike && (
        <label>
          Bytes
          <input type="number" min={1} value={length} onChange={(e) => setLength(Number(e.target.value))} />
        </label>
      )}
      <label>
        Unit
        <input value={unit} onChange={(e) => setUnit(e.target.value)} placeholder="°C, V, …" size={6} />
      </label>
      <button type="submit" disabled={nodeId === ""}>
        Add
      </button>
    </form>
  );
}

interface Points {
  readonly t: number[];
  readonly v: number[];
  readonly last: Reading | undefined;
}

/** One device's readings, live from WatchReadings at the rate chosen here (the server samples). */
function DeviceChart({ device }: { device: Device }) {
  const { clients } = useSession();
  const [rate, setRate] = useState(5);
  const [points, setPoints] = useState<Points>({ t: [], v: [], last: undefined });
  const [state, setState] = useState<{ link: LinkState; error: string }>({ link: "connecting", error: "" });

  useEffect(() => {
    const stop = new AbortController();
    setPoints({ t: [], v: [], last: undefined });
    follow(
      (signal) =>
        clients.client(DevicesService).watchReadings({ name: device.name, rateHz: rate }, { signal }),
      {
        onItem: ({ readings }) => {
          if (readings.length === 0) return;
          setPoints((p) => {
            const t = [...p.t];
            const v = [...p.v];
            for (const r of readings) {
              const at = tsMs(r.time) / 1000;
              // A reconnect may resend a moment already drawn; the x axis must keep rising.
              if (t.length > 0 && at <= (t[t.length - 1] ?? 0)) continue;
              t.push(at);
              v.push(r.value);
            }
            const drop = t.length - maxPoints;
            if (drop > 0) {
              t.splice(0, drop);
              v.splice(0, drop);
            }
            return { t, v, last: readings[readings.length - 1] };
          });
        },
        onState: (link, error) => setState({ link, error: error === undefined ? "" : errorText(error) }),
      },
      stop.signal,
    );
    return () => stop.abort();
  }, [clients, device.name, rate]);

  const unit = points.last?.unit || device.config.unit || "";
  return (
    <section
      className="card"
      data-testid="device-chart"
      data-device={device.name}
      data-readings={points.t.length}
    >
      <div className="node-head">
        <h2>
          {device.name} <span className="muted small">{deviceKindText[device.kind]}</span>
        </h2>
        <label className="inline">
          Rate{" "}
          <select aria-label="sample rate" value={rate} onChange={(e) => setRate(Number(e.target.value))}>
            {rates.map((r) => (
              <option key={r} value={r}>
                {r} Hz
              </option>
            ))}
          </select>
        </label>
      </div>
      {state.link === "failed" && <p className="error">{state.error}</p>}
      {state.link === "retrying" && <p className="muted small">reconnecting… {state.error}</p>}
      <p className="muted small">
        {points.last === undefined
          ? "Waiting for the first reading…"
          : `${readingText(points.last)} at ${clockText(tsMs(points.last.time))} · reading ${points.last.seq} · ${points.t.length} on the chart`}
      </p>
      <LiveChart
        title="Readings"
        unit={unit}
        series={[{ label: device.name, color: "#4e79a7" }]}
        times={points.t}
        values={[points.v]}
      />
    </section>
  );
}
