// Small server-side helpers for talking to oxidp directly: discovery, the token endpoint
// (password and refresh_token grants) and decoding the ID token that comes back.
// next-auth's OIDC provider does the authorization code flow by itself; these are only
// for what next-auth v4 leaves to the application (refresh, the password grant, logout).
import "server-only";

import { clientFor, settings, type OxidpProvider } from "./settings";

export const SCOPE = "openid profile email roles";

/** The subset of the discovery document (OIDC Discovery 1.0 §3) this app uses. */
export interface Discovery {
  issuer: string;
  token_endpoint: string;
  end_session_endpoint?: string;
  userinfo_endpoint?: string;
  jwks_uri: string;
}

// Cached in module memory for an hour (per server process); a failed fetch is not cached.
const DISCOVERY_TTL_MS = 60 * 60 * 1000;
let discoveryCache: { issuer: string; at: number; doc: Promise<Discovery> } | undefined;

export function discovery(): Promise<Discovery> {
  const issuer = settings.issuer;
  const now = Date.now();
  if (discoveryCache && discoveryCache.issuer === issuer && now - discoveryCache.at < DISCOVERY_TTL_MS) {
    return discoveryCache.doc;
  }
  const doc = (async () => {
    const res = await fetch(settings.wellKnown, {
      cache: "no-store",
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`oxidp discovery ${settings.wellKnown} answered HTTP ${res.status}`);
    const json = (await res.json()) as Discovery;
    // OIDC Discovery §4.3: the issuer in the document must be the one we asked.
    if (json.issuer !== issuer) {
      throw new Error(`oxidp discovery issuer mismatch: expected ${issuer}, got ${json.issuer}`);
    }
    return json;
  })();
  discoveryCache = { issuer, at: now, doc };
  doc.catch(() => {
    if (discoveryCache?.doc === doc) discoveryCache = undefined;
  });
  return doc;
}

/** HTTP Basic client authentication; RFC 6749 §2.3.1 form-urlencodes id and secret first. */
export function basicAuth(clientId: string, clientSecret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, "+");
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`).toString("base64")}`;
}

/** A successful token response (RFC 6749 §5.1, OIDC Core §3.1.3.3). */
export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in?: number;
  refresh_token?: string;
  id_token?: string;
  scope?: string;
}

/** An error response of the token endpoint (RFC 6749 §5.2), or a transport failure. */
export class TokenEndpointError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description?: string,
    readonly retryAfter?: string,
  ) {
    super(`oxidp token endpoint: HTTP ${status} ${error}${description ? `: ${description}` : ""}`);
    this.name = "TokenEndpointError";
  }
}

async function tokenRequest(
  provider: OxidpProvider,
  params: Record<string, string>,
  extraHeaders: Record<string, string> = {},
): Promise<TokenResponse> {
  const { token_endpoint } = await discovery();
  const client = clientFor(provider);
  const res = await fetch(token_endpoint, {
    method: "POST",
    cache: "no-store",
    signal: AbortSignal.timeout(15_000),
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      accept: "application/json",
      authorization: basicAuth(client.id, client.secret),
      ...extraHeaders,
    },
    body: new URLSearchParams(params),
  });
  const body = await res.json().catch(() => undefined);
  if (!res.ok || !body?.access_token) {
    throw new TokenEndpointError(
      res.status,
      typeof body?.error === "string" ? body.error : "invalid_response",
      typeof body?.error_description === "string" ? body.error_description : undefined,
      res.headers.get("retry-after") ?? undefined,
    );
  }
  return body as TokenResponse;
}

/**
 * grant_type=password with the first-party client, asserting the end user's IP in
 * oxidp's `[ratelimit] client_ip_header` (trusted only from this authenticated client).
 */
export function passwordGrant(
  username: string,
  password: string,
  endUser: { ip?: string; userAgent?: string } = {},
): Promise<TokenResponse> {
  const headers: Record<string, string> = {};
  if (endUser.ip) headers[settings.endUserIpHeader] = endUser.ip;
  if (endUser.userAgent) headers["user-agent"] = endUser.userAgent;
  return tokenRequest(
    "oxidp-password",
    { grant_type: "password", username, password, scope: SCOPE },
    headers,
  );
}

/** grant_type=refresh_token with the client that issued the refresh token. */
export function refreshGrant(provider: OxidpProvider, refreshToken: string): Promise<TokenResponse> {
  return tokenRequest(provider, { grant_type: "refresh_token", refresh_token: refreshToken });
}

/** The ID-token claims this app reads (OIDC Core §2, §5.1, plus oxidp's `roles`). */
export interface IdTokenClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  sid?: string;
  name?: string;
  preferred_username?: string;
  email?: string;
  email_verified?: boolean;
  roles?: string[];
  [claim: string]: unknown;
}

/**
 * Reads the claims of an ID token that this server just received from oxidp's token
 * endpoint (password or refresh grant). The signature is not checked: OIDC Core
 * §3.1.3.7 item 6 allows TLS server validation in place of it when the ID token comes
 * straight from the token endpoint over a connection the client opened itself (use an
 * https issuer in production). The issuer and audience are still checked, as a guard
 * against misconfiguration. (ID tokens that come through the browser, i.e. the
 * authorization code flow, are verified by next-auth/openid-client against the JWKS.)
 */
export function claimsFromTokenEndpoint(idToken: string, clientId: string): IdTokenClaims {
  const parts = idToken.split(".");
  if (parts.length !== 3) throw new Error("oxidp returned a malformed ID token");
  const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8")) as IdTokenClaims;
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (claims.iss !== settings.issuer || !audiences.includes(clientId) || typeof claims.sub !== "string") {
    throw new Error("oxidp returned an ID token for another issuer or client");
  }
  return claims;
}

/** The display name: `name`, else the username. */
export function displayName(claims: { name?: string; preferred_username?: string }): string | null {
  return claims.name ?? claims.preferred_username ?? null;
}

/** The end user's IP as this server saw it: the first X-Forwarded-For entry, else X-Real-IP. */
export function endUserIp(headers: Record<string, string | string[] | undefined> | undefined): string | undefined {
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  const forwarded = first(headers?.["x-forwarded-for"])?.split(",")[0]?.trim();
  if (forwarded) return forwarded;
  const real = first(headers?.["x-real-ip"])?.trim();
  return real || undefined;
}
