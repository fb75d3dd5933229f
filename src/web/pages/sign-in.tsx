import { type FormEvent, useState } from "react";

export function SignIn({ onSignIn, error }: { onSignIn: (token: string) => Promise<void>; error: string }) {
  const [token, setToken] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (token.trim() === "") return;
    setBusy(true);
    void onSignIn(token).finally(() => setBusy(false));
  };
  return (
    <div className="sign-in">
      <form onSubmit={submit} className="card sign-in-card">
        <h1>
          <span className="logo">◎</span> corral
        </h1>
        <p className="muted">Sign in with an access token made by an admin:</p>
        <pre className="hint">corral token create --role viewer|operator|admin</pre>
        <label htmlFor="token">Access token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          value={token}
          onChange={(e) => setToken(e.target.value)}
          placeholder="paste the token"
        />
        <button type="submit" disabled={busy || token.trim() === ""}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        {error !== "" && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <p className="muted small">
          The token stays in this tab only (session storage) and is sent as a bearer token.
        </p>
      </form>
    </div>
  );
}
