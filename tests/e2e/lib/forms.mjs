// A tiny cookie-jar "browser" on fetch (redirect: "manual") that drives oxidp's hosted
// pages as a person would: GET the page, keep its cookies, POST every form field back.

const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };

export function htmlDecode(s) {
  return String(s).replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, e) => {
    if (e[0] === "#") {
      const cp = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(cp) ? String.fromCodePoint(cp) : m;
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

function attr(tag, name) {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, "i").exec(tag);
  if (!m) return undefined;
  return htmlDecode(m[1] ?? m[2] ?? m[3] ?? "");
}

/** Parses the forms of a page: [{ action, method, inputs: [{name, value, type}], buttons: [{name, value}] }]. */
export function parseForms(html) {
  const forms = [];
  const formRe = /<form\b([^>]*)>([\s\S]*?)<\/form>/gi;
  let m;
  while ((m = formRe.exec(html))) {
    const [, formAttrs, body] = m;
    const form = {
      action: attr(` ${formAttrs}`, "action") ?? "",
      method: (attr(` ${formAttrs}`, "method") ?? "get").toLowerCase(),
      inputs: [],
      buttons: [],
    };
    for (const t of body.matchAll(/<input\b[^>]*>/gi)) {
      const name = attr(t[0], "name");
      if (name === undefined) continue;
      form.inputs.push({ name, value: attr(t[0], "value") ?? "", type: (attr(t[0], "type") ?? "text").toLowerCase() });
    }
    for (const t of body.matchAll(/<button\b[^>]*>/gi)) {
      const name = attr(t[0], "name");
      if (name === undefined) continue;
      form.buttons.push({ name, value: attr(t[0], "value") ?? "" });
    }
    forms.push(form);
  }
  return forms;
}

/** Hidden inputs of a page as [name, value] pairs (regex on name="…" value="…"). */
export function hiddenFields(html) {
  return parseForms(html).flatMap((f) => f.inputs.filter((i) => i.type === "hidden").map((i) => [i.name, i.value]));
}

function textSnippet(html, n = 300) {
  return String(html)
    .replace(/<style[\s\S]*?<\/style>/gi, " ")
    .replace(/<[^>]+>/g, " ")
    .replace(/\s+/g, " ")
    .trim()
    .slice(0, n);
}

export class FlowError extends Error {
  constructor(message, { status, url, body, trail } = {}) {
    super(message);
    this.name = "FlowError";
    this.status = status;
    this.url = url;
    const lines = [];
    if (trail?.length) lines.push(`trail: ${trail.join(" -> ")}`);
    if (body !== undefined) lines.push(`page: ${textSnippet(body)}`);
    this.detail = lines.join("\n");
  }
}

/**
 * A cookie jar plus helpers. Cookies are kept per host (ports share cookies, as in
 * browsers); Path, Secure and SameSite are not enforced (everything here is
 * same-site, http on localhost).
 */
export function createBrowser({ userAgent = "oxidp-e2e/1.0 (forms.mjs)" } = {}) {
  /** host -> Map(name -> value) */
  const jar = new Map();

  function store(url, res) {
    const host = new URL(url).hostname;
    const cookies = jar.get(host) ?? new Map();
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(";");
      const eq = pair.indexOf("=");
      if (eq < 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let expired = false;
      for (const a of attrs) {
        const [k, v = ""] = a.split("=");
        const key = k.trim().toLowerCase();
        if (key === "max-age" && Number(v.trim()) <= 0) expired = true;
        if (key === "expires" && Date.parse(v.trim()) < Date.now()) expired = true;
      }
      if (expired) cookies.delete(name);
      else cookies.set(name, value);
    }
    jar.set(host, cookies);
  }

  function cookieHeader(url) {
    const cookies = jar.get(new URL(url).hostname);
    if (!cookies || cookies.size === 0) return undefined;
    return [...cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  /** fetch with the jar, never following redirects. */
  async function request(url, { method = "GET", form, headers = {} } = {}) {
    const h = new Headers(headers);
    h.set("user-agent", userAgent);
    h.set("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
    const c = cookieHeader(url);
    if (c) h.set("cookie", c);
    let body;
    if (form) {
      body = new URLSearchParams(form).toString();
      h.set("content-type", "application/x-www-form-urlencoded");
      h.set("origin", new URL(url).origin);
    }
    const res = await fetch(url, { method, headers: h, body, redirect: "manual" });
    store(url, res);
    return res;
  }

  const browser = {
    jar,
    request,
    cookies(host = "localhost") {
      return new Map(jar.get(host) ?? []);
    },
    clear() {
      jar.clear();
    },
    /** Details of the last authorize() run. */
    lastFlow: null,

    /**
     * Follows an authorization URL through the hosted pages until a redirect to
     * `redirectUri` (compared as a string prefix) and returns that URL.
     *
     * @param {URL|string} authorizationUrl
     * @param {{ redirectUri: string, username?: string, password?: string, decision?: "allow"|"deny", expectLogin?: boolean, maxSteps?: number }} opts
     */
    async authorize(authorizationUrl, { redirectUri, username, password, decision = "allow", expectLogin, maxSteps = 12 } = {}) {
      if (!redirectUri) throw new Error("authorize(): redirectUri is required");
      const flow = { sawLogin: false, sawConsent: false, trail: [], formPost: null };
      browser.lastFlow = flow;
      let url = new URL(String(authorizationUrl));
      let method = "GET";
      let form;
      let loginPosts = 0;
      for (let step = 0; step < maxSteps; step += 1) {
        flow.trail.push(`${method} ${url.pathname}`);
        const res = await request(url.href, { method, form });
        if (res.status >= 300 && res.status < 400) {
          const loc = res.headers.get("location");
          await res.body?.cancel();
          if (!loc) throw new FlowError(`${res.status} without Location at ${url.pathname}`, { status: res.status, trail: flow.trail });
          const next = new URL(loc, url);
          flow.trail.push(`${res.status}`);
          if (next.href.startsWith(redirectUri)) {
            if (expectLogin === true && !flow.sawLogin) throw new FlowError("expected the login page, got a redirect without it", { trail: flow.trail });
            if (expectLogin === false && flow.sawLogin) throw new FlowError("expected single sign-on, got the login page", { trail: flow.trail });
            flow.status = res.status;
            return next;
          }
          url = next;
          method = "GET";
          form = undefined;
          continue;
        }
        const html = await res.text();
        if (res.status !== 200) {
          throw new FlowError(`HTTP ${res.status} at ${method} ${url.pathname}`, { status: res.status, url: url.href, body: html, trail: flow.trail });
        }
        const forms = parseForms(html);
        // response_mode=form_post: an auto-submitting form aimed at the redirect URI.
        const fp = forms.find((f) => f.action.startsWith(redirectUri));
        if (fp) {
          flow.formPost = Object.fromEntries(fp.inputs.map((i) => [i.name, i.value]));
          const target = new URL(fp.action);
          for (const [k, v] of Object.entries(flow.formPost)) target.searchParams.set(k, v);
          return target;
        }
        const login = forms.find((f) => f.action === "/login" || f.action.endsWith("/login") || f.inputs.some((i) => i.name === "password"));
        const consent = forms.find((f) => f.action === "/consent" || f.action.endsWith("/consent") || f.buttons.some((b) => b.name === "decision" && b.value === "allow"));
        if (login) {
          flow.sawLogin = true;
          loginPosts += 1;
          if (loginPosts > 1) throw new FlowError("the login page came back after signing in (wrong password?)", { url: url.href, body: html, trail: flow.trail });
          if (username === undefined || password === undefined) {
            throw new FlowError("login page shown but no credentials were given", { url: url.href, body: html, trail: flow.trail });
          }
          const fields = login.inputs.filter((i) => i.type === "hidden").map((i) => [i.name, i.value]);
          fields.push(["username", username], ["password", password]);
          url = new URL(login.action || url.pathname, url);
          method = "POST";
          form = fields;
          continue;
        }
        if (consent) {
          flow.sawConsent = true;
          const fields = consent.inputs.filter((i) => i.type === "hidden").map((i) => [i.name, i.value]);
          fields.push(["decision", decision]);
          url = new URL(consent.action || url.pathname, url);
          method = "POST";
          form = fields;
          continue;
        }
        throw new FlowError(`unexpected page at ${url.pathname}`, { status: res.status, url: url.href, body: html, trail: flow.trail });
      }
      throw new FlowError(`no redirect to ${redirectUri} after ${maxSteps} steps`, { trail: flow.trail });
    },
  };
  return browser;
}
