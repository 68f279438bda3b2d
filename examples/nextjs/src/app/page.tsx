"use client";

// The public page: anyone may see it.
import Link from "next/link";
import { signIn, useSession } from "next-auth/react";

export default function HomePage() {
  const { data: session, status } = useSession();

  return (
    <>
      <section className="card">
        <h1 data-testid="home-title">oxidp × Next.js demo</h1>
        <p>
          This public page needs no sign-in. The{" "}
          <Link href="/protected">protected page</Link> does: it shows your name, e-mail address
          and roles from the session, and loads your profile from oxidp&apos;s account API.
        </p>
        {status === "authenticated" ? (
          <div className="actions">
            <span data-testid="signed-in-as">
              Signed in as <strong>{session.user.name ?? session.user.email}</strong>.
            </span>
            <Link className="button" href="/protected" data-testid="protected-link">
              Go to the protected page
            </Link>
          </div>
        ) : (
          <p className="muted" data-testid="signed-out">
            {status === "loading" ? "Checking your session…" : "You are not signed in."}
          </p>
        )}
      </section>

      <section className="card">
        <h2>Sign in</h2>
        <p>
          Sign in on oxidp&apos;s own pages (OpenID Connect authorization code flow with PKCE), or
          with this app&apos;s form (oxidp&apos;s password grant, called from the server).
        </p>
        <div className="actions">
          <button
            type="button"
            data-testid="signin-oxidp"
            onClick={() => signIn("oxidp", { callbackUrl: "/protected" })}
          >
            Sign in with oxidp
          </button>
          <button
            type="button"
            className="secondary"
            data-testid="signup-oxidp"
            // OIDC `prompt=create`: oxidp opens its sign-up page, then continues the flow.
            onClick={() => signIn("oxidp", { callbackUrl: "/protected" }, { prompt: "create" })}
          >
            Create an account
          </button>
          <Link href="/signin-form" data-testid="signin-form-link">
            Use the app&apos;s own sign-in form
          </Link>
        </div>
        <p className="muted">
          Demo user: <code>demo</code> / <code>demo-password-change-me</code> (from oxidp&apos;s
          config.toml, development only).
        </p>
      </section>
    </>
  );
}
