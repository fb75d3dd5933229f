import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type FormEvent, useCallback, useEffect, useState } from "react";
import { Role, type TokenInfo } from "../../gen/corral/v1/tokens_pb.ts";
import { errorText } from "../api/errors.ts";
import { timeText, tsMs } from "../live/format.ts";
import { roleText, useSession } from "../live/session.ts";

function tokenState(info: TokenInfo, now: number): string {
  if (info.revoked) return "revoked";
  if (info.expiresAt !== undefined && tsMs(info.expiresAt) <= now) return "expired";
  if (info.usesAllowed > 0 && info.usesLeft <= 0) return "used up";
  return "active";
}

const ttlChoices = [
  { label: "1 hour", ms: 3_600_000 },
  { label: "1 day", ms: 86_400_000 },
  { label: "7 days", ms: 7 * 86_400_000 },
  { label: "30 days", ms: 30 * 86_400_000 },
];

/** Tokens have no watch: the list is read when the page opens and after each change made here. */
export function TokensPage() {
  const { clients, can } = useSession();
  const mayCreate = can("/corral.v1.TokensService/CreateToken");
  const mayRevoke = can("/corral.v1.TokensService/RevokeToken");
  const [tokens, setTokens] = useState<TokenInfo[]>([]);
  const [error, setError] = useState("");
  const [created, setCreated] = useState("");
  const [role, setRole] = useState<Role>(Role.VIEWER);
  const [ttl, setTtl] = useState(ttlChoices[0]?.ms ?? 3_600_000);
  const [uses, setUses] = useState(1);
  const [description, setDescription] = useState("");

  const load = useCallback(async () => {
    try {
      const { tokens } = await clients.tokens.listTokens({ includeExpired: true });
      setTokens(tokens);
    } catch (e) {
      setError(errorText(e));
    }
  }, [clients]);
  useEffect(() => {
    void load();
  }, [load]);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    setError("");
    try {
      const response = await clients.tokens.createToken({
        role,
        ttl: durationFromMs(ttl),
        uses: role === Role.NODE ? uses : 0,
        description,
      });
      setCreated(response.token);
      setDescription("");
      await load();
    } catch (e) {
      setError(errorText(e));
    }
  };
  const revoke = async (id: string) => {
    setError("");
    try {
      await clients.tokens.revokeToken({ id });
      await load();
    } catch (e) {
      setError(errorText(e));
    }
  };
  const now = Date.now();
  return (
    <div className="page">
      <h1>Tokens</h1>
      {error !== "" && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {mayCreate && (
        <form className="card form-row" onSubmit={(e) => void create(e)}>
          <h2>New token</h2>
          <label>
            Role
            <select value={role} onChange={(e) => setRole(Number(e.target.value) as Role)}>
              {[Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.NODE].map((r) => (
                <option key={r} value={r}>
                  {r === Role.NODE ? "node (join token)" : roleText[r]}
                </option>
              ))}
            </select>
          </label>
          <label>
            Lifetime
            <select value={ttl} onChange={(e) => setTtl(Number(e.target.value))}>
              {ttlChoices.map((c) => (
                <option key={c.ms} value={c.ms}>
                  {c.label}
                </option>
              ))}
            </select>
          </label>
          {role === Role.NODE && (
            <label>
              Uses
              <input type="number" min={0} value={uses} onChange={(e) => setUses(Number(e.target.value))} />
            </label>
          )}
          <label className="grow">
            Description
            <input
              value={description}
              onChange={(e) => setDescription(e.target.value)}
              placeholder="who or what it is for"
            />
          </label>
          <button type="submit">Create</button>
          {created !== "" && (
            <div className="created">
              Copy it now, it is not shown again: <code data-testid="new-token">{created}</code>
            </div>
          )}
        </form>
      )}
      <div className="card">
        <table className="table" data-testid="tokens">
          <thead>
            <tr>
              <th>Id</th>
              <th>Role</th>
              <th>State</th>
              <th>Description</th>
              <th>Uses</th>
              <th>Expires</th>
              <th>Made by</th>
              {mayRevoke && <th />}
            </tr>
          </thead>
          <tbody>
            {tokens.map((t) => {
              const state = tokenState(t, now);
              return (
                <tr key={t.id} className={state === "active" ? "" : "dim"}>
                  <td className="mono">{t.id}</td>
                  <td>{roleText[t.role]}</td>
                  <td>{state}</td>
                  <td>{t.description || "-"}</td>
                  <td>
                    {t.role !== Role.NODE
                      ? "-"
                      : t.usesAllowed === 0
                        ? "unlimited"
                        : `${t.usesLeft}/${t.usesAllowed}`}
                  </td>
                  <td>{timeText(t.expiresAt)}</td>
                  <td className="small">{t.createdBy}</td>
                  {mayRevoke && (
                    <td>
                      {state === "active" && (
                        <button type="button" className="danger small" onClick={() => void revoke(t.id)}>
                          Revoke
                        </button>
                      )}
                    </td>
                  )}
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </div>
  );
}
