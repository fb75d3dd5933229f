import { Link } from "../components/link.tsx";
import { StatusBadge } from "../components/status-badge.tsx";
import { useCluster } from "../live/session.ts";
import { Meter } from "./overview-page.tsx";

export function MembersPage() {
  const cluster = useCluster();
  const members = [...cluster.members.values()].sort((a, b) => a.name.localeCompare(b.name));
  const keys = members.reduce((sum, m) => sum + Number(m.keyCount), 0);
  const maxKeys = Math.max(1, ...members.map((m) => Number(m.keyCount)));
  return (
    <div className="page">
      <h1>Members</h1>
      <p className="muted">
        Actor hosts own keys (carts, actors, grains) by weighted rendezvous hashing; {keys} keys owned now.
        Live from the membership watch.
      </p>
      <div className="card">
        <table className="table" data-testid="members">
          <thead>
            <tr>
              <th>Host</th>
              <th>Node</th>
              <th>Status</th>
              <th>Weight</th>
              <th>Keys</th>
              <th />
              <th>Claims</th>
              <th>Load</th>
            </tr>
          </thead>
          <tbody>
            {members.map((m) => (
              <tr key={m.host}>
                <td className="mono">{m.host}</td>
                <td>
                  <Link to={`/nodes/${encodeURIComponent(m.nodeId)}`}>{m.name}</Link>
                </td>
                <td>
                  <StatusBadge status={m.status} />
                  {m.draining && <span className="badge warn">draining</span>}
                  {!m.eligible && !m.draining && <span className="badge muted">not eligible</span>}
                </td>
                <td>{m.weight}</td>
                <td>{m.keyCount.toString()}</td>
                <td style={{ width: "25%" }}>
                  <Meter used={Number(m.keyCount)} total={maxKeys} />
                </td>
                <td>{m.claimCount.toString()}</td>
                <td>{m.load.toFixed(2)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {members.length === 0 && <p className="muted">No members yet.</p>}
      </div>
    </div>
  );
}
