// Starts one oxidp process for the end-to-end suites: a fresh temp directory with its
// own config.toml, database (SQLite file or a fresh PostgreSQL database), keys and
// outbox; seeded users and clients with random secrets; waits for /readyz.

import { spawn, spawnSync, execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, mkdir, writeFile, rm, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

const PG_HOST = process.env.E2E_PG_HOST ?? "127.0.0.1";
const PG_PORT = process.env.E2E_PG_PORT ?? "5432";
const PG_USER = process.env.E2E_PG_USER ?? "postgres";

/** A random URL-safe string of `bytes` random bytes. */
export function randomString(bytes = 32) {
  return randomBytes(bytes).toString("base64url");
}

/** TOML basic string. */
function q(s) {
  return JSON.stringify(String(s));
}

function arr(list) {
  return `[${list.map(q).join(", ")}]`;
}

async function psql(sql) {
  await execFileP("psql", ["-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER, "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql], {
    timeout: 30_000,
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * @param {{ database: "sqlite" | "postgres", port: number, appPort: number, bin: string, outDir: string }} opts
 */
export async function startOxidp({ database, port, appPort, bin, outDir }) {
  if (database !== "sqlite" && database !== "postgres") {
    throw new Error(`database must be "sqlite" or "postgres", not ${database}`);
  }
  const dir = await mkdtemp(join(tmpdir(), `oxidp-e2e-${database}-`));
  await mkdir(outDir, { recursive: true });
  const issuer = `http://localhost:${port}`;
  const rpBase = `http://localhost:${appPort + 1}`;
  const appBase = `http://localhost:${appPort}`;

  let databaseUrl;
  let pgDatabase = null;
  if (database === "sqlite") {
    databaseUrl = `sqlite://${join(dir, "oxidp.db")}`; // absolute path: sqlite:///tmp/…
  } else {
    pgDatabase = `oxidp_e2e_${randomBytes(6).toString("hex")}`;
    await psql(`CREATE DATABASE ${pgDatabase}`);
    databaseUrl = `postgres://${PG_USER}@${PG_HOST}:${PG_PORT}/${pgDatabase}`;
  }

  const users = {
    alice: {
      username: "alice",
      email: "alice@example.com",
      password: `Alice-${randomString(18)}`,
      name: "Alice Example",
      given_name: "Alice",
      family_name: "Example",
      roles: ["admin", "staff"],
      // docs/accounts.md: every user also has the role "user".
      tokenRoles: ["admin", "staff", "user"],
    },
    bob: {
      username: "bob",
      email: "bob@example.com",
      password: `Bob-${randomString(18)}`,
      name: "Bob Builder",
      given_name: "Bob",
      family_name: "Builder",
      roles: [],
      tokenRoles: ["user"],
    },
  };

  const clients = {
    "e2e-rp": {
      id: "e2e-rp",
      name: "E2E relying party",
      // Characters that client_secret_basic must form-urlencode (RFC 6749 §2.3.1): a
      // server that skips the decoding, or splits at the wrong colon, fails here.
      secret: `${randomString(32)}:+%-_.~ /`,
      redirect_uris: [`${rpBase}/cb`],
      post_logout_redirect_uris: [`${rpBase}/logged-out`],
      grant_types: ["authorization_code", "refresh_token"],
      token_endpoint_auth_method: "client_secret_basic",
    },
    "e2e-rp-post": {
      id: "e2e-rp-post",
      name: "E2E relying party (client_secret_post)",
      secret: `${randomString(32)}&=+%`,
      redirect_uris: [`${rpBase}/cb-post`],
      post_logout_redirect_uris: [`${rpBase}/logged-out`],
      grant_types: ["authorization_code", "refresh_token"],
      token_endpoint_auth_method: "client_secret_post",
    },
    "e2e-public": {
      id: "e2e-public",
      name: "E2E public client",
      redirect_uris: [`${rpBase}/public-cb`],
      post_logout_redirect_uris: [`${rpBase}/logged-out`],
      grant_types: ["authorization_code", "refresh_token"],
      token_endpoint_auth_method: "none",
    },
    "e2e-m2m": {
      id: "e2e-m2m",
      name: "E2E machine client",
      secret: randomString(32),
      grant_types: ["client_credentials"],
      token_endpoint_auth_method: "client_secret_basic",
      scopes: ["api:read"],
    },
    "e2e-rs": {
      id: "e2e-rs",
      name: "E2E resource server",
      secret: randomString(32),
      grant_types: ["client_credentials"],
      token_endpoint_auth_method: "client_secret_basic",
      introspect_any: true,
    },
    "nextjs-demo": {
      id: "nextjs-demo",
      name: "Next.js demo",
      secret: randomString(32),
      redirect_uris: [`${appBase}/api/auth/callback/oxidp`],
      post_logout_redirect_uris: [appBase],
      grant_types: ["authorization_code", "refresh_token"],
      token_endpoint_auth_method: "client_secret_basic",
      first_party: false,
    },
    "nextjs-demo-frontend": {
      id: "nextjs-demo-frontend",
      name: "Next.js demo (own sign-in form)",
      secret: randomString(32),
      post_logout_redirect_uris: [appBase],
      grant_types: ["password", "refresh_token"],
      token_endpoint_auth_method: "client_secret_basic",
      first_party: true,
    },
  };

  const lines = [];
  lines.push(
    "# Written by tests/e2e/lib/oxidp.mjs for one end-to-end run.",
    "[server]",
    `bind = ${q(`127.0.0.1:${port}`)}`,
    `issuer = ${q(issuer)}`,
    "shutdown_timeout_seconds = 5",
    "",
    "[database]",
    `url = ${q(databaseUrl)}`,
    "",
    "[keys]",
    `dir = ${q(join(dir, "keys"))}`,
    "",
    "[email]",
    'transport = "file"',
    `outbox_dir = ${q(join(dir, "outbox"))}`,
    "",
    "[accounts]",
    "allow_registration = true",
    "",
    "[tokens]",
    "access_token_seconds = 60",
    "",
    "[ratelimit]",
    'client_ip_header = "x-end-user-ip"',
    "",
    "[log]",
    'level = "info"',
    "",
  );
  for (const u of Object.values(users)) {
    lines.push(
      "[[users]]",
      `username = ${q(u.username)}`,
      `email = ${q(u.email)}`,
      `password = ${q(u.password)}`,
      `name = ${q(u.name)}`,
      `given_name = ${q(u.given_name)}`,
      `family_name = ${q(u.family_name)}`,
      `roles = ${arr(u.roles)}`,
      "",
    );
  }
  for (const c of Object.values(clients)) {
    lines.push("[[clients]]", `id = ${q(c.id)}`, `name = ${q(c.name)}`);
    if (c.secret) lines.push(`secret = ${q(c.secret)}`);
    if (c.redirect_uris) lines.push(`redirect_uris = ${arr(c.redirect_uris)}`);
    if (c.post_logout_redirect_uris) lines.push(`post_logout_redirect_uris = ${arr(c.post_logout_redirect_uris)}`);
    lines.push(`grant_types = ${arr(c.grant_types)}`);
    lines.push(`token_endpoint_auth_method = ${q(c.token_endpoint_auth_method)}`);
    if (c.first_party !== undefined) lines.push(`first_party = ${c.first_party}`);
    if (c.introspect_any) lines.push("introspect_any = true");
    if (c.scopes) lines.push(`scopes = ${arr(c.scopes)}`);
    lines.push("");
  }
  const configPath = join(dir, "config.toml");
  await writeFile(configPath, lines.join("\n"), { mode: 0o600 });

  const logPath = join(outDir, `oxidp-${database}.log`);
  const logStream = createWriteStream(logPath, { flags: "w" });
  let logText = "";
  const capture = (chunk) => {
    logStream.write(chunk);
    logText += chunk.toString("utf8");
    if (logText.length > 2_000_000) logText = logText.slice(-1_000_000);
  };

  // The environment must not override the written config (OXIDP_* variables).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OXIDP_")));
  const child = spawn(bin, ["--config", configPath, "serve"], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.on("data", capture);
  child.stderr.on("data", capture);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.on("error", (err) => {
      exited = { code: null, signal: null, error: err };
      resolve(exited);
    });
  });

  let stopped = false;
  // If this process dies without stop() (a crash, process.exit), take the server and
  // its database with it.
  const onExit = () => {
    if (!exited) child.kill("SIGKILL");
    if (pgDatabase && !stopped) {
      spawnSync("psql", ["-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER, "-d", "postgres", "-c", `DROP DATABASE IF EXISTS ${pgDatabase} WITH (FORCE)`], { stdio: "ignore", timeout: 10_000 });
    }
  };
  process.once("exit", onExit);

  const logs = () => logText;
  const tail = (n = 40) => logText.split("\n").slice(-n).join("\n");

  async function stop() {
    if (stopped) return;
    stopped = true;
    process.removeListener("exit", onExit);
    if (!exited) {
      child.kill("SIGTERM");
      const done = await Promise.race([exitPromise, sleep(15_000).then(() => null)]);
      if (!done) {
        child.kill("SIGKILL");
        await exitPromise;
      }
    }
    await new Promise((r) => logStream.end(r));
    if (pgDatabase) {
      try {
        await psql(`DROP DATABASE IF EXISTS ${pgDatabase} WITH (FORCE)`);
      } catch (err) {
        process.stderr.write(`warning: could not drop ${pgDatabase}: ${err.message}\n`);
      }
    }
    if (!process.env.E2E_KEEP_TMP) await rm(dir, { recursive: true, force: true });
  }

  // Wait for readiness.
  const deadline = Date.now() + 30_000;
  let lastError = "";
  for (;;) {
    if (exited) {
      await stop();
      throw Object.assign(new Error(`oxidp exited during start-up (${exited.error?.message ?? `code ${exited.code}, signal ${exited.signal}`})`), {
        detail: `log ${logPath}:\n${tail()}`,
      });
    }
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2_000) });
      if (res.status === 200) break;
      lastError = `/readyz answered ${res.status}`;
    } catch (err) {
      lastError = err.cause?.code ?? err.message;
    }
    if (Date.now() > deadline) {
      await stop();
      throw Object.assign(new Error(`oxidp not ready after 30 s (${lastError})`), { detail: `log ${logPath}:\n${tail()}` });
    }
    await sleep(100);
  }

  return {
    database,
    issuer,
    port,
    dir,
    configPath,
    logPath,
    clients,
    users,
    stop,
    logs,
    tail,
    /** The redirect URIs the suites use for the `e2e-rp` family of clients. */
    rpBase,
    appBase,
    async readConfig() {
      return readFile(configPath, "utf8");
    },
  };
}
