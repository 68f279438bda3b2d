// Small helpers shared by the suites: JWT decoding, at_hash, an HTTP recorder that
// attaches the last exchanges to a failing check, and a "needs" guard for checks that
// depend on an earlier one.

import { createHash } from "node:crypto";

/** Decodes a compact JWS without verifying it: { header, payload }. */
export function decodeJwt(token) {
  if (typeof token !== "string") throw new TypeError(`not a JWT: ${typeof token}`);
  const parts = token.split(".");
  if (parts.length !== 3) throw new TypeError(`not a compact JWS (${parts.length} parts)`);
  const dec = (p) => JSON.parse(Buffer.from(p, "base64url").toString("utf8"));
  return { header: dec(parts[0]), payload: dec(parts[1]) };
}

/** OIDC Core §3.1.3.6 at_hash for RS256: base64url of the left half of SHA-256. */
export function atHash(accessToken) {
  return createHash("sha256").update(accessToken, "ascii").digest().subarray(0, 16).toString("base64url");
}

/** Throws a clear "skipped" error when an earlier check did not produce what this one needs. */
export function need(value, what) {
  if (value === undefined || value === null) {
    throw new Error(`not run: needs ${what} from an earlier check`);
  }
  return value;
}

function redact(s) {
  return String(s)
    .replace(/(authorization:\s*basic\s+)[A-Za-z0-9+/=]+/gi, "$1<redacted>")
    .replace(/(client_secret=)[^&\s]+/g, "$1<redacted>")
    .replace(/(password=)[^&\s]+/g, "$1<redacted>");
}

/**
 * Wraps fetch, remembering the last exchanges (method, URL, request body, status,
 * response body) so a failing check can show what was sent and answered.
 */
export function createRecorder(limit = 6) {
  const entries = [];
  async function recordingFetch(input, init = {}) {
    const req = input instanceof Request ? input : null;
    const url = req ? req.url : String(input);
    const method = init.method ?? req?.method ?? "GET";
    let reqBody = "";
    if (typeof init.body === "string") reqBody = init.body;
    else if (init.body instanceof URLSearchParams) reqBody = init.body.toString();
    const headers = new Headers(init.headers ?? req?.headers ?? {});
    const entry = { method, url, reqBody, auth: headers.get("authorization")?.split(" ")[0] ?? null, status: null, resBody: "" };
    entries.push(entry);
    if (entries.length > limit) entries.shift();
    const res = await fetch(input, init);
    entry.status = res.status;
    entry.resHeaders = {
      "content-type": res.headers.get("content-type"),
      "www-authenticate": res.headers.get("www-authenticate"),
      location: res.headers.get("location"),
    };
    try {
      entry.resBody = (await res.clone().text()).slice(0, 600);
    } catch {
      entry.resBody = "<unreadable>";
    }
    return res;
  }
  return {
    fetch: recordingFetch,
    entries,
    clear() {
      entries.length = 0;
    },
    dump(n = 3) {
      return entries
        .slice(-n)
        .map((e) => {
          const hdrs = Object.entries(e.resHeaders ?? {})
            .filter(([, v]) => v)
            .map(([k, v]) => `${k}: ${v}`)
            .join("; ");
          return redact(
            `> ${e.method} ${e.url}${e.auth ? ` (Authorization: ${e.auth} …)` : ""}${e.reqBody ? `\n>   ${e.reqBody}` : ""}\n< ${e.status}${hdrs ? ` (${hdrs})` : ""}${e.resBody ? `\n<   ${e.resBody.replace(/\s+/g, " ")}` : ""}`,
          );
        })
        .join("\n");
    },
  };
}

/** Runs fn; if it throws, appends the recorder's last exchanges to the error's detail. */
export function traced(recorder, fn) {
  return async () => {
    recorder.clear();
    try {
      await fn();
    } catch (err) {
      const dump = recorder.dump();
      if (dump && err && typeof err === "object") {
        try {
          err.detail = [err.detail, "HTTP exchanges (most recent last):", dump].filter(Boolean).join("\n");
        } catch {
          /* frozen error object: keep it as is */
        }
      }
      throw err;
    }
  };
}

export function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}
