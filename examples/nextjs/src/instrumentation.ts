// Runs once when the Next.js server starts. In production, refuse to run without
// NEXTAUTH_SECRET (the key of the session cookie) instead of failing on every request.
export async function register() {
  if (process.env.NEXT_RUNTIME !== "nodejs") return;
  if (process.env.NEXT_PHASE === "phase-production-build") return; // `next build` needs no secret
  const { settings } = await import("./lib/settings");
  try {
    void settings.nextAuthSecret; // throws in production when it is unset
  } catch (e) {
    console.error(`\n${e instanceof Error ? e.message : e}\n`);
    process.exit(1);
  }
}
