// The Next.js example app (examples/nextjs, next-auth v4) in headless Chromium against a
// real oxidp: hosted login and consent, the protected page, refresh (also two at once),
// the account API through the app's server route, sign-out through end_session_endpoint,
// the credentials form (password grant) and sign-up through `prompt=create`.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, createWriteStream, rmSync, readdirSync, readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";
import assert from "node:assert/strict";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
// Without the background-networking flags Chromium keeps dialling Google's hosts, which
// this closed network refuses.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let built = false;

function ensureChromium() {
  if (existsSync(CHROMIUM)) return;
  // The issue asks the suite to install Debian's chromium itself when it is missing.
  console.log(`# ${CHROMIUM} missing: apt-get install -y chromium`);
  const sudo = process.getuid && process.getuid() === 0 ? [] : ["sudo"];
  for (const args of [
    ["apt-get", "update", "-qq"],
    ["apt-get", "install", "-y", "-qq", "chromium"],
  ]) {
    const cmd = [...sudo, ...args];
    const r = spawnSync(cmd[0], cmd.slice(1), { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    if (r.status !== 0) throw new Error(`${cmd.join(" ")} failed (${r.status})`);
  }
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} still missing after apt-get`);
}

function sh(cmd, args, options) {
  const r = spawnSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8", ...options });
  if (r.status !== 0) {
    const tail = `${r.stdout ?? ""}\n${r.stderr ?? ""}`.split("\n").slice(-40).join("\n");
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}\n${tail}`);
  }
  return r;
}

function appEnv(oxidp, appPort) {
  const demo = oxidp.clients["nextjs-demo"];
  const frontend = oxidp.clients["nextjs-demo-frontend"];
  return {
    ...process.env,
    NODE_ENV: "production",
    NEXT_TELEMETRY_DISABLED: "1",
    PORT: String(appPort),
    OXIDP_ISSUER: oxidp.issuer,
    OXIDP_CLIENT_ID: demo.id,
    OXIDP_CLIENT_SECRET: demo.secret,
    OXIDP_FRONTEND_CLIENT_ID: frontend.id,
    OXIDP_FRONTEND_CLIENT_SECRET: frontend.secret,
    OXIDP_END_USER_IP_HEADER: "x-end-user-ip",
    NEXTAUTH_URL: `http://localhost:${appPort}`,
    NEXTAUTH_SECRET: randomBytes(32).toString("base64url"),
  };
}

async function waitFor(url, timeoutMs, log) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url, { redirect: "manual" });
      if (r.status < 500) return;
      last = `status ${r.status}`;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms (${last})\n${log()}`);
}

async function startApp(oxidp, ctx) {
  const appDir = path.join(ctx.repoRoot, "examples", "nextjs");
  const env = appEnv(oxidp, ctx.appPort);
  if (!built) {
    if (!existsSync(path.join(appDir, "node_modules"))) {
      // Without NODE_ENV=production, and with --include=dev: npm would otherwise leave
      // out TypeScript and the type packages that `next build` needs.
      const { NODE_ENV: _, ...installEnv } = env;
      sh("npm", ["ci", "--include=dev", "--no-audit", "--no-fund"], { cwd: appDir, env: installEnv });
    }
    sh("npx", ["next", "build"], { cwd: appDir, env });
    built = true;
  }
  const logPath = path.join(ctx.outDir, `nextjs-${ctx.database}.log`);
  const log = createWriteStream(logPath);
  const child = spawn("npx", ["next", "start", "-p", String(ctx.appPort)], {
    cwd: appDir,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let tail = "";
  const keep = (chunk) => {
    log.write(chunk);
    tail = (tail + chunk.toString()).slice(-4000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const url = `http://localhost:${ctx.appPort}`;
  await waitFor(`${url}/`, 60_000, () => tail);
  return {
    url,
    logs: () => tail,
    async stop() {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {}
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
      log.end();
    },
  };
}

const byTest = (page, id) => page.getByTestId(id);

async function text(page, id) {
  return (await byTest(page, id).textContent({ timeout: 15_000 }))?.trim() ?? "";
}

async function signInAtOxidp(page, oxidp, username, password) {
  await page.waitForURL((u) => u.href.startsWith(`${oxidp.issuer}/login`), { timeout: 15_000 });
  await page.fill("#username", username);
  await page.fill("#password", password);
  await Promise.all([page.waitForLoadState("load"), page.click("button[type=submit]")]);
}

async function allowIfAsked(page, oxidp) {
  if (page.url().startsWith(`${oxidp.issuer}/consent`)) {
    await page.click("button[name=decision][value=allow]");
  }
}

