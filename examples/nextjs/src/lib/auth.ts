// next-auth v4 configuration for oxidp.
//
// It is built per request by authOptions() (not once at import), so every setting is
// read from the environment at runtime; see ./settings.ts.
import "server-only";

import type { AuthOptions, User } from "next-auth";
import type { JWT } from "next-auth/jwt";
import type { OAuthConfig } from "next-auth/providers/oauth";
import CredentialsProvider from "next-auth/providers/credentials";

import {
  SCOPE,
  TokenEndpointError,
  claimsFromTokenEndpoint,
  displayName,
  endUserIp,
  passwordGrant,
  refreshGrant,
  type IdTokenClaims,
} from "./oxidp";
import { clientFor, settings, type OxidpProvider } from "./settings";

/** Refresh the access token when it has less than this left. */
const REFRESH_MARGIN_SECONDS = 60;

/**
 * "Sign in with oxidp": the OpenID Connect authorization code flow. Everything about
 * oxidp comes from its discovery document (`wellKnown`); there are no custom token or
 * userinfo requests. With `idToken: true` next-auth (openid-client) verifies the ID
 * token against oxidp's JWKS and reads the profile from its claims.
 */
function oxidpProvider(): OAuthConfig<IdTokenClaims> {
  return {
    id: "oxidp",
    name: "oxidp",
    type: "oauth",
    wellKnown: settings.wellKnown,
    authorization: { params: { scope: SCOPE } },
    checks: ["pkce", "state"],
    idToken: true,
    clientId: settings.clientId,
    clientSecret: settings.clientSecret,
    profile(profile) {
      return {
        id: profile.sub,
        name: displayName(profile),
        email: profile.email ?? null,
        roles: Array.isArray(profile.roles) ? profile.roles : [],
      };
    },
  };
}

/**
 * The app's own sign-in form: the password grant of the first-party client, called from
 * this server (the secret never reaches the browser). The end user's IP is forwarded in
 * oxidp's `[ratelimit] client_ip_header`, so oxidp's per-IP limits count the real user
 * and not this server.
 */
function passwordProvider() {
  return CredentialsProvider({
    id: "oxidp-password",
    name: "oxidp (password)",
    credentials: {
      username: { label: "Username or e-mail", type: "text" },
      password: { label: "Password", type: "password" },
    },
    async authorize(credentials, req): Promise<User | null> {
      const username = credentials?.username?.trim() ?? "";
      const password = credentials?.password ?? "";
      if (!username || !password) return null;

      let tokens;
      try {
        tokens = await passwordGrant(username, password, {
          ip: endUserIp(req?.headers),
          // So oxidp's session list (/account/sessions) names the user's browser.
          userAgent: typeof req?.headers?.["user-agent"] === "string" ? req.headers["user-agent"] : undefined,
        });
      } catch (e) {
        if (e instanceof TokenEndpointError) {
          // Wrong username or password (RFC 6749 §5.2): next-auth reports CredentialsSignin.
          if (e.status === 400 && e.error === "invalid_grant") return null;
          // Too many failed attempts for this username or IP (HTTP 429, Retry-After).
          if (e.status === 429) {
            const minutes = e.retryAfter ? Math.max(1, Math.ceil(Number(e.retryAfter) / 60)) : undefined;
            throw new Error(
              `Too many attempts, try again later${minutes && Number.isFinite(minutes) ? ` (in about ${minutes} minute${minutes === 1 ? "" : "s"})` : ""}.`,
            );
          }
          if (e.status === 503) throw new Error("oxidp is busy, try again in a moment.");
        }
        console.error("[oxidp] password grant failed:", e);
        throw new Error("Sign-in is not available right now.");
      }

      if (!tokens.id_token) throw new Error("oxidp returned no ID token (is `openid` in the scope?)");
      const claims = claimsFromTokenEndpoint(tokens.id_token, settings.frontendClientId);
      return {
        id: claims.sub,
        name: displayName(claims),
        email: claims.email ?? null,
        roles: Array.isArray(claims.roles) ? claims.roles : [],
        // Handed to the jwt callback below, which keeps them in the encrypted cookie.
        oxidpTokens: {
          accessToken: tokens.access_token,
          refreshToken: tokens.refresh_token,
          idToken: tokens.id_token,
          expiresAt: Math.floor(Date.now() / 1000) + (tokens.expires_in ?? 3600),
        },
      };
    },
  });
}

