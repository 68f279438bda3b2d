// Types of what this app keeps in next-auth's User, Session and (encrypted) JWT.
type OxidpProvider = "oxidp" | "oxidp-password";

declare module "next-auth" {
  interface User {
    roles?: string[];
    /** Only set by the password sign-in; consumed by the jwt callback. */
    oxidpTokens?: {
      accessToken: string;
      refreshToken?: string;
      idToken: string;
      expiresAt: number;
    };
  }

  interface Session {
    user: {
      name: string | null;
      email: string | null;
      roles: string[];
    };
    /** How the user signed in: the oxidp redirect, or the app's own form. */
    provider: OxidpProvider;
    /** When oxidp's access token expires (seconds since the epoch). Not a secret. */
    accessTokenExpiresAt: number;
    /** "RefreshAccessTokenError": the tokens could not be refreshed; sign in again. */
    error?: "RefreshAccessTokenError";
  }
}

declare module "next-auth/jwt" {
  interface JWT {
    provider: OxidpProvider;
    accessToken?: string;
    refreshToken?: string;
    idToken?: string;
    /** Access-token expiry, seconds since the epoch. */
    expiresAt: number;
    roles?: string[];
    error?: "RefreshAccessTokenError";
  }
}

export {};
