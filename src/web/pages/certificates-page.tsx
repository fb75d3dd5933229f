import { useCallback, useEffect, useState } from "react";
import {
  type CertificateInfo,
  CertificateKind,
  CertificateStatus,
  CertificatesService,
  type GetCaResponse,
  type GetCertificateStatisticsResponse,
} from "../../gen/corral/v1/certificates_pb.ts";
import { errorText } from "../api/errors.ts";
import { Link } from "../components/link.tsx";
import { timeText, tsMs } from "../live/format.ts";
import { useCluster, useSession } from "../live/session.ts";

export const certificateKindText: Record<CertificateKind, string> = {
  [CertificateKind.UNSPECIFIED]: "any",
  [CertificateKind.NODE]: "node",
  [CertificateKind.OPERATOR]: "operator",
  [CertificateKind.CONTROLLER]: "controller",
  [CertificateKind.SERVER]: "server",
};

const statusWord: Record<CertificateStatus, string> = {
  [CertificateStatus.UNSPECIFIED]: "unknown",
  [CertificateStatus.VALID]: "valid",
  [CertificateStatus.EXPIRED]: "expired",
  [CertificateStatus.REVOKED]: "revoked",
  [CertificateStatus.NOT_YET_VALID]: "not yet valid",
  [CertificateStatus.UNTRUSTED]: "untrusted",
};

const dayMs = 86_400_000;
const revokePath = "/corral.v1.CertificatesService/RevokeCertificate";

/** A short fingerprint for tables: enough to tell two CAs apart. */
function shortFp(fp: string): string {
  return fp.length > 23 ? `${fp.slice(0, 23)}…` : fp;
}

/** "CN=corral CA …, O=corral" → "corral CA …": the full subject stays in the tooltip. */
function commonName(subject: string): string {
  return /CN=([^,]+)/.exec(subject)?.[1] ?? subject;
}

function expiryText(notAfter: number, now: number): string {
  if (notAfter <= now) return "expired";
  const hours = Math.floor((notAfter - now) / 3_600_000);
  return hours < 48 ? `${hours} h left` : `${Math.floor(hours / 24)} d left`;
}

/**
 * The CA as the controller sees it. Certificates have no watch: the page reads them when it opens,
 * after each change made here, and whenever the set of nodes changes (a join or a removal issues or
 * revokes one), which the page already follows live.
 */
