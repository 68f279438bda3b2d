// GET /api/me: calls oxidp's account API (GET /api/v1/account/me) with the user's access
// token, which never leaves the server: getToken() decrypts it from next-auth's cookie.
import { getToken } from "next-auth/jwt";
import { NextResponse, type NextRequest } from "next/server";

import { settings } from "@/lib/settings";

export const dynamic = "force-dynamic";

export async function GET(req: NextRequest) {
  const token = await getToken({ req, secret: settings.nextAuthSecret });
  if (!token?.accessToken) {
    return NextResponse.json({ error: "not_signed_in" }, { status: 401 });
  }
  // This route does not refresh: the page calls getSession() first, which refreshes the
  // tokens if due and (unlike a route that only reads the cookie) stores the result.
  let res: Response;
  try {
    res = await fetch(`${settings.issuer}/api/v1/account/me`, {
      headers: { authorization: `Bearer ${token.accessToken}`, accept: "application/json" },
      cache: "no-store",
      signal: AbortSignal.timeout(10_000),
    });
  } catch (e) {
    console.error("[oxidp] account API unreachable:", e);
    return NextResponse.json({ error: "oxidp_unreachable" }, { status: 502 });
  }
  const body = await res.json().catch(() => ({ error: "invalid_response" }));
  return NextResponse.json(body, {
    status: res.status,
    headers: { "cache-control": "no-store" },
  });
}
