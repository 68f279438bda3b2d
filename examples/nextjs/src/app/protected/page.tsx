"use client";

// The protected page. src/middleware.ts lets only signed-in users reach it.
//
// This is deliberately a CLIENT component reading the session with useSession(): that
// fetches /api/auth/session, a route handler, which runs the jwt callback (refreshing
// oxidp's tokens when they are due) and WRITES the updated, encrypted session cookie.
// In next-auth v4 a server component's getServerSession() runs the same callback but
// cannot set cookies, so a refresh done there would be thrown away: the cookie would keep
// the old refresh token, which oxidp has already rotated, and reusing it after
// `[tokens] refresh_grace_seconds` revokes the whole token family (signing the user out).
import { getSession, signIn, signOut, useSession } from "next-auth/react";
import { useRouter } from "next/navigation";
import { useState } from "react";

export default function ProtectedPage() {
  // Not useSession({ required: true }): its automatic redirect to the sign-in page would
  // race with the redirect to oxidp's end_session_endpoint after signOut(). The
  // middleware already keeps signed-out visitors away from this page.
  const { data: session, status, update } = useSession();
  const router = useRouter();
  const [profile, setProfile] = useState<{ status: number; body: unknown } | null>(null);
  const [loading, setLoading] = useState(false);
  const [signingOut, setSigningOut] = useState(false);

  if (!session) {
    return (
      <section className="card">
        <p className="muted" data-testid="session-status">
          {status === "loading" ? "Loading your session…" : "You are signed out."}
        </p>
      </section>
    );
  }

  async function loadProfile() {
    setLoading(true);
    try {
      // Read the session first: /api/auth/session runs the jwt callback, which refreshes
      // the access token if it is about to expire and stores the new tokens in the cookie
      // that /api/me then reads. update() does what getSession() does and also refreshes
      // what this page shows; it does nothing while another session fetch is running,
      // hence the getSession() fallback.
      if (!(await update())) await getSession();
      const res = await fetch("/api/me", { cache: "no-store" });
      const body = await res.json().catch(() => null);
      setProfile({ status: res.status, body });
    } catch (e) {
      setProfile({ status: 0, body: { error: String(e) } });
    } finally {
      setLoading(false);
    }
  }

  async function federatedSignOut() {
    setSigningOut(true);
    let url: string | null = null;
    try {
      const res = await fetch("/api/federated-logout", { method: "POST", cache: "no-store" });
      if (res.ok) url = ((await res.json()) as { url: string | null }).url;
    } catch {
      // oxidp unreachable: still sign out of this app.
    }
    await signOut({ redirect: false });
    // Then end the oxidp session too (RP-Initiated Logout); oxidp redirects back here.
    window.location.href = url ?? "/";
  }

  function signInAgain() {
    if (session?.provider === "oxidp-password") router.push("/signin-form");
    else void signIn("oxidp", { callbackUrl: "/protected" });
  }

  const expires = session.accessTokenExpiresAt;

  return (
    <>
      {session.error === "RefreshAccessTokenError" && (
        <section className="card error" data-testid="session-error" role="alert">
          <p>Your oxidp session has ended or could not be renewed. Please sign in again.</p>
          <button type="button" data-testid="signin-again" onClick={signInAgain}>
            Sign in again
          </button>
        </section>
      )}

      <section className="card">
        <h1>Protected page</h1>
        <dl>
          <dt>Name</dt>
          <dd data-testid="user-name">{session.user.name ?? ""}</dd>
          <dt>E-mail</dt>
          <dd data-testid="user-email">{session.user.email ?? ""}</dd>
          <dt>Roles</dt>
          <dd data-testid="user-roles">{(session.user.roles ?? []).join(", ")}</dd>
          <dt>Signed in with</dt>
          <dd data-testid="user-provider">
            {session.provider === "oxidp-password" ? "the app's sign-in form (password grant)" : "oxidp (authorization code flow)"}
          </dd>
          <dt>Access token expires</dt>
          <dd>
            <span data-testid="token-expires">{expires}</span>{" "}
            {typeof expires === "number" && (
              <span className="muted">({new Date(expires * 1000).toLocaleString()})</span>
            )}
          </dd>
        </dl>
      </section>

      <section className="card">
        <h2>oxidp account API</h2>
        <p className="muted">
          <code>/api/me</code> calls oxidp&apos;s <code>GET /api/v1/account/me</code> from this
          app&apos;s server with your access token.
        </p>
        <div className="actions">
          <button type="button" data-testid="load-profile" onClick={loadProfile} disabled={loading}>
            {loading ? "Loading…" : "Load my profile from oxidp"}
          </button>
        </div>
        {profile &&
          (profile.status === 200 ? (
            <pre data-testid="profile-json">{JSON.stringify(profile.body, null, 2)}</pre>
          ) : (
            <div className="error" data-testid="profile-error">
              <p>
                HTTP <span data-testid="profile-status">{profile.status}</span>
              </p>
              <pre data-testid="profile-json">{JSON.stringify(profile.body, null, 2)}</pre>
            </div>
          ))}
      </section>

      <section className="card">
        <div className="actions">
          <button
            type="button"
            className="secondary"
            data-testid="signout"
            onClick={federatedSignOut}
            disabled={signingOut}
          >
            Sign out
          </button>
          <span className="muted">Signs you out of this app and of oxidp.</span>
        </div>
      </section>
    </>
  );
}
