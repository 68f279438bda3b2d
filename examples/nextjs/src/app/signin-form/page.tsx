"use client";

// The app's own sign-in form. The username and password go to this app's server
// (next-auth's CredentialsProvider, id "oxidp-password"), which calls oxidp's password
// grant with the first-party client; see src/lib/auth.ts.
import { signIn } from "next-auth/react";
import { useState, type FormEvent } from "react";

function message(error: string): string {
  if (error === "CredentialsSignin") return "Incorrect username or password.";
  return error;
}

export default function SignInFormPage() {
  const [error, setError] = useState<string | null>(null);
  const [pending, setPending] = useState(false);

  async function onSubmit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setPending(true);
    setError(null);
    try {
      const result = await signIn("oxidp-password", {
        username: String(form.get("username") ?? ""),
        password: String(form.get("password") ?? ""),
        redirect: false,
      });
      if (result?.ok && !result.error) {
        // A full navigation, not router.push: the client router may hold a prefetch of
        // /protected made while signed out (the middleware's redirect to sign-in).
        window.location.assign("/protected");
        return;
      }
      setError(message(result?.error ?? "Sign-in failed."));
    } catch (e) {
      setError(`Sign-in failed: ${String(e)}`);
    }
    setPending(false);
  }

  return (
    <section className="card">
      <h1>Sign in with the app&apos;s form</h1>
      <p className="muted">
        Your password goes to this app&apos;s server, which exchanges it at oxidp (password
        grant of the first-party client <code>nextjs-demo-frontend</code>).
      </p>
      <form onSubmit={onSubmit}>
        <label>
          Username or e-mail
          <input name="username" data-testid="cred-username" autoComplete="username" required />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            data-testid="cred-password"
            autoComplete="current-password"
            required
          />
        </label>
        {error && (
          <p className="error" data-testid="cred-error" role="alert">
            {error}
          </p>
        )}
        <div className="actions">
          <button type="submit" data-testid="cred-submit" disabled={pending}>
            {pending ? "Signing in…" : "Sign in"}
          </button>
        </div>
      </form>
    </section>
  );
}
