import { useState } from "react";
import { JoinRequestState, type PendingJoin } from "../../gen/corral/v1/join_pb.ts";
import { errorText } from "../api/errors.ts";
import { agoText, tsMs } from "../live/format.ts";
import { useCluster, useSession } from "../live/session.ts";
import { metadataText } from "./nodes-page.tsx";

const stateText: Record<JoinRequestState, string> = {
  [JoinRequestState.UNSPECIFIED]: "unknown",
  [JoinRequestState.PENDING]: "pending",
  [JoinRequestState.ACCEPTED]: "accepted",
  [JoinRequestState.REJECTED]: "rejected",
  [JoinRequestState.EXPIRED]: "expired",
};

export function RequestsPage() {
  const cluster = useCluster();
  const { clients, can } = useSession();
  const mayAnswer = can("/corral.v1.JoinService/AnswerJoinRequest");
  const [busy, setBusy] = useState("");
  const [error, setError] = useState("");
  const all = [...cluster.requests.values()].sort((a, b) => tsMs(b.createdAt) - tsMs(a.createdAt));
  const pending = all.filter((r) => r.state === JoinRequestState.PENDING);
  const decided = all.filter((r) => r.state !== JoinRequestState.PENDING).slice(0, 50);

  const answer = async (request: PendingJoin, accept: boolean) => {
    const reason = accept ? "" : (window.prompt(`Why reject ${request.name}?`, "not expected") ?? "");
    setBusy(request.id.toString());
    setError("");
    try {
      await clients.join.answerJoinRequest({ request: request.id.toString(), accept, reason });
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy("");
    }
  };

  const now = Date.now();
  return (
    <div className="page">
      <h1>Join requests</h1>
      <p className="muted">
        Nodes that ask to join without a token wait here until someone answers. New requests appear as they
        arrive.
        {!mayAnswer && " Your role can see them but not answer them."}
      </p>
      {error !== "" && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="card">
        <h2>Waiting ({pending.length})</h2>
        {pending.length === 0 ? (
          <p className="muted">No node is waiting.</p>
        ) : (
          <table className="table" data-testid="pending-requests">
            <thead>
              <tr>
                <th>Name</th>
                <th>From</th>
                <th>Key fingerprint</th>
                <th>Metadata</th>
                <th>Asked</th>
                <th>Expires</th>
                {mayAnswer && <th />}
              </tr>
            </thead>
            <tbody>
              {pending.map((r) => (
                <tr key={r.id.toString()} data-request={r.name}>
                  <td className="strong">{r.name}</td>
                  <td className="mono">{r.sourceAddress}</td>
                  <td className="mono small">{r.keyFingerprint.slice(0, 23)}…</td>
                  <td className="small">
                    {Object.entries(r.metadata)
                      .map(([k, v]) => `${k}=${metadataText(v)}`)
                      .join(", ") || "-"}
                  </td>
                  <td>{agoText(tsMs(r.createdAt), now)}</td>
                  <td>
                    {r.expiresAt === undefined
                      ? "-"
                      : `in ${Math.max(0, Math.round((tsMs(r.expiresAt) - now) / 1000))}s`}
                  </td>
                  {mayAnswer && (
                    <td className="actions">
                      <button type="button" disabled={busy !== ""} onClick={() => void answer(r, true)}>
                        Accept
                      </button>
                      <button
                        type="button"
                        className="danger"
                        disabled={busy !== ""}
                        onClick={() => void answer(r, false)}
                      >
                        Reject
                      </button>
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      <div className="card">
        <h2>Answered lately</h2>
        {decided.length === 0 ? (
          <p className="muted">None.</p>
        ) : (
          <table className="table">
            <thead>
              <tr>
                <th>Name</th>
                <th>State</th>
                <th>By</th>
                <th>Reason</th>
                <th>Asked</th>
              </tr>
            </thead>
            <tbody>
              {decided.map((r) => (
                <tr key={r.id.toString()}>
                  <td className="strong">{r.name}</td>
                  <td>
                    <span className={`badge req-${stateText[r.state]}`}>{stateText[r.state]}</span>
                  </td>
                  <td>{r.decidedBy || "-"}</td>
                  <td>{r.reason || "-"}</td>
                  <td>{agoText(tsMs(r.createdAt), now)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
    </div>
  );
}
