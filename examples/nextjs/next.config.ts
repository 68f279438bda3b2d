import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  reactStrictMode: true,
  poweredByHeader: false,
  // No `env` here on purpose: every setting is read from process.env at runtime on the
  // server (src/lib/settings.ts), so one build runs against any oxidp.
};

export default nextConfig;
