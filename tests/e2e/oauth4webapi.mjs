// oxidp against oauth4webapi v3 (panva), the strict low-level client that Auth.js v5
// (next-auth v5) is built on. If oauth4webapi accepts oxidp here, Auth.js's OIDC
// provider path does too. Only `allowInsecureRequests` is set (http on localhost).

import assert from "node:assert/strict";
import * as oauth from "oauth4webapi";
import { createBrowser } from "./lib/forms.mjs";
import { atHash, createRecorder, decodeJwt, need, nowSeconds, traced } from "./lib/util.mjs";

const P = "oauth4webapi: ";

async function rejectsWithOAuthError(promise, expected) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected a failure with ${expected}, but the call succeeded`);
  if (!(err instanceof oauth.ResponseBodyError) || err.error !== expected) {
    const e = new assert.AssertionError({
      message: `expected ResponseBodyError ${expected}, got ${err.name} ${err.error ?? err.code ?? ""}: ${err.message}`,
      actual: err.error ?? err.message,
      expected,
      operator: "strictEqual",
    });
    e.cause = err;
    throw e;
  }
  return err;
}

export async function run(runner, oxidp) {
  const issuer = new URL(oxidp.issuer);
  const rec = createRecorder();
  const check = (name, fn) => runner.check(P + name, traced(rec, fn));
  const http = { [oauth.allowInsecureRequests]: true, [oauth.customFetch]: rec.fetch };

  const rpc = oxidp.clients["e2e-rp"];
  const m2mc = oxidp.clients["e2e-m2m"];
  const alice = oxidp.users.alice;
  const redirectUri = rpc.redirect_uris[0];
  const rp = { client_id: rpc.id };
  const rpAuth = oauth.ClientSecretBasic(rpc.secret);
  const browser = createBrowser();
  const s = {};

  /** One authorization through the hosted pages; returns what the callback needs. */
  async function authorize({ scope = "openid profile email roles", nonce = oauth.generateRandomNonce(), state = oauth.generateRandomState(), extra = {} } = {}) {
    const as = need(s.as, "discovery");
    const verifier = oauth.generateRandomCodeVerifier();
    const url = new URL(as.authorization_endpoint);
    url.searchParams.set("client_id", rp.client_id);
    url.searchParams.set("redirect_uri", redirectUri);
    url.searchParams.set("response_type", "code");
    url.searchParams.set("scope", scope);
    url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(verifier));
    url.searchParams.set("code_challenge_method", "S256");
    if (nonce) url.searchParams.set("nonce", nonce);
    if (state) url.searchParams.set("state", state);
    for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, v);
    const callback = await browser.authorize(url, { redirectUri, username: alice.username, password: alice.password });
    return { callback, verifier, nonce, state };
  }

  async function redeem({ callback, verifier, nonce, state }) {
    const as = need(s.as, "discovery");
    const params = oauth.validateAuthResponse(as, rp, callback, state ?? oauth.expectNoState);
    const response = await oauth.authorizationCodeGrantRequest(as, rp, rpAuth, params, redirectUri, verifier, http);
    const result = await oauth.processAuthorizationCodeResponse(as, rp, response, {
      expectedNonce: nonce ?? oauth.expectNoNonce,
      requireIdToken: true,
    });
    return { result, response };
  }

  await check("discovery (OIDC and RFC 8414 algorithms)", async () => {
    const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: "oidc", ...http }));
    assert.equal(as.issuer, oxidp.issuer);
    assert.equal(as.authorization_response_iss_parameter_supported, true);
    assert.equal(as.token_endpoint, `${oxidp.issuer}/token`);
    assert.equal(as.end_session_endpoint, `${oxidp.issuer}/logout`);
    assert.ok(as.code_challenge_methods_supported.includes("S256"));
    const as2 = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: "oauth2", ...http }));
    assert.equal(rec.entries.at(-1).url, `${oxidp.issuer}/.well-known/oauth-authorization-server`);
    assert.equal(as2.issuer, as.issuer);
    assert.equal(as2.jwks_uri, as.jwks_uri);
    // A wrong expected issuer is refused by the library (the check is real).
    await assert.rejects(
      oauth.processDiscoveryResponse(new URL("http://localhost:1"), await oauth.discoveryRequest(issuer, http)),
      (err) => err.code === oauth.JSON_ATTRIBUTE_COMPARISON,
    );
    s.as = as;
  });

  await check("code flow: validateAuthResponse (iss) + PKCE + nonce, requireIdToken", async () => {
    const a = await authorize();
    assert.equal(browser.lastFlow.sawLogin, true);
    assert.equal(a.callback.searchParams.get("iss"), oxidp.issuer);
    const { result, response } = await redeem(a);
    s.tokens = result;
    s.tokenResponse = response;
    s.nonce = a.nonce;
    assert.equal(result.token_type.toLowerCase(), "bearer");
    assert.ok(result.access_token && result.refresh_token && result.id_token, "access, refresh and ID token expected");
    assert.equal(typeof result.expires_in, "number");
    assert.ok(result.expires_in > 0 && result.expires_in <= 60, `expires_in ${result.expires_in}`);
    assert.equal(response.headers.get("cache-control")?.includes("no-store"), true, `Cache-Control: ${response.headers.get("cache-control")}`);
    s.tokens = result;
    s.tokenResponse = response;
    s.nonce = a.nonce;
  });

  await check("ID token claims (getValidatedIdTokenClaims)", async () => {
    const tokens = need(s.tokens, "the code flow");
    const c = oauth.getValidatedIdTokenClaims(tokens);
    s.claims = c;
    assert.ok(c, "no validated ID token claims");
    assert.equal(c.iss, oxidp.issuer);
    assert.equal(c.aud, rp.client_id);
    assert.equal(c.azp, rp.client_id);
    assert.equal(c.nonce, s.nonce);
    assert.equal(typeof c.sub, "string");
    assert.notEqual(c.sub, alice.username);
    assert.equal(typeof c.auth_time, "number");
    assert.ok(Math.abs(c.auth_time - nowSeconds()) < 300);
    assert.equal(typeof c.sid, "string");
    assert.equal(c.at_hash, atHash(tokens.access_token));
    assert.equal(c.preferred_username, alice.username);
    assert.equal(c.name, alice.name);
    assert.equal(c.email, alice.email);
    assert.deepEqual([...c.roles].sort(), [...alice.tokenRoles].sort());
  });

  await check("ID token signature against the JWKS (validateApplicationLevelSignature)", async () => {
    const as = need(s.as, "discovery");
    const response = need(s.tokenResponse, "the code flow");
    await oauth.validateApplicationLevelSignature(as, response, http);
    assert.ok(rec.entries.some((e) => e.url === as.jwks_uri && e.status === 200), "the JWKS was not fetched");
  });

  await check("ID token: a wrong nonce is refused by the library", async () => {
    const a = await authorize();
    await assert.rejects(redeem({ ...a, nonce: oauth.generateRandomNonce() }), (err) => {
      assert.equal(err.code, oauth.JWT_CLAIM_COMPARISON, `${err.code}: ${err.message}`);
      assert.match(err.message, /nonce/);
      return true;
    });
  });

  await check("UserInfo (userInfoRequest + processUserInfoResponse)", async () => {
    const as = need(s.as, "discovery");
    const tokens = need(s.tokens, "the code flow");
    const c = need(s.claims, "the ID token claims");
    const response = await oauth.userInfoRequest(as, rp, tokens.access_token, http);
    assert.equal(response.headers.get("content-type")?.split(";")[0], "application/json");
    const info = await oauth.processUserInfoResponse(as, rp, c.sub, response);
    assert.equal(info.sub, c.sub);
    assert.equal(info.email, alice.email);
    assert.equal(info.email_verified, true);
    assert.equal(info.name, alice.name);
    assert.deepEqual([...info.roles].sort(), [...alice.tokenRoles].sort());
    // Wrong expected subject: the library refuses.
    const again = await oauth.userInfoRequest(as, rp, tokens.access_token, http);
    await assert.rejects(oauth.processUserInfoResponse(as, rp, "not-the-sub", again), (err) => err.code === oauth.JSON_ATTRIBUTE_COMPARISON);
    // A bad token: 401 with a Bearer challenge (WWWAuthenticateChallengeError).
    const bad = await oauth.userInfoRequest(as, rp, `${tokens.access_token.slice(0, -4)}AAAA`, http);
    await assert.rejects(oauth.processUserInfoResponse(as, rp, c.sub, bad), (err) => {
      assert.ok(err instanceof oauth.WWWAuthenticateChallengeError, `${err.name}: ${err.message}`);
      assert.equal(err.status, 401);
      assert.equal(err.cause[0].scheme, "bearer");
      assert.equal(err.cause[0].parameters.error, "invalid_token");
      return true;
    });
  });

  await check("refresh (refreshTokenGrantRequest + processRefreshTokenResponse)", async () => {
    const as = need(s.as, "discovery");
    const tokens = need(s.tokens, "the code flow");
    const c = need(s.claims, "the ID token claims");
    const response = await oauth.refreshTokenGrantRequest(as, rp, rpAuth, tokens.refresh_token, http);
    const result = await oauth.processRefreshTokenResponse(as, rp, response);
    s.refreshed = result;
    assert.ok(result.refresh_token);
    assert.notEqual(result.refresh_token, tokens.refresh_token);
    const rc = oauth.getValidatedIdTokenClaims(result);
    assert.ok(rc, "no ID token in the refresh response");
    assert.equal(rc.sub, c.sub);
    assert.equal(rc.nonce, undefined);
    assert.equal(rc.auth_time, c.auth_time);
    assert.equal(rc.sid, c.sid);
    await oauth.validateApplicationLevelSignature(as, response, http);
    s.refreshed = result;
  });

  await check("concurrent refreshes inside the grace window get the identical new refresh token", async () => {
    const as = need(s.as, "discovery");
    const prev = need(s.refreshed, "the refresh check");
    const results = await Promise.all(
      Array.from({ length: 5 }, async () =>
        oauth.processRefreshTokenResponse(as, rp, await oauth.refreshTokenGrantRequest(as, rp, rpAuth, prev.refresh_token, http)),
      ),
    );
    const rts = new Set(results.map((r) => r.refresh_token));
    assert.equal(rts.size, 1, `the family forked into ${rts.size} refresh tokens`);
    assert.ok(!rts.has(prev.refresh_token));
    for (const r of results) assert.equal(oauth.getValidatedIdTokenClaims(r).sub, s.claims.sub);
    // The successor works.
    const next = await oauth.processRefreshTokenResponse(as, rp, await oauth.refreshTokenGrantRequest(as, rp, rpAuth, results[0].refresh_token, http));
    assert.ok(next.access_token);
    s.refreshed = next;
  });

  await check("RFC 9068 access token (validateJwtAccessToken, aud = issuer)", async () => {
    const as = need(s.as, "discovery");
    const tokens = need(s.refreshed, "the refresh check");
    const request = new Request(`${oxidp.issuer}/resource`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    const claims = await oauth.validateJwtAccessToken(as, request, oxidp.issuer, http);
    assert.equal(claims.iss, oxidp.issuer);
    assert.equal(claims.aud, oxidp.issuer);
    assert.equal(claims.sub, need(s.claims, "the ID token claims").sub);
    assert.equal(claims.client_id, rp.client_id);
    assert.deepEqual(new Set(claims.scope.split(" ")), new Set(["openid", "profile", "email", "roles"]));
    assert.equal(claims.exp - claims.iat, 60);
    // Another audience is refused; an ID token is not an access token (typ).
    const again = () => new Request(`${oxidp.issuer}/resource`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    await assert.rejects(oauth.validateJwtAccessToken(as, again(), "https://api.example.com", http), (err) => err.code === oauth.JWT_CLAIM_COMPARISON);
    const idAsAt = new Request(`${oxidp.issuer}/resource`, { headers: { authorization: `Bearer ${tokens.id_token}` } });
    await assert.rejects(oauth.validateJwtAccessToken(as, idAsAt, oxidp.issuer, http), /typ|at\+jwt|header/i);
  });

  await check("client_credentials token passes validateJwtAccessToken", async () => {
    const as = need(s.as, "discovery");
    const m2m = { client_id: m2mc.id };
    const response = await oauth.clientCredentialsGrantRequest(as, m2m, oauth.ClientSecretBasic(m2mc.secret), { scope: "api:read" }, http);
    const result = await oauth.processClientCredentialsResponse(as, m2m, response);
    assert.equal(result.scope, "api:read");
    const request = new Request(`${oxidp.issuer}/resource`, { headers: { authorization: `Bearer ${result.access_token}` } });
    const claims = await oauth.validateJwtAccessToken(as, request, oxidp.issuer, http);
    assert.equal(claims.sub, m2mc.id);
    assert.equal(claims.client_id, m2mc.id);
    assert.equal(claims.scope, "api:read");
  });

  await check("response_mode=form_post: the posted parameters validate (iss, state)", async () => {
    const as = need(s.as, "discovery");
    const a = await authorize({ extra: { response_mode: "form_post" } });
    const fp = browser.lastFlow.formPost;
    assert.ok(fp, "no auto-submitting form_post page");
    assert.equal(fp.iss, oxidp.issuer);
    assert.equal(fp.state, a.state);
    const params = oauth.validateAuthResponse(as, rp, new URLSearchParams(fp), a.state);
    const response = await oauth.authorizationCodeGrantRequest(as, rp, rpAuth, params, redirectUri, a.verifier, http);
    const result = await oauth.processAuthorizationCodeResponse(as, rp, response, { expectedNonce: a.nonce, requireIdToken: true });
    assert.equal(oauth.getValidatedIdTokenClaims(result).nonce, a.nonce);
  });

  await check("a reused authorization code: invalid_grant, and the first tokens are revoked", async () => {
    const as = need(s.as, "discovery");
    const a = await authorize();
    const first = await redeem(a);
    const params = oauth.validateAuthResponse(as, rp, a.callback, a.state);
    const again = await oauth.authorizationCodeGrantRequest(as, rp, rpAuth, params, redirectUri, a.verifier, http);
    const err = await rejectsWithOAuthError(oauth.processAuthorizationCodeResponse(as, rp, again, { expectedNonce: a.nonce, requireIdToken: true }), "invalid_grant");
    assert.equal(err.status, 400);
    // RFC 6749 §4.1.2: what the first use issued is revoked.
    const ui = await oauth.userInfoRequest(as, rp, first.result.access_token, http);
    await assert.rejects(oauth.processUserInfoResponse(as, rp, s.claims?.sub ?? oauth.skipSubjectCheck, ui), (e) => {
      assert.ok(e instanceof oauth.WWWAuthenticateChallengeError, `${e.name}: ${e.message}`);
      assert.equal(e.cause[0].parameters.error, "invalid_token");
      return true;
    });
    const rt = await oauth.refreshTokenGrantRequest(as, rp, rpAuth, first.result.refresh_token, http);
    await rejectsWithOAuthError(oauth.processRefreshTokenResponse(as, rp, rt), "invalid_grant");
  });

  await check("a wrong PKCE verifier: invalid_grant, and the code stays redeemable", async () => {
    const a = await authorize();
    await rejectsWithOAuthError(redeem({ ...a, verifier: oauth.generateRandomCodeVerifier() }), "invalid_grant");
    const ok = await redeem(a);
    assert.equal(oauth.getValidatedIdTokenClaims(ok.result).nonce, a.nonce);
  });

  await check("password grant of a first-party client (genericTokenEndpointRequest)", async () => {
    // What a first-party frontend's server does (next-auth CredentialsProvider): the
    // password grant with the end user's IP asserted in x-end-user-ip.
    const as = need(s.as, "discovery");
    const fc = oxidp.clients["nextjs-demo-frontend"];
    const fp = { client_id: fc.id };
    const fpAuth = oauth.ClientSecretBasic(fc.secret);
    const bob = oxidp.users.bob;
    const withIp = { ...http, headers: new Headers({ "x-end-user-ip": "198.51.100.23" }) };
    const response = await oauth.genericTokenEndpointRequest(as, fp, fpAuth, "password", { username: bob.username, password: bob.password, scope: "openid profile email" }, withIp);
    const result = await oauth.processGenericTokenEndpointResponse(as, fp, response);
    assert.ok(result.access_token && result.refresh_token && result.id_token, "access, refresh and ID token expected");
    const c = oauth.getValidatedIdTokenClaims(result);
    assert.equal(c.aud, fc.id);
    assert.equal(c.preferred_username, bob.username);
    assert.equal(c.email, bob.email);
    assert.deepEqual(c.amr, ["pwd"]);
    assert.ok(Math.abs(c.auth_time - nowSeconds()) <= 5, `auth_time ${c.auth_time}`);
    await oauth.validateApplicationLevelSignature(as, response, http);
    // A refresh of it passes the library's checks too.
    const r2 = await oauth.processRefreshTokenResponse(as, fp, await oauth.refreshTokenGrantRequest(as, fp, fpAuth, result.refresh_token, http));
    assert.equal(oauth.getValidatedIdTokenClaims(r2).sub, c.sub);
    // A wrong password (of a user that does not exist): 400 invalid_grant.
    const bad = await oauth.genericTokenEndpointRequest(as, fp, fpAuth, "password", { username: "nobody-e2e", password: "wrong-password-123456" }, withIp);
    const err = await rejectsWithOAuthError(oauth.processGenericTokenEndpointResponse(as, fp, bad), "invalid_grant");
    assert.equal(err.status, 400);
  });

  await check("introspection and revocation (introspectionRequest, revocationRequest)", async () => {
    const as = need(s.as, "discovery");
    const tokens = need(s.refreshed, "the refresh check");
    const intro = await oauth.processIntrospectionResponse(as, rp, await oauth.introspectionRequest(as, rp, rpAuth, tokens.access_token, http));
    assert.equal(intro.active, true);
    assert.equal(intro.client_id, rp.client_id);
    assert.equal(intro.sub, s.claims.sub);
    await oauth.processRevocationResponse(await oauth.revocationRequest(as, rp, rpAuth, tokens.refresh_token, http));
    const after = await oauth.processIntrospectionResponse(as, rp, await oauth.introspectionRequest(as, rp, rpAuth, tokens.refresh_token, http));
    assert.equal(after.active, false);
    const rt = await oauth.refreshTokenGrantRequest(as, rp, rpAuth, tokens.refresh_token, http);
    await rejectsWithOAuthError(oauth.processRefreshTokenResponse(as, rp, rt), "invalid_grant");
  });
}