export function CertificatesPage() {
  const { clients, can } = useSession();
  const cluster = useCluster();
  const mayRevoke = can(revokePath);
  const [ca, setCa] = useState<GetCaResponse | undefined>();
  const [stats, setStats] = useState<GetCertificateStatisticsResponse | undefined>();
  const [certs, setCerts] = useState<CertificateInfo[]>([]);
  const [kind, setKind] = useState<CertificateKind>(CertificateKind.UNSPECIFIED);
  const [showOld, setShowOld] = useState(false);
  const [error, setError] = useState("");
  const [loaded, setLoaded] = useState(false);
  const nodeKey = [...cluster.nodes.keys()].sort().join(",");

  // biome-ignore lint/correctness/useExhaustiveDependencies: nodeKey is the trigger to read again.
  const load = useCallback(async () => {
    const service = clients.client(CertificatesService);
    try {
      const [caNow, statsNow, list] = await Promise.all([
        service.getCa({}),
        service.getStatistics({}),
        service.listCertificates({ kind, includeExpired: showOld, currentOnly: !showOld }),
      ]);
      setCa(caNow);
      setStats(statsNow);
      setCerts(list.certificates);
      setError("");
    } catch (e) {
      setError(errorText(e));
    } finally {
      setLoaded(true);
    }
  }, [clients, kind, showOld, nodeKey]);
  useEffect(() => {
    void load();
  }, [load]);

  const revoke = async (cert: CertificateInfo) => {
    const reason = window.prompt(
      `Revoke ${certificateKindText[cert.kind]} certificate ${cert.subject}? It is refused on its next call.\nReason:`,
      "revoked from the dashboard",
    );
    if (reason === null) return;
    setError("");
    try {
      await clients.client(CertificatesService).revokeCertificate({ serial: cert.serial, reason });
      await load();
    } catch (e) {
      setError(errorText(e));
    }
  };

  const now = Date.now();
  const rotation = ca?.rotation;
  return (
    <div className="page">
      <div className="node-head">
        <h1>Certificates</h1>
        <button type="button" className="ghost" onClick={() => void load()}>
          Refresh
        </button>
      </div>
      {error !== "" && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <CertificateWarnings stats={stats} />
      {rotation?.inProgress && (
        <div className="banner warn" data-testid="ca-rotation">
          CA rotation under way since {timeText(rotation.startedAt)}
          {rotation.startedBy !== "" && ` (by ${rotation.startedBy})`}: both CAs are trusted until{" "}
          {timeText(rotation.overlapEndsAt)}; nodes move to{" "}
          <span className="mono">{shortFp(rotation.nextFingerprint)}</span> as they renew.
        </div>
      )}
      <section className="grid-2">
        <div className="card">
          <h2>Trusted CAs</h2>
          {ca === undefined ? (
            <p className="muted">{loaded ? "-" : "Loading…"}</p>
          ) : (
            <table className="table" data-testid="cas">
              <thead>
                <tr>
                  <th>Subject</th>
                  <th>Fingerprint</th>
                  <th>Not after</th>
                  <th>Use</th>
                </tr>
              </thead>
              <tbody>
                {ca.cas.map((c) => (
                  <tr key={c.fingerprint}>
                    <td title={c.subject}>{commonName(c.subject)}</td>
                    <td className="mono small" title={c.fingerprint}>
                      {shortFp(c.fingerprint)}
                    </td>
                    <td>
                      {timeText(c.notAfter)}{" "}
                      <span className="muted small">{expiryText(tsMs(c.notAfter), now)}</span>
                    </td>
                    <td>
                      {c.issuing && <span className="badge status-ready">issuing</span>}{" "}
                      {c.presenting && <span className="badge">presenting</span>}
                      {!c.issuing && !c.presenting && <span className="badge">trusted</span>}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {ca !== undefined && <p className="muted small">Key storage: {ca.keyStorage || "-"}</p>}
        </div>
        <div className="card">
          <h2>Statistics</h2>
          {stats === undefined ? (
            <p className="muted">{loaded ? "-" : "Loading…"}</p>
          ) : (
            <dl className="facts" data-testid="cert-stats">
              <dt>Known</dt>
              <dd>{stats.total}</dd>
              <dt>Valid</dt>
              <dd>
                {Object.entries(stats.validByKind)
                  .filter(([, n]) => n > 0)
                  .map(([k, n]) => `${n} ${k}`)
                  .join(" · ") || "none"}
              </dd>
              <dt>Issued in 24 h</dt>
              <dd>
                {stats.issuedLast24h}
                {Object.keys(stats.issuedLast24hByKind).length > 0 && (
                  <span className="muted">
                    {" "}
                    (
                    {Object.entries(stats.issuedLast24hByKind)
                      .map(([k, n]) => `${n} ${k}`)
                      .join(", ")}
                    )
                  </span>
                )}
              </dd>
              <dt>Expiring in 30 d</dt>
              <dd className={stats.expiringWithin30d > 0 ? "warn-text" : ""}>{stats.expiringWithin30d}</dd>
              <dt>Revoked</dt>
              <dd>{stats.revoked}</dd>
              <dt>Expired</dt>
              <dd>{stats.expired}</dd>
            </dl>
          )}
        </div>
      </section>
      <div className="card">
        <div className="filters">
          <h2 className="grow">Inventory</h2>
          <select
            aria-label="certificate kind"
            value={kind}
            onChange={(e) => setKind(Number(e.target.value) as CertificateKind)}
          >
            {[
              CertificateKind.UNSPECIFIED,
              CertificateKind.NODE,
              CertificateKind.OPERATOR,
              CertificateKind.CONTROLLER,
              CertificateKind.SERVER,
            ].map((k) => (
              <option key={k} value={k}>
                {k === CertificateKind.UNSPECIFIED ? "every kind" : certificateKindText[k]}
              </option>
            ))}
          </select>
          <label className="check">
            <input type="checkbox" checked={showOld} onChange={(e) => setShowOld(e.target.checked)} />{" "}
            replaced and expired too
          </label>
        </div>
        <table className="table" data-testid="certificates">
          <thead>
            <tr>
              <th>Kind</th>
              <th>Subject</th>
              <th>Node</th>
              <th>Serial</th>
              <th>Not after</th>
              <th>Status</th>
              {mayRevoke && <th />}
            </tr>
          </thead>
          <tbody>
            {certs.length === 0 && (
              <tr>
                <td colSpan={mayRevoke ? 7 : 6} className="muted">
                  {loaded ? "No certificates." : "Loading…"}
                </td>
              </tr>
            )}
            {certs.map((c) => {
              const status = statusWord[c.status];
              const notAfter = tsMs(c.notAfter);
              const soon = c.status === CertificateStatus.VALID && notAfter - now < 30 * dayMs;
              const revocable =
                c.status === CertificateStatus.VALID &&
                (c.kind === CertificateKind.NODE || c.kind === CertificateKind.OPERATOR);
              return (
                <tr
                  key={c.serial}
                  className={c.status === CertificateStatus.VALID ? "" : "dim"}
                  data-serial={c.serial}
                  data-kind={certificateKindText[c.kind]}
                  data-node={c.nodeName}
                >
                  <td>{certificateKindText[c.kind]}</td>
                  <td>
                    {c.subject}
                    {c.operatorRole !== "" && <span className="muted small"> · {c.operatorRole}</span>}
                  </td>
                  <td className="nowrap">
                    {c.nodeId === "" ? (
                      "-"
                    ) : (
                      <Link to={`/nodes/${encodeURIComponent(c.nodeId)}`}>{c.nodeName || c.nodeId}</Link>
                    )}
                  </td>
                  <td className="mono small" title={c.serial}>
                    {c.serial.slice(0, 16)}
                  </td>
                  <td className="nowrap">
                    {timeText(c.notAfter)}{" "}
                    <span className={`small ${soon ? "warn-text" : "muted"}`}>
                      {expiryText(notAfter, now)}
                    </span>
                  </td>
                  <td className="nowrap">
                    <span className={`badge cert-${status.replaceAll(" ", "-")}`} title={c.revocationReason}>
                      {status}
                    </span>
                    {c.current && c.kind === CertificateKind.NODE && (
                      <span className="muted small"> current</span>
                    )}
                  </td>
                  {mayRevoke && (
                    <td>
                      {revocable && (
                        <button type="button" className="danger small" onClick={() => void revoke(c)}>
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

/** The controller's own expiry warnings (CA or certificates within 30 days, overdue renewals). */
export function CertificateWarnings({
  stats,
  link,
}: {
  stats: GetCertificateStatisticsResponse | undefined;
  link?: boolean;
}) {
  if (stats === undefined) return null;
  // The certificates page has its own rotation banner; the overview mentions one here.
  const rotation = link === true && stats.rotation?.inProgress === true ? stats.rotation : undefined;
  if (stats.warnings.length === 0 && rotation === undefined) return null;
  return (
    <div className="banner warn" data-testid="cert-warnings">
      <strong>
        {stats.warnings.length === 0
          ? "CA rotation under way"
          : stats.warnings.length === 1
            ? "1 certificate warning"
            : `${stats.warnings.length} certificate warnings`}
      </strong>
      {link === true && (
        <>
          {" "}
          · <Link to="/certificates">Certificates</Link>
        </>
      )}
      <ul>
        {stats.warnings.slice(0, 6).map((w) => (
          <li key={`${w.serial}-${w.message}`}>{w.message}</li>
        ))}
        {stats.warnings.length > 6 && <li>and {stats.warnings.length - 6} more</li>}
        {rotation !== undefined && (
          <li>
            a CA rotation is under way: the old and the new CA are both trusted until{" "}
            {timeText(rotation.overlapEndsAt)}
          </li>
        )}
      </ul>
    </div>
  );
}

/** For the overview: the warnings banner, read once when the page opens (statistics have no watch). */
export function OverviewCertificateWarnings() {
  const { clients, can } = useSession();
  const allowed = can("/corral.v1.CertificatesService/GetStatistics");
  const [stats, setStats] = useState<GetCertificateStatisticsResponse | undefined>();
  useEffect(() => {
    if (!allowed) return;
    const stop = new AbortController();
    clients
      .client(CertificatesService)
      .getStatistics({}, { signal: stop.signal })
      .then(setStats, () => undefined);
    return () => stop.abort();
  }, [clients, allowed]);
  return <CertificateWarnings stats={stats} link />;
}
