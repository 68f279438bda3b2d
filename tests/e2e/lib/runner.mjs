// A minimal check runner: one line per check, failures with indented detail, a
// closing "N passed, N failed" line. A failing check never stops the suite.

import { inspect } from "node:util";

function oneLine(s) {
  return String(s).replace(/\s+/g, " ").trim();
}

/** The short reason printed after "FAIL <name>: ". */
function shortReason(err) {
  if (err && typeof err === "object") {
    const code = err.code && !String(err.message).includes(err.code) ? `[${err.code}] ` : "";
    const msg = oneLine(err.message ?? String(err));
    return (code + msg).slice(0, 300) || inspect(err).slice(0, 300);
  }
  return oneLine(String(err)).slice(0, 300);
}

/** The indented detail printed below a FAIL line. */
function detail(err) {
  const lines = [];
  if (err && typeof err === "object") {
    // node:assert errors carry the compared values.
    if (err.name === "AssertionError" && ("actual" in err || "expected" in err)) {
      if (err.operator) lines.push(`operator: ${err.operator}`);
      const show = (v) => {
        const t = v instanceof Error ? `${v.name}${v.code ? ` [${v.code}]` : ""}: ${v.message}` : inspect(v, { depth: 4, breakLength: 120 });
        return t.length > 800 ? `${t.slice(0, 800)} …` : t;
      };
      lines.push(`actual:   ${show(err.actual)}`);
      lines.push(`expected: ${show(err.expected)}`);
    }
    // oauth4webapi / openid-client errors: the OAuth error body, status, cause.
    for (const key of ["error", "error_description", "status"]) {
      if (err[key] !== undefined && typeof err[key] !== "object") lines.push(`${key}: ${err[key]}`);
    }
    if (err.cause !== undefined) {
      const c = err.cause;
      const cause = c instanceof Response
        ? `Response ${c.status} ${c.url}`
        : c instanceof Error
          ? `${c.name}${c.code ? ` [${c.code}]` : ""}: ${c.message}${c.status ? ` (status ${c.status})` : ""}${c.error ? ` error=${c.error}` : ""}${c.cause !== undefined && !(c.cause instanceof Response) ? ` cause=${inspect(c.cause, { depth: 3, breakLength: Infinity })}` : ""}`
          : inspect(c, { depth: 3, breakLength: 120 });
      lines.push(`cause: ${cause}`);
    }
    if (err.response instanceof Response) {
      lines.push(`response: ${err.response.status} ${err.response.url}`);
    }
    if (err.detail) lines.push(String(err.detail));
    if (err.stack) {
      const frames = String(err.stack)
        .split("\n")
        .filter((l) => /^\s+at /.test(l))
        .slice(0, 4)
        .map((l) => l.trim());
      lines.push(...frames);
    }
  }
  return lines
    .join("\n")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => `    ${l}`)
    .join("\n");
}

export function createRunner({ out = process.stdout } = {}) {
  let passed = 0;
  let failed = 0;
  const failures = [];
  const runner = {
    prefix: "",
    /** The name of the check in progress (for the overall timeout message). */
    current: null,
    async check(name, fn) {
      const full = `${runner.prefix}${name}`;
      runner.current = full;
      try {
        await fn();
        passed += 1;
        out.write(`ok   ${full}\n`);
      } catch (err) {
        failed += 1;
        failures.push(full);
        out.write(`FAIL ${full}: ${shortReason(err)}\n`);
        const d = detail(err);
        if (d) out.write(`${d}\n`);
      } finally {
        runner.current = null;
      }
    },
    /** Records a failure that is not the result of running a function. */
    fail(name, reason, more) {
      const full = `${runner.prefix}${name}`;
      failed += 1;
      failures.push(full);
      out.write(`FAIL ${full}: ${oneLine(reason)}\n`);
      if (more) out.write(`${String(more).split("\n").map((l) => `    ${l}`).join("\n")}\n`);
    },
    get passed() {
      return passed;
    },
    get failed() {
      return failed;
    },
    get failures() {
      return [...failures];
    },
    summary() {
      out.write(`${passed} passed, ${failed} failed\n`);
      return failed;
    },
  };
  return runner;
}
