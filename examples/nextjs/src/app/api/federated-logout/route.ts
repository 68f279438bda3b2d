// POST /api/federated-logout: returns { url } — oxidp's end_session_endpoint (OpenID
// Connect RP-Initiated Logout 1.0) with the user's ID token as id_token_hint, the client
// that issued it as client_id, and this app as post_logout_redirect_uri. The browser signs
// out of next-auth first and then goes there; oxidp ends its own session (and the refresh
// tokens bound to it) and sends the browser back. See docs/logout.md.
import { getToken } from "next-auth/jwt";
import { NextResponse, type NextRequest } from "next/server";

import { discovery } from "@/lib/oxidp";
import { clientFor, settings } from "@/lib/settings";

export const dynamic = "force-dynamic";

export async function POST(req: NextRequest) {
  const token = await getToken({ req, secret: settings.nextAuthSecret });
  if (!token?.idToken) {
    // Not signed in, or no ID token: only next-auth's own sign-out is needed.
    return NextResponse.json({ url: null }, { headers: { "cache-control": "no-store" } });
  }
  const { end_session_endpoint } = await discovery();
  if (!end_session_endpoint) {
    return NextResponse.json({ url: null }, { headers: { "cache-control": "no-store" } });
  }
  const url = new URL(end_session_endpoint);
  url.searchParams.set("id_token_hint", token.idToken);
  url.searchParams.set("client_id", clientFor(token.provider ?? "oxidp").id);
  // Must be listed, exactly, in the client's post_logout_redirect_uris
  // (both demo clients register http://localhost:3000).
  url.searchParams.set("post_logout_redirect_uri", new URL(settings.nextAuthUrl).origin);
  return NextResponse.json({ url: url.toString() }, { headers: { "cache-control": "no-store" } });
}
