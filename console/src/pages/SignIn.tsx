import { useState } from "react";

/**
 * The sign-in form, shown when the server refused a call as UNAUTHENTICATED: the server's reason,
 * and a field for an API token (`conveer token create`), kept in this tab's sessionStorage only.
 */
export function SignIn(props: { message: string; hadToken: boolean; onSignIn(token: string): void }) {
  const [token, setToken] = useState("");
  return (
    <main className="signin">
      <h1>Conveer console</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) props.onSignIn(token.trim());
        }}
      >
        <p role="alert" className={props.hadToken ? "error" : "hint"}>
          {props.hadToken ? "The server refused this token: " : "This server needs an API token: "}
          {props.message}
        </p>
        <label htmlFor="token">API token</label>
        <input id="token" name="token" type="password" autoComplete="off" autoFocus value={token} onChange={(e) => setToken(e.target.value)} />
        <button type="submit" disabled={!token.trim()}>
          Sign in
        </button>
        <p className="hint">
          The token stays in this browser tab only (sessionStorage) and is sent as a bearer header. Create one with{" "}
          <code>conveer token create --name NAME --scopes SCOPES</code>.
        </p>
      </form>
    </main>
  );
}
