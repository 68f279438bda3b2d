// Entry point of the end-to-end suite: builds oxidp (unless OXIDP_BIN is set), starts a
// fresh server per database (SQLite, then PostgreSQL unless E2E_SKIP_POSTGRES=1) and
// runs the selected suites against it.
//
//   node run.mjs                          # all suites
//   node run.mjs openid-client oauth4webapi

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRunner } from "./lib/runner.mjs";
import { startOxidp } from "./lib/oxidp.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..", "..");
const outDir = join(here, "out");
const SUITES = ["openid-client", "oauth4webapi", "browser"];
const TIMEOUT_MINUTES = Number(process.env.E2E_TIMEOUT_MINUTES ?? 15);

const runner = createRunner();
let current = null; // { database, suite, oxidp }

function usage(msg) {
  process.stderr.write(`${msg}\nusage: node run.mjs [${SUITES.join("|")} …]\n`);
  process.exit(2);
}

const selected = process.argv.slice(2).map((a) => a.replace(/\.mjs$/, "").replace(/^\.\//, ""));
for (const s of selected) if (!SUITES.includes(s)) usage(`unknown suite: ${s}`);
const suites = selected.length ? SUITES.filter((s) => selected.includes(s)) : SUITES;

async function emergencyStop() {
  const ox = current?.oxidp;
  if (ox) await Promise.race([ox.stop().catch(() => {}), new Promise((r) => setTimeout(r, 5_000))]);
}

const overall = setTimeout(async () => {
  const where = current ? `[${current.database}] suite ${current.suite ?? "(starting)"}` : "(between suites)";
  runner.prefix = "";
  runner.fail(
    "overall timeout",
    `after ${TIMEOUT_MINUTES} min, while running ${where}${runner.current ? `, check "${runner.current}"` : ""}`,
    current?.oxidp ? `oxidp log tail:\n${current.oxidp.tail(20)}` : undefined,
  );
  await emergencyStop();
  runner.summary();
  process.exit(1);
}, TIMEOUT_MINUTES * 60_000);
// Not unref()ed: a promise that never settles must end in this message, not a silent exit.

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, async () => {
    process.stdout.write(`\ninterrupted (${sig})\n`);
    await emergencyStop();
    process.exit(130);
  });
}
// A closed pipe (e.g. `| head`) must not skip stopping oxidp and dropping its database.
process.stdout.on("error", (err) => {
  if (err.code !== "EPIPE") throw err;
});
process.on("unhandledRejection", (err) => {
  runner.fail("unhandled rejection", err?.message ?? String(err), err?.stack);
});

/** A free TCP port on 127.0.0.1 (and optionally the one after it too). */
async function freePort({ withNext = false } = {}) {
  const listen = (port) =>
    new Promise((res, rej) => {
      const srv = createServer();
      srv.once("error", rej);
      srv.listen(port, "127.0.0.1", () => res(srv));
    });
  for (let i = 0; i < 50; i += 1) {
    const srv = await listen(0);
    const port = srv.address().port;
    if (!withNext || port >= 65535) {
      await new Promise((r) => srv.close(r));
      if (!withNext) return port;
      continue;
    }
    try {
      const next = await listen(port + 1);
      await new Promise((r) => next.close(r));
      await new Promise((r) => srv.close(r));
      return port;
    } catch {
      await new Promise((r) => srv.close(r));
    }
  }
  throw new Error("no free port pair found");
}

function buildBinary() {
  if (process.env.OXIDP_BIN) {
    const bin = resolve(process.env.OXIDP_BIN);
    if (!existsSync(bin)) {
      process.stderr.write(`OXIDP_BIN=${bin} does not exist\n`);
      process.exit(2);
    }
    return bin;
  }
  process.stdout.write(`building oxidp: cargo build --release --locked (in ${repoRoot})\n`);
  const r = spawnSync("cargo", ["build", "--release", "--locked"], { cwd: repoRoot, stdio: ["ignore", "inherit", "inherit"] });
  if (r.status !== 0) {
    process.stdout.write(`FAIL cargo build --release --locked: exit ${r.status ?? r.signal ?? r.error?.message}\n`);
    process.exit(1);
  }
  return join(repoRoot, "target", "release", "oxidp");
}

async function main() {
  mkdirSync(outDir, { recursive: true });
  const bin = buildBinary();
  const port = await freePort();
  let appPort = await freePort({ withNext: true });
  while (appPort === port || appPort + 1 === port) appPort = await freePort({ withNext: true });

  const databases = ["sqlite"];
  if (process.env.E2E_SKIP_POSTGRES === "1") process.stdout.write("PostgreSQL skipped (E2E_SKIP_POSTGRES=1)\n");
  else databases.push("postgres");

  process.stdout.write(`oxidp ${bin}; port ${port}, app port ${appPort}; suites: ${suites.join(", ")}; databases: ${databases.join(", ")}\n`);

  for (const database of databases) {
    runner.prefix = `[${database}] `;
    current = { database, suite: null, oxidp: null };
    let oxidp;
    try {
      oxidp = await startOxidp({ database, port, appPort, bin, outDir });
      current.oxidp = oxidp;
    } catch (err) {
      runner.fail("oxidp start-up", err.message, err.detail);
      continue;
    }
    const ctx = { appPort, outDir, database, repoRoot };
    try {
      for (const suite of suites) {
        current.suite = suite;
        const file = join(here, `${suite}.mjs`);
        if (!existsSync(file)) {
          runner.fail(`${suite} suite missing`, `${file} does not exist`);
          continue;
        }
        let mod;
        try {
          mod = await import(pathToFileURL(file).href);
        } catch (err) {
          runner.fail(`${suite} suite failed to load`, err.message, err.stack);
          continue;
        }
        if (typeof mod.run !== "function") {
          runner.fail(`${suite} suite has no run()`, `${file} must export async function run(runner, oxidp, ctx)`);
          continue;
        }
        try {
          await mod.run(runner, oxidp, ctx);
        } catch (err) {
          runner.fail(`${suite} suite crashed`, err?.message ?? String(err), err?.stack);
        }
      }
    } finally {
      current.suite = "(stopping oxidp)";
      await oxidp.stop();
      current = null;
    }
    // A panic or error-level line in the server log is a failure of its own.
    const bad = oxidp
      .logs()
      .split("\n")
      .filter((l) => /panicked at|\bERROR\b/.test(l));
    if (bad.length) runner.fail("oxidp log has errors or panics", `${bad.length} line(s) in ${oxidp.logPath}`, bad.slice(0, 10).join("\n"));
  }
  runner.prefix = "";
  const failed = runner.summary();
  process.exit(failed ? 1 : 0);
}

main().catch(async (err) => {
  process.stdout.write(`FAIL run.mjs: ${err?.message ?? err}\n${err?.stack ?? ""}\n`);
  await emergencyStop();
  runner.summary();
  process.exit(1);
});