export async function run(runner, oxidp, ctx) {
  const out = ctx.outDir;
  mkdirSync(out, { recursive: true });
  const alice = oxidp.users.alice;
  const bob = oxidp.users.bob;

  let app;
  let browser;
  let page;
  let context;
  await runner.check("browser: Chromium present (installed with apt when missing)", async () => {
    ensureChromium();
  });
  await runner.check("browser: example app builds and starts against this oxidp", async () => {
    app = await startApp(oxidp, ctx);
  });
  if (!app) return;
  try {
    await runner.check("browser: headless Chromium launches (playwright-core)", async () => {
      const { chromium } = await import("playwright-core");
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
      context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
      page = await context.newPage();
    });
    if (!page) return;

    await runner.check("browser: public page renders with sign-in choices", async () => {
      await page.goto(`${app.url}/`);
      await byTest(page, "signin-oxidp").waitFor({ timeout: 15_000 });
      await byTest(page, "signin-form-link").waitFor();
    });

    await runner.check("browser: protected page sends a signed-out visitor to sign in", async () => {
      await page.goto(`${app.url}/protected`);
      assert.ok(!page.url().startsWith(`${app.url}/protected`), `still at ${page.url()}`);
      assert.ok(page.url().includes("/api/auth/signin"), `went to ${page.url()}`);
    });

    await runner.check("browser: sign in through oxidp's hosted login and consent pages", async () => {
      await page.goto(`${app.url}/`);
      await byTest(page, "signin-oxidp").click();
      await page.waitForURL((u) => u.href.startsWith(`${oxidp.issuer}/login`), { timeout: 15_000 });
      await page.screenshot({ path: path.join(out, `login-page-${ctx.database}.png`), fullPage: true });
      await signInAtOxidp(page, oxidp, alice.username, alice.password);
      assert.ok(page.url().startsWith(`${oxidp.issuer}/consent`), `expected the consent page, at ${page.url()}`);
      await page.screenshot({ path: path.join(out, `consent-page-${ctx.database}.png`), fullPage: true });
      await page.click("button[name=decision][value=allow]");
      await page.waitForURL(`${app.url}/protected`, { timeout: 20_000 });
    });

    await runner.check("browser: protected page shows name, e-mail and roles from the session", async () => {
      assert.equal(await text(page, "user-name"), alice.name);
      assert.equal(await text(page, "user-email"), alice.email);
      // oxidp gives every user the role "user" besides the configured ones.
      const roles = (await text(page, "user-roles")).split(",").map((r) => r.trim()).sort();
      assert.deepEqual(roles, [...new Set([...alice.roles, "user"])].sort());
      await page.screenshot({ path: path.join(out, `signed-in-page-${ctx.database}.png`), fullPage: true });
    });

    await runner.check("browser: the app's server route reads /api/v1/account/me with the access token", async () => {
      await byTest(page, "load-profile").click();
      await page.waitForFunction(() => document.querySelector('[data-testid="profile-json"]')?.textContent?.includes("{"), null, { timeout: 15_000 });
      const profile = JSON.parse(await text(page, "profile-json"));
      assert.equal(profile.username, alice.username);
      assert.equal(profile.email, alice.email);
      assert.deepEqual([...profile.roles].sort(), [...new Set([...alice.roles, "user"])].sort());
      assert.match(profile.sub, /^[A-Za-z0-9_-]{10,}$/);
    });

    await runner.check("browser: the access token is refreshed before expiry (refresh_token grant)", async () => {
      const before = Number(await text(page, "token-expires"));
      assert.ok(before > 0, `token-expires ${before}`);
      // oxidp here issues 60-second access tokens and the app refreshes a minute early,
      // so every session read refreshes; a new expiry proves a new token.
      await page.waitForTimeout(1100);
      await page.reload();
      await page.waitForFunction((b) => Number(document.querySelector('[data-testid="token-expires"]')?.textContent) > b, before, { timeout: 15_000 });
      assert.equal(await byTest(page, "session-error").count(), 0, "session error shown");
    });

    await runner.check("browser: two tabs refreshing at once keep the session (refresh grace window)", async () => {
      const second = await context.newPage();
      await page.waitForTimeout(1100);
      await Promise.all([page.reload(), second.goto(`${app.url}/protected`)]);
      for (const p of [page, second]) {
        assert.equal(await text(p, "user-name"), alice.name);
      }
      await page.waitForTimeout(1100);
      await page.reload();
      assert.equal(await text(page, "user-name"), alice.name);
      assert.equal(await byTest(page, "session-error").count(), 0, "the family was revoked after concurrent refreshes");
      await second.close();
    });

    await runner.check("browser: sign-out ends the oxidp session through end_session_endpoint", async () => {
      await byTest(page, "signout").click();
      await page.waitForURL((u) => u.href.replace(/\/$/, "") === app.url, { timeout: 20_000 });
      await page.goto(`${app.url}/protected`);
      assert.ok(page.url().includes("/api/auth/signin"), `protected page still open: ${page.url()}`);
      // oxidp's own session is gone too: signing in again shows its login page.
      await page.goto(`${app.url}/`);
      await byTest(page, "signin-oxidp").click();
      await page.waitForURL((u) => u.href.startsWith(`${oxidp.issuer}/`), { timeout: 15_000 });
      assert.ok(page.url().startsWith(`${oxidp.issuer}/login`), `expected oxidp's login page, at ${page.url()}`);
    });

    await runner.check("browser: a session ended at oxidp shows RefreshAccessTokenError in the app", async () => {
      // Sign in again (consent is remembered), then sign out everywhere on oxidp's own
      // sessions page: the refresh family dies with the session, so the app's next
      // refresh fails and it must say so rather than show stale data.
      await signInAtOxidp(page, oxidp, alice.username, alice.password);
      await allowIfAsked(page, oxidp);
      await page.waitForURL(`${app.url}/protected`, { timeout: 20_000 });
      await page.goto(`${oxidp.issuer}/account/sessions`);
      await Promise.all([page.waitForLoadState("load"), page.click("form:has(input[name=all]) button[type=submit]")]);
      await page.waitForTimeout(1100);
      await page.goto(`${app.url}/protected`);
      await byTest(page, "session-error").waitFor({ timeout: 15_000 });
      await context.clearCookies();
    });

    await runner.check("browser: credentials form refuses a wrong password", async () => {
      await page.goto(`${app.url}/signin-form`);
      await byTest(page, "cred-username").fill(bob.username);
      await byTest(page, "cred-password").fill("not-the-password-at-all");
      await byTest(page, "cred-submit").click();
      await byTest(page, "cred-error").waitFor({ timeout: 15_000 });
    });

    await runner.check("browser: credentials form signs in through the password grant", async () => {
      await page.goto(`${app.url}/signin-form`);
      await byTest(page, "cred-username").fill(bob.username);
      await byTest(page, "cred-password").fill(bob.password);
      await byTest(page, "cred-submit").click();
      await page.waitForURL(`${app.url}/protected`, { timeout: 20_000 });
      assert.equal(await text(page, "user-email"), bob.email);
      await byTest(page, "load-profile").click();
      await page.waitForFunction(() => document.querySelector('[data-testid="profile-json"]')?.textContent?.includes("{"), null, { timeout: 15_000 });
      assert.equal(JSON.parse(await text(page, "profile-json")).username, bob.username);
      await page.screenshot({ path: path.join(out, `credentials-signed-in-${ctx.database}.png`), fullPage: true });
    });

    await runner.check("browser: credentials form reports the per-user limit (429) after repeated failures", async () => {
      await context.clearCookies();
      let message = "";
      for (let i = 0; i < 7; i++) {
        await page.goto(`${app.url}/signin-form`);
        await byTest(page, "cred-username").fill(bob.username);
        await byTest(page, "cred-password").fill(`wrong-password-${i}`);
        await byTest(page, "cred-submit").click();
        message = await text(page, "cred-error");
        if (/too many/i.test(message)) break;
      }
      assert.match(message, /too many/i);
    });

    await runner.check("browser: sign-up through prompt=create continues to the app", async () => {
      await context.clearCookies();
      const username = `carol${randomBytes(3).toString("hex")}`;
      await page.goto(`${app.url}/`);
      await byTest(page, "signup-oxidp").click();
      await page.waitForURL((u) => u.href.startsWith(`${oxidp.issuer}/register`), { timeout: 15_000 });
      await page.fill("#username", username);
      await page.fill("#email", `${username}@example.com`);
      await page.fill("#name", "Carol Example");
      await page.fill("#password", `correct horse ${username} battery`);
      await Promise.all([page.waitForLoadState("load"), page.click("button[type=submit]")]);
      // Verification first: the page says "Check your e-mail" (the same for an address
      // in use); the mailed link, opened in this browser, signs in and continues.
      assert.match(await page.content(), /Check your e-mail/);
      const link = await verificationLink(oxidp, `${username}@example.com`);
      await page.goto(link);
      await allowIfAsked(page, oxidp);
      await page.waitForURL(`${app.url}/protected`, { timeout: 20_000 });
      assert.equal(await text(page, "user-name"), "Carol Example");
      assert.equal(await text(page, "user-email"), `${username}@example.com`);
    });
  } finally {
    if (browser) await browser.close().catch(() => {});
    await app.stop();
  }
}

/** The verification link mailed to `address` (file transport outbox), waiting up to 10 s. */
async function verificationLink(oxidp, address) {
  const dir = path.join(oxidp.dir, "outbox");
  const deadline = Date.now() + 10_000;
  for (;;) {
    for (const name of existsSync(dir) ? readdirSync(dir) : []) {
      if (!name.endsWith(".eml")) continue;
      const raw = readFileSync(path.join(dir, name), "utf8").replace(/=\r?\n/g, "");
      if (!raw.toLowerCase().includes(`to: ${address}`.toLowerCase())) continue;
      const match = raw.match(/(https?:\/\/[^\s]+\/verify-email\?token=[A-Za-z0-9_-]+)/);
      if (match) return match[1];
    }
    if (Date.now() > deadline) throw new Error(`no verification mail to ${address} within 10 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
