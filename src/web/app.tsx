import { useCallback, useEffect, useMemo, useState } from "react";
import type { WhoAmIResponse } from "../gen/corral/v1/session_pb.ts";
import { type Clients, createClients } from "./api/clients.ts";
import { errorText } from "./api/errors.ts";
import { Shell } from "./components/shell.tsx";
import { ClusterStore } from "./live/cluster-store.ts";
import { roleText, type Session, SessionContext, savedToken } from "./live/session.ts";
import { SignIn } from "./pages/sign-in.tsx";

interface SignedIn {
  readonly clients: Clients;
  readonly who: WhoAmIResponse;
}

export function App() {
  const [signedIn, setSignedIn] = useState<SignedIn | undefined>();
  const [checking, setChecking] = useState(savedToken.get() !== "");
  const [error, setError] = useState("");

  const signIn = useCallback(async (token: string) => {
    setError("");
    const clients = createClients(token.trim());
    try {
      const who = await clients.session.whoAmI({}, { timeoutMs: 10_000 });
      savedToken.set(token.trim());
      setSignedIn({ clients, who });
    } catch (e) {
      savedToken.clear();
      setError(errorText(e));
    } finally {
      setChecking(false);
    }
  }, []);

  useEffect(() => {
    const token = savedToken.get();
    if (token !== "") void signIn(token);
  }, [signIn]);

  const signOut = useCallback(() => {
    savedToken.clear();
    setSignedIn(undefined);
  }, []);

  if (signedIn === undefined) {
    return checking ? <div className="splash">Signing in…</div> : <SignIn onSignIn={signIn} error={error} />;
  }
  return <SignedInApp signedIn={signedIn} signOut={signOut} />;
}

function SignedInApp({ signedIn, signOut }: { signedIn: SignedIn; signOut: () => void }) {
  const { clients, who } = signedIn;
  const allowed = useMemo(() => new Set(who.allowedMethods), [who]);
  const store = useMemo(() => new ClusterStore(), []);
  const session = useMemo<Session>(
    () => ({ clients, who, store, can: (path) => allowed.has(path), signOut }),
    [clients, who, store, allowed, signOut],
  );
  useEffect(() => {
    const stop = new AbortController();
    store.start(clients, stop.signal);
    return () => stop.abort();
  }, [store, clients]);
  useEffect(() => {
    document.title = `corral · ${who.controllerName} · ${roleText[who.role]}`;
  }, [who]);
  return (
    <SessionContext.Provider value={session}>
      <Shell />
    </SessionContext.Provider>
  );
}
