import NextAuth from "next-auth";

import { authOptions } from "@/lib/auth";

// Always run on request: the options (and so every setting) are read at runtime.
export const dynamic = "force-dynamic";

type Context = { params: Promise<{ nextauth: string[] }> };

function handler(req: Request, context: Context) {
  return NextAuth(authOptions())(req, context);
}

export { handler as GET, handler as POST };
