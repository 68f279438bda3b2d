// Pages under /protected need a next-auth session; without one the browser is sent to
// next-auth's sign-in page (which offers both sign-in methods) and comes back afterwards.
import { withAuth, type NextRequestWithAuth } from "next-auth/middleware";
import type { NextFetchEvent } from "next/server";

import { settings } from "@/lib/settings";

export default function middleware(req: NextRequestWithAuth, event: NextFetchEvent) {
  // Built per request so the secret is read from the environment at runtime.
  return withAuth({ secret: settings.nextAuthSecret })(req, event);
}

export const config = { matcher: ["/protected/:path*"] };
