import type { Metadata } from "next";
import Link from "next/link";
import type { ReactNode } from "react";

import "./globals.css";
import { Providers } from "./providers";

export const metadata: Metadata = {
  title: "oxidp × Next.js demo",
  description: "next-auth v4 signing in with the oxidp OpenID Connect provider",
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>
        <Providers>
          <header>
            <Link href="/" className="brand">
              oxidp × Next.js
            </Link>
            <nav>
              <Link href="/">Home</Link>
              <Link href="/protected">Protected</Link>
              <Link href="/signin-form">Sign-in form</Link>
            </nav>
          </header>
          <main>{children}</main>
        </Providers>
      </body>
    </html>
  );
}
