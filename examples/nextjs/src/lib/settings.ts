// Every setting of the demo, read from the environment at RUNTIME (each getter reads
// process.env when it is called), so one `next build` can be started against any oxidp
// and on any port. Nothing here is NEXT_PUBLIC_: these values only exist on the server.
//
// The defaults match oxidp's config.toml (the `nextjs-demo` and `nextjs-demo-frontend`
// clients, issuer http://localhost:9000), so `cargo run --release` in the repository root
// plus `npm install && npm run dev` here signs in with no other set-up. The secrets below
// are published, development-only values: set real ones in any real deployment.

function env(name: string, fallback: string): string {
  const value = process.env[name];
  return value !== undefined && value.trim() !== "" ? value.trim() : fallback;
}

function withoutTrailingSlash(url: string): string {
  return url.replace(/\/+$/, "");
}

// Used only when NODE_ENV !== "production" (i.e. `next dev`). Never use it elsewhere.
const DEVELOPMENT_NEXTAUTH_SECRET = "oxidp-nextjs-demo-development-only-secret-do-not-use";

export const settings = {
  /** oxidp's issuer, exactly as in its `[server] issuer` (no trailing slash). */
  get issuer(): string {
    return withoutTrailingSlash(env("OXIDP_ISSUER", "http://localhost:9000"));
  },
  /** The discovery document next-auth's provider is configured with. */
  get wellKnown(): string {
    return `${this.issuer}/.well-known/openid-configuration`;
  },

  /** The client of the "Sign in with oxidp" button (authorization code flow + PKCE). */
  get clientId(): string {
    return env("OXIDP_CLIENT_ID", "nextjs-demo");
  },
  get clientSecret(): string {
    return env("OXIDP_CLIENT_SECRET", "nextjs-demo-development-secret-change-me");
  },

  /** The first-party client of the app's own sign-in form (password grant). */
  get frontendClientId(): string {
    return env("OXIDP_FRONTEND_CLIENT_ID", "nextjs-demo-frontend");
  },
  get frontendClientSecret(): string {
    return env(
      "OXIDP_FRONTEND_CLIENT_SECRET",
      "nextjs-demo-frontend-development-secret-change-me",
    );
  },

  /** Header in which the app asserts the end user's IP (oxidp: `[ratelimit] client_ip_header`). */
  get endUserIpHeader(): string {
    return env("OXIDP_END_USER_IP_HEADER", "x-end-user-ip").toLowerCase();
  },

  /**
   * This app's public URL. next-auth reads NEXTAUTH_URL itself and falls back to
   * http://localhost:3000 as well; the app uses it for the post-logout redirect.
   */
  get nextAuthUrl(): string {
    return withoutTrailingSlash(env("NEXTAUTH_URL", "http://localhost:3000"));
  },

  /**
   * The key that encrypts next-auth's session cookie. In production a missing secret is
   * an error (thrown on the first request that needs it, so `next build` works without it).
   */
  get nextAuthSecret(): string {
    const secret = process.env.NEXTAUTH_SECRET?.trim();
    if (secret) return secret;
    if (process.env.NODE_ENV === "production") {
      throw new Error(
        "NEXTAUTH_SECRET is not set. Set it to a long random value (e.g. `openssl rand -base64 32`) before starting the app in production.",
      );
    }
    return DEVELOPMENT_NEXTAUTH_SECRET;
  },
};

/** Which oxidp client issued a set of tokens (needed to refresh them and to log out). */
export type OxidpProvider = "oxidp" | "oxidp-password";

export function clientFor(provider: OxidpProvider): { id: string; secret: string } {
  return provider === "oxidp-password"
    ? { id: settings.frontendClientId, secret: settings.frontendClientSecret }
    : { id: settings.clientId, secret: settings.clientSecret };
}