/**
 * Refreshes the access token with oxidp's refresh token (grant_type=refresh_token), using
 * the credentials of the client that issued it.
 *
 * oxidp rotates refresh tokens: each use returns a new one and a later reuse of the old one
 * revokes the whole family. Requests that present the same refresh token within
 * `[tokens] refresh_grace_seconds` (default 10) all get the identical successor, so two
 * tabs refreshing at once are safe. What is NOT safe is to refresh somewhere that cannot
 * store the result (see src/app/protected/page.tsx): the next request would present the
 * old, used token again and, after the grace window, lose the session.
 */
async function refreshAccessToken(token: JWT): Promise<JWT> {
  if (!token.refreshToken) return { ...token, error: "RefreshAccessTokenError" };
  try {
    const tokens = await refreshGrant(token.provider, token.refreshToken);
    const refreshed: JWT = {
      ...token,
      accessToken: tokens.access_token,
      expiresAt: Math.floor(Date.now() / 1000) + (tokens.expires_in ?? 3600),
      // Keep the old refresh token if none is returned (RFC 6749 §6 allows that).
      refreshToken: tokens.refresh_token ?? token.refreshToken,
      idToken: tokens.id_token ?? token.idToken,
      error: undefined,
    };
    if (tokens.id_token) {
      // A refreshed ID token carries the current profile (and roles).
      const claims = claimsFromTokenEndpoint(tokens.id_token, clientFor(token.provider).id);
      if (claims.sub === token.sub) {
        refreshed.name = displayName(claims) ?? token.name;
        refreshed.email = claims.email ?? token.email;
        if (Array.isArray(claims.roles)) refreshed.roles = claims.roles;
      }
    }
    return refreshed;
  } catch (e) {
    console.error("[oxidp] refresh failed:", e instanceof Error ? e.message : e);
    return { ...token, error: "RefreshAccessTokenError" };
  }
}

export function authOptions(): AuthOptions {
  // next-auth reads NEXTAUTH_URL itself (and warns when it is unset); give it the same
  // default as the rest of the app.
  if (!process.env.NEXTAUTH_URL) process.env.NEXTAUTH_URL = settings.nextAuthUrl;
  return {
    secret: settings.nextAuthSecret,
    providers: [oxidpProvider(), passwordProvider()],
    session: { strategy: "jwt" },
    callbacks: {
      async jwt({ token, account, user }): Promise<JWT> {
        // Sign-in: keep oxidp's tokens in next-auth's encrypted cookie (never in the session).
        if (account && user) {
          if (account.provider === "oxidp") {
            return {
              ...token,
              provider: "oxidp",
              accessToken: account.access_token,
              refreshToken: account.refresh_token,
              idToken: account.id_token,
              expiresAt: account.expires_at ?? Math.floor(Date.now() / 1000) + 3600,
              roles: user.roles ?? [],
            };
          }
          if (account.provider === "oxidp-password" && user.oxidpTokens) {
            return {
              ...token,
              provider: "oxidp-password",
              ...user.oxidpTokens,
              roles: user.roles ?? [],
            };
          }
        }

        // A refresh already failed: the user has to sign in again (shown by the page).
        if (token.error === "RefreshAccessTokenError") return token;

        // Still valid for more than the margin: nothing to do.
        if (Date.now() / 1000 < token.expiresAt - REFRESH_MARGIN_SECONDS) return token;

        return refreshAccessToken(token);
      },

      async session({ session, token }) {
        // Only what the browser may see: no access, refresh or ID token. Server routes
        // read those from the cookie with getToken() (see src/app/api/me/route.ts).
        session.user = {
          name: token.name ?? null,
          email: token.email ?? null,
          roles: token.roles ?? [],
        };
        session.provider = token.provider;
        session.accessTokenExpiresAt = token.expiresAt;
        if (token.error) session.error = token.error;
        return session;
      },
    },
  };
}

export type { OxidpProvider };
