import { JoinRequestState } from "../../gen/corral/v1/join_pb.ts";
import { usePath } from "../live/router.ts";
import { roleText, useCluster, useSession } from "../live/session.ts";
import { CertificatesPage } from "../pages/certificates-page.tsx";
import { ClustersPage } from "../pages/clusters-page.tsx";
import { DevicesPage } from "../pages/devices-page.tsx";
import { MembersPage } from "../pages/members-page.tsx";
import { ModelsPage } from "../pages/models-page.tsx";
import { NodeDetailPage } from "../pages/node-detail-page.tsx";
import { NodesPage } from "../pages/nodes-page.tsx";
import { OverviewPage } from "../pages/overview-page.tsx";
import { RequestsPage } from "../pages/requests-page.tsx";
import { TokensPage } from "../pages/tokens-page.tsx";
import { Link } from "./link.tsx";

const linkWords = {
  connecting: "connecting…",
  live: "live",
  retrying: "reconnecting…",
  failed: "failed",
} as const;

export function Shell() {
  const { who, can, signOut } = useSession();
  const cluster = useCluster();
  const path = usePath();
  const pending = [...cluster.requests.values()].filter((r) => r.state === JoinRequestState.PENDING).length;
  const section = path.split("/")[1] ?? "";
  const nav = [
    { to: "/", label: "Overview", key: "" },
    { to: "/nodes", label: "Nodes", key: "nodes", count: cluster.nodes.size },
    ...(can("/corral.v1.JoinService/WatchJoinRequests")
      ? [{ to: "/requests", label: "Join requests", key: "requests", count: pending }]
      : []),
    { to: "/models", label: "Models", key: "models", count: cluster.models.size },
    { to: "/members", label: "Members", key: "members", count: cluster.members.size },
    ...(can("/corral.v1.DevicesService/ListDevices")
      ? [{ to: "/devices", label: "Devices", key: "devices" }]
      : []),
    ...(can("/corral.v1.ClustersService/ListClusters")
      ? [{ to: "/clusters", label: "Clusters", key: "clusters" }]
      : []),
    ...(can("/corral.v1.CertificatesService/ListCertificates")
      ? [{ to: "/certificates", label: "Certificates", key: "certificates" }]
      : []),
    ...(can("/corral.v1.TokensService/ListTokens")
      ? [{ to: "/tokens", label: "Tokens", key: "tokens" }]
      : []),
  ];
  return (
    <div className="shell">
      <aside className="sidebar">
        <div className="brand">
          <span className="logo">◎</span> corral
        </div>
        <nav>
          {nav.map((item) => (
            <Link key={item.to} to={item.to} className={section === item.key ? "active" : ""}>
              {item.label}
              {item.count !== undefined && item.count > 0 && <span className="count">{item.count}</span>}
            </Link>
          ))}
        </nav>
        <div className="sidebar-foot">
          <div
            className={`link-state link-${cluster.link}`}
            data-testid="link-state"
            title={cluster.linkError}
          >
            <span className="dot" /> {linkWords[cluster.link]}
          </div>
        </div>
      </aside>
      <div className="main">
        <header className="topbar">
          <div className="cluster-name">{who.controllerName}</div>
          <div className="who">
            <span className={`badge role role-${roleText[who.role]}`} data-testid="role">
              {roleText[who.role]}
            </span>
            <span className="muted small">{who.principal}</span>
            <button type="button" className="ghost" onClick={signOut}>
              Sign out
            </button>
          </div>
        </header>
        {cluster.link === "retrying" && (
          <div className="banner warn">
            The controller is not answering; reconnecting… {cluster.linkError && `(${cluster.linkError})`}
          </div>
        )}
        {cluster.link === "failed" && <div className="banner bad">{cluster.linkError}</div>}
        <main className="content">
          <Route path={path} />
        </main>
      </div>
    </div>
  );
}

function Route({ path }: { path: string }) {
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  switch (parts[0]) {
    case undefined:
      return <OverviewPage />;
    case "nodes":
      return parts[1] === undefined ? <NodesPage /> : <NodeDetailPage nodeId={parts[1]} />;
    case "requests":
      return <RequestsPage />;
    case "models":
      return <ModelsPage />;
    case "members":
      return <MembersPage />;
    case "tokens":
      return <TokensPage />;
    case "devices":
      return <DevicesPage />;
    case "clusters":
      return <ClustersPage />;
    case "certificates":
      return <CertificatesPage />;
    default:
      return (
        <div className="card">
          <h2>Not found</h2>
          <p>
            There is no page at <code>{path}</code>. <Link to="/">Back to the overview</Link>
          </p>
        </div>
      );
  }
}
