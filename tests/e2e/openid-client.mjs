// oxidp against openid-client v6 (panva), a certified OpenID Connect relying party.
// Every check asserts on values; the library's own validation (state, nonce, PKCE,
// RFC 9207 iss, ID token claims) runs unmodified. http on localhost needs the
// library's allowInsecureRequests execute option, which is a normal client setting.

import assert from "node:assert/strict";
import { createHash, createPublicKey, verify } from "node:crypto";
import * as client from "openid-client";
import { createBrowser } from "./lib/forms.mjs";
import { atHash, createRecorder, decodeJwt, need, nowSeconds, traced } from "./lib/util.mjs";

const P = "openid-client: ";

function thumbprint(jwk) {
  // RFC 7638 for RSA: members e, kty, n in lexicographic order, no whitespace.
  const json = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
  return createHash("sha256").update(json).digest("base64url");
}

/** Asserts that a promise rejects with an OAuth error body `error`, returning the error. */
async function rejectsWithOAuthError(promise, expected) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected the call to fail with ${expected}, but it succeeded`);
  const actual = err.error ?? err.cause?.error;
  if (actual !== expected) {
    const e = new assert.AssertionError({ message: `expected OAuth error ${expected}, got ${actual ?? err.code ?? err.name}: ${err.message}`, actual: actual ?? err.message, expected, operator: "strictEqual" });
    e.cause = err;
    throw e;
  }
  return err;
}

export async function run(runner, oxidp) {
  const issuer = new URL(oxidp.issuer);
  const rec = createRecorder();
  const check = (name, fn) => runner.check(P + name, traced(rec, fn));
  const opts = { execute: [client.allowInsecureRequests], [client.customFetch]: rec.fetch };

  const rp = oxidp.clients["e2e-rp"];
  const pub = oxidp.clients["e2e-public"];
  const post = oxidp.clients["e2e-rp-post"];
  const m2m = oxidp.clients["e2e-m2m"];
  const rs = oxidp.clients["e2e-rs"];
  const alice = oxidp.users.alice;
  const bob = oxidp.users.bob;
  const rpRedirect = rp.redirect_uris[0];
  const rpLoggedOut = rp.post_logout_redirect_uris[0];

  const browser = createBrowser();
  /** Shared state between checks; a check needing something missing reports "not run". */
  const s = {};

  const configFor = (c, auth, metadata = {}) =>
    client.discovery(issuer, c.id, { client_secret: c.secret, ...metadata }, auth, opts);

  await check("discovery and metadata", async () => {
    s.rpConfig = await configFor(rp, client.ClientSecretBasic(rp.secret));
    const md = s.rpConfig.serverMetadata();
    assert.equal(md.issuer, oxidp.issuer);
    assert.equal(md.authorization_endpoint, `${oxidp.issuer}/authorize`);
    assert.equal(md.token_endpoint, `${oxidp.issuer}/token`);
    assert.equal(md.userinfo_endpoint, `${oxidp.issuer}/userinfo`);
    assert.equal(md.jwks_uri, `${oxidp.issuer}/jwks.json`);
    assert.equal(md.end_session_endpoint, `${oxidp.issuer}/logout`);
    assert.equal(md.introspection_endpoint, `${oxidp.issuer}/introspect`);
    assert.equal(md.revocation_endpoint, `${oxidp.issuer}/revoke`);
    assert.equal(md.authorization_response_iss_parameter_supported, true);
    assert.deepEqual(md.response_types_supported, ["code"]);
    assert.deepEqual(md.code_challenge_methods_supported, ["S256"]);
    assert.deepEqual(md.id_token_signing_alg_values_supported, ["RS256"]);
    assert.deepEqual(md.subject_types_supported, ["public"]);
    for (const g of ["authorization_code", "refresh_token", "client_credentials", "password"]) {
      assert.ok(md.grant_types_supported.includes(g), `grant_types_supported lacks ${g}`);
    }
    for (const sc of ["openid", "offline_access", "profile", "email", "roles"]) {
      assert.ok(md.scopes_supported.includes(sc), `scopes_supported lacks ${sc}`);
    }
    for (const m of ["client_secret_basic", "client_secret_post", "none"]) {
      assert.ok(md.token_endpoint_auth_methods_supported.includes(m), `token_endpoint_auth_methods_supported lacks ${m}`);
    }
    assert.equal(md.backchannel_logout_supported, true);
    assert.equal(md.frontchannel_logout_supported, false);
    // RFC 8414 path serves the same issuer.
    const res = await rec.fetch(`${oxidp.issuer}/.well-known/oauth-authorization-server`);
    assert.equal(res.status, 200);
    const rfc8414 = await res.json();
    assert.equal(rfc8414.issuer, oxidp.issuer);
    assert.equal(rfc8414.token_endpoint, md.token_endpoint);
  });

  await check("JWKS: RS256 keys, kid = RFC 7638 thumbprint", async () => {
    const md = need(s.rpConfig, "discovery").serverMetadata();
    const res = await rec.fetch(md.jwks_uri);
    assert.equal(res.status, 200);
    const jwks = await res.json();
    assert.ok(Array.isArray(jwks.keys) && jwks.keys.length >= 1, "no keys in the JWKS");
    for (const k of jwks.keys) {
      assert.equal(k.kty, "RSA");
      assert.equal(k.kid, thumbprint(k), `kid ${k.kid} is not the RFC 7638 thumbprint`);
      assert.equal(k.d, undefined, "private key material in the JWKS");
      if (k.alg !== undefined) assert.equal(k.alg, "RS256");
      if (k.use !== undefined) assert.equal(k.use, "sig");
    }
    s.jwks = jwks;
  });

  await check("code flow: PKCE + state + nonce, client_secret_basic, RFC 9207 iss", async () => {
    const config = need(s.rpConfig, "discovery");
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: rpRedirect,
      scope: "openid profile email roles",
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      state,
      nonce,
    });
    assert.equal(url.origin + url.pathname, `${oxidp.issuer}/authorize`);
    const callback = await browser.authorize(url, { redirectUri: rpRedirect, username: alice.username, password: alice.password });
    assert.equal(browser.lastFlow.sawLogin, true, "the login page was not shown");
    assert.equal(browser.lastFlow.sawConsent, true, "the consent page was not shown for a third-party client");
    assert.equal(callback.origin + callback.pathname, rpRedirect);
    assert.equal(callback.searchParams.get("iss"), oxidp.issuer, "callback lacks iss (RFC 9207)");
    assert.equal(callback.searchParams.get("state"), state);
    assert.ok(callback.searchParams.get("code"), "callback lacks code");
    const tokens = await client.authorizationCodeGrant(config, callback, {
      pkceCodeVerifier: verifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    s.tokens = tokens;
    s.nonce = nonce;
    s.claims = tokens.claims();
    assert.equal(tokens.token_type.toLowerCase(), "bearer");
    assert.ok(tokens.access_token, "no access_token");
    assert.ok(tokens.refresh_token, "no refresh_token for a client with the refresh_token grant");
    assert.ok(tokens.id_token, "no id_token");
    assert.ok(tokens.expires_in > 0 && tokens.expires_in <= 60, `expires_in ${tokens.expires_in} (access_token_seconds = 60)`);
    assert.deepEqual(new Set(tokens.scope.split(" ")), new Set(["openid", "profile", "email", "roles"]));
  });

  await check("ID token claims (sub aud azp auth_time sid at_hash nonce, profile, email, roles)", async () => {
    const tokens = need(s.tokens, "the code flow");
    const c = s.claims;
    const { header } = decodeJwt(tokens.id_token);
    assert.equal(header.alg, "RS256");
    assert.ok(header.kid, "no kid in the ID token header");
    if (s.jwks) assert.ok(s.jwks.keys.some((k) => k.kid === header.kid), `kid ${header.kid} not in the JWKS`);
    assert.equal(c.iss, oxidp.issuer);
    assert.equal(typeof c.sub, "string");
    assert.ok(c.sub.length >= 8, "sub too short");
    assert.notEqual(c.sub, alice.username, "sub is the username");
    assert.notEqual(c.sub, alice.email, "sub is the e-mail address");
    assert.ok(c.aud === rp.id || (Array.isArray(c.aud) && c.aud.length === 1 && c.aud[0] === rp.id), `aud ${JSON.stringify(c.aud)}`);
    assert.equal(c.azp, rp.id);
    assert.equal(c.nonce, s.nonce);
    const now = nowSeconds();
    assert.equal(typeof c.auth_time, "number");
    assert.ok(c.auth_time <= now + 5 && c.auth_time > now - 300, `auth_time ${c.auth_time} vs now ${now}`);
    assert.ok(c.iat <= now + 5 && c.exp > now, `iat ${c.iat} exp ${c.exp} now ${now}`);
    assert.equal(typeof c.sid, "string");
    assert.ok(c.sid.length > 0, "empty sid");
    assert.equal(c.at_hash, atHash(tokens.access_token), "at_hash does not match the access token");
    assert.equal(c.name, alice.name);
    assert.equal(c.given_name, alice.given_name);
    assert.equal(c.family_name, alice.family_name);
    assert.equal(c.preferred_username, alice.username);
    assert.equal(c.email, alice.email);
    assert.equal(c.email_verified, true);
    assert.deepEqual([...c.roles].sort(), [...alice.tokenRoles].sort());
    for (const [k, v] of Object.entries(c)) assert.notEqual(v, null, `claim ${k} is null`);
  });

  await check("access token from the code flow: RFC 9068 JWT", async () => {
    const tokens = need(s.tokens, "the code flow");
    const { header, payload } = decodeJwt(tokens.access_token);
    assert.equal(header.typ, "at+jwt");
    assert.equal(header.alg, "RS256");
    assert.equal(payload.iss, oxidp.issuer);
    assert.equal(payload.sub, s.claims.sub);
    assert.equal(payload.client_id, rp.id);
    assert.equal(payload.aud, oxidp.issuer, "docs/tokens.md: aud is the issuer");
    assert.deepEqual(new Set(payload.scope.split(" ")), new Set(["openid", "profile", "email", "roles"]));
    assert.equal(payload.exp - payload.iat, 60);
    assert.equal(typeof payload.jti, "string");
    assert.equal(payload.sid, s.claims.sid);
  });

  await check("callback with a tampered iss is rejected by the library", async () => {
    const config = need(s.rpConfig, "discovery");
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: rpRedirect,
      scope: "openid profile email roles",
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      state,
    });
    const callback = await browser.authorize(url, { redirectUri: rpRedirect, expectLogin: false });
    assert.equal(browser.lastFlow.sawConsent, false, "consent was asked again for the same scopes");
    assert.equal(callback.searchParams.get("iss"), oxidp.issuer);
    const tampered = new URL(callback);
    tampered.searchParams.set("iss", "http://attacker.example");
    await assert.rejects(
      client.authorizationCodeGrant(config, tampered, { pkceCodeVerifier: verifier, expectedState: state }),
      (err) => {
        // openid-client wraps oauth4webapi's error: "invalid response encountered", cause: unexpected "iss".
        assert.match(`${err.cause?.message}`, /unexpected "iss"/);
        return true;
      },
    );
    const missing = new URL(callback);
    missing.searchParams.delete("iss");
    await assert.rejects(client.authorizationCodeGrant(config, missing, { pkceCodeVerifier: verifier, expectedState: state }), (err) => {
      assert.match(`${err.cause?.message}`, /"iss" \(issuer\) missing/);
      return true;
    });
    // The untouched callback still works: the rejected ones never reached /token.
    const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, idTokenExpected: true });
    const c = tokens.claims();
    assert.equal(c.sub, need(s.claims, "the code flow").sub);
    assert.equal(c.nonce, undefined, "nonce in an ID token whose request had none");
    assert.equal(c.sid, s.claims.sid, "single sign-on should keep the session's sid");
  });

  await check("ID token signature verifies against the JWKS (enableNonRepudiationChecks)", async () => {
    const config = await configFor(rp, client.ClientSecretBasic(rp.secret));
    client.enableNonRepudiationChecks(config);
    const verifier = client.randomPKCECodeVerifier();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: rpRedirect,
      scope: "openid profile email roles",
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      nonce,
    });
    const callback = await browser.authorize(url, { redirectUri: rpRedirect, expectLogin: false });
    const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedNonce: nonce }); // no state sent: the library expects none back
    assert.equal(tokens.claims().nonce, nonce);
    // The same with node:crypto against the published key, and a tampered signature fails.
    const jwks = need(s.jwks, "the JWKS check");
    const [h, p, sig] = tokens.id_token.split(".");
    const { header } = decodeJwt(tokens.id_token);
    const jwk = jwks.keys.find((k) => k.kid === header.kid);
    assert.ok(jwk, `kid ${header.kid} not in the JWKS`);
    const key = createPublicKey({ key: jwk, format: "jwk" });
    const signed = Buffer.from(`${h}.${p}`);
    assert.equal(verify("RSA-SHA256", signed, key, Buffer.from(sig, "base64url")), true, "RS256 signature does not verify");
    const bad = Buffer.from(sig, "base64url");
    bad[10] ^= 0xff;
    assert.equal(verify("RSA-SHA256", signed, key, bad), false);
  });

  await check("UserInfo (fetchUserInfo with expected subject)", async () => {
    const config = need(s.rpConfig, "discovery");
    const tokens = need(s.tokens, "the code flow");
    const info = await client.fetchUserInfo(config, tokens.access_token, s.claims.sub);
    assert.equal(info.sub, s.claims.sub);
    assert.equal(info.name, alice.name);
    assert.equal(info.given_name, alice.given_name);
    assert.equal(info.family_name, alice.family_name);
    assert.equal(info.preferred_username, alice.username);
    assert.equal(info.email, alice.email);
    assert.equal(info.email_verified, true);
    assert.deepEqual([...info.roles].sort(), [...alice.tokenRoles].sort());
    // The library refuses a UserInfo answer for another subject.
    await assert.rejects(client.fetchUserInfo(config, tokens.access_token, "someone-else"), (err) => {
      assert.equal(err.cause?.code, "OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED", `${err.code}: ${err.message}`);
      assert.equal(err.cause?.cause?.attribute, "sub");
      return true;
    });
  });

  await check("refresh: rotation, same sub, no nonce in the refreshed ID token", async () => {
    const config = need(s.rpConfig, "discovery");
    const tokens = need(s.tokens, "the code flow");
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    s.refreshed = refreshed;
    assert.ok(refreshed.refresh_token, "no new refresh token");
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, "the refresh token did not rotate");
    assert.ok(refreshed.access_token);
    assert.notEqual(refreshed.access_token, tokens.access_token, "the same access token came back");
    assert.ok(refreshed.id_token, "no ID token from a refresh of an openid grant");
    const c = refreshed.claims();
    assert.equal(c.sub, s.claims.sub);
    assert.equal(c.iss, oxidp.issuer);
    assert.equal(c.nonce, undefined, "a refreshed ID token carries a nonce");
    assert.equal(c.auth_time, s.claims.auth_time);
    assert.equal(c.sid, s.claims.sid);
    assert.equal(c.azp, rp.id);
    assert.equal(c.at_hash, atHash(refreshed.access_token));
    assert.deepEqual(new Set(refreshed.scope.split(" ")), new Set(["openid", "profile", "email", "roles"]));
  });

  await check("refresh: scope narrowing for the access token only", async () => {
    const config = need(s.rpConfig, "discovery");
    const prev = need(s.refreshed, "the refresh check");
    const narrowed = await client.refreshTokenGrant(config, prev.refresh_token, { scope: "openid email" });
    assert.deepEqual(new Set(narrowed.scope.split(" ")), new Set(["openid", "email"]));
    assert.equal(decodeJwt(narrowed.access_token).payload.scope.split(" ").sort().join(" "), "email openid");
    const err = await rejectsWithOAuthError(client.refreshTokenGrant(config, narrowed.refresh_token, { scope: "openid offline_access" }), "invalid_scope");
    assert.ok(err instanceof client.ResponseBodyError, `${err.name}`);
    const full = await client.refreshTokenGrant(config, narrowed.refresh_token);
    s.refreshed = full;
    assert.deepEqual(new Set(full.scope.split(" ")), new Set(["openid", "profile", "email", "roles"]));
    s.refreshed = full;
  });

  await check("public client: code flow with PKCE and no secret (None)", async () => {
    const config = await client.discovery(issuer, pub.id, { token_endpoint_auth_method: "none" }, client.None(), opts);
    s.pubConfig = config;
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: pub.redirect_uris[0],
      scope: "openid profile",
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      state,
      nonce,
    });
    const callback = await browser.authorize(url, { redirectUri: pub.redirect_uris[0], expectLogin: false });
    assert.equal(browser.lastFlow.sawConsent, true, "no consent page on the public client's first authorization");
    const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
    const c = tokens.claims();
    assert.equal(c.aud, pub.id);
    assert.equal(c.azp, pub.id);
    assert.equal(c.sub, need(s.claims, "the code flow").sub);
    assert.equal(c.preferred_username, alice.username);
    assert.equal(c.email, undefined, "email released without the email scope");
    assert.ok(tokens.refresh_token, "no refresh token for the public client");
    const last = rec.entries.findLast((e) => e.url.endsWith("/token"));
    assert.equal(last.auth, null, "the public client sent an Authorization header");
    assert.match(last.reqBody, new RegExp(`client_id=${pub.id}`));
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    s.pubTokens = refreshed;
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
    assert.equal(refreshed.claims().sub, c.sub);
    s.pubFirstAccessToken = tokens.access_token;
  });

  await check("public client: revokes its own access token with just client_id (RFC 7009 §5)", async () => {
    const config = need(s.pubConfig, "the public client flow");
    const token = need(s.pubFirstAccessToken, "the public client flow");
    const info = await client.fetchUserInfo(config, token, s.claims.sub);
    assert.equal(info.sub, s.claims.sub);
    await client.tokenRevocation(config, token, { token_type_hint: "access_token" });
    const last = rec.entries.findLast((e) => e.url.endsWith("/revoke"));
    assert.equal(last.status, 200);
    assert.equal(last.auth, null);
    await assert.rejects(client.fetchUserInfo(config, token, s.claims.sub), (e) => {
      assert.ok(e instanceof client.WWWAuthenticateChallengeError, `${e.name}: ${e.message}`);
      assert.equal(e.cause?.[0]?.parameters?.error, "invalid_token");
      return true;
    });
  });

  await check("public client: a code without PKCE is refused at /authorize", async () => {
    const config = need(s.pubConfig, "the public client flow");
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, { redirect_uri: pub.redirect_uris[0], scope: "openid", state });
    const callback = await browser.authorize(url, { redirectUri: pub.redirect_uris[0], expectLogin: false });
    await assert.rejects(client.authorizationCodeGrant(config, callback, { expectedState: state }), (err) => {
      assert.ok(err instanceof client.AuthorizationResponseError, `${err.name}: ${err.message}`);
      assert.equal(err.error, "invalid_request");
      return true;
    });
  });

  await check("unregistered redirect_uri: HTML error page with status 400, never a redirect", async () => {
    const config = need(s.rpConfig, "discovery");
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: `${rpRedirect}/elsewhere`,
      scope: "openid",
      code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
      code_challenge_method: "S256",
    });
    const res = await browser.request(url.href);
    const body = await res.text();
    assert.equal(res.status, 400);
    assert.equal(res.headers.get("location"), null);
    assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
    assert.doesNotMatch(body, /elsewhere\?/, "the page links to the unregistered URI");
  });

  await check("client_credentials: at+jwt access token for api:read", async () => {
    const config = await configFor(m2m, client.ClientSecretBasic(m2m.secret));
    s.m2mConfig = config;
    const tokens = await client.clientCredentialsGrant(config, { scope: "api:read" });
    s.m2mTokens = tokens;
    assert.equal(tokens.token_type.toLowerCase(), "bearer");
    assert.equal(tokens.refresh_token, undefined, "refresh token for client_credentials");
    assert.equal(tokens.id_token, undefined, "ID token for client_credentials");
    assert.equal(tokens.scope, "api:read");
    const { header, payload } = decodeJwt(tokens.access_token);
    assert.equal(header.typ, "at+jwt");
    assert.equal(header.alg, "RS256");
    if (s.jwks) assert.ok(s.jwks.keys.some((k) => k.kid === header.kid), `kid ${header.kid} not in the JWKS`);
    assert.equal(payload.iss, oxidp.issuer);
    assert.equal(payload.sub, m2m.id);
    assert.equal(payload.client_id, m2m.id);
    assert.equal(payload.aud, oxidp.issuer);
    assert.equal(payload.scope, "api:read");
    assert.equal(typeof payload.jti, "string");
    assert.equal(payload.exp - payload.iat, 60);
    s.m2mTokens = tokens;
    // Without a scope: all of the client's scopes.
    const all = await client.clientCredentialsGrant(config);
    assert.equal(decodeJwt(all.access_token).payload.scope, "api:read");
    await rejectsWithOAuthError(client.clientCredentialsGrant(config, { scope: "api:write" }), "invalid_scope");
  });

  await check("client authentication failure: invalid_client", async () => {
    // client_secret_basic: 401 with a Basic challenge (RFC 6749 §5.2). The library reports
    // the challenge (WWWAuthenticateChallengeError) ahead of the body.
    const wrong = await configFor({ ...m2m, secret: `${m2m.secret}x` }, client.ClientSecretBasic(`${m2m.secret}x`));
    await assert.rejects(client.clientCredentialsGrant(wrong, { scope: "api:read" }), (err) => {
      assert.ok(err instanceof client.WWWAuthenticateChallengeError, `${err.name}: ${err.message}`);
      assert.equal(err.status, 401);
      assert.equal(err.cause[0].scheme, "basic");
      assert.equal(err.cause[0].parameters.realm, "oxidp");
      return true;
    });
    const last = rec.entries.findLast((e) => e.url.endsWith("/token"));
    assert.equal(last.status, 401);
    assert.equal(JSON.parse(last.resBody).error, "invalid_client");
    // client_secret_post with a wrong secret: 401 invalid_client in the body, no challenge needed.
    const wrongPost = await configFor({ ...m2m, secret: `${m2m.secret}x` }, client.ClientSecretPost(`${m2m.secret}x`));
    const err = await rejectsWithOAuthError(client.clientCredentialsGrant(wrongPost, { scope: "api:read" }), "invalid_client");
    assert.equal(err.status, 401);
  });

  await check("introspection by a resource server (introspect_any)", async () => {
    const config = await configFor(rs, client.ClientSecretBasic(rs.secret));
    s.rsConfig = config;
    const tokens = need(s.refreshed, "the refresh check");
    const at = await client.tokenIntrospection(config, tokens.access_token);
    assert.equal(at.active, true);
    assert.equal(at.sub, s.claims.sub);
    assert.equal(at.client_id, rp.id);
    assert.deepEqual(new Set(at.scope.split(" ")), new Set(["openid", "profile", "email", "roles"]));
    assert.equal(at.iss, oxidp.issuer);
    assert.equal(at.username, alice.username);
    assert.equal(typeof at.exp, "number");
    assert.ok(at.exp > nowSeconds());
    const m2mToken = need(s.m2mTokens, "client_credentials").access_token;
    const mt = await client.tokenIntrospection(config, m2mToken);
    assert.equal(mt.active, true);
    assert.equal(mt.client_id, m2m.id);
    assert.equal(mt.scope, "api:read");
    const garbage = await client.tokenIntrospection(config, "not-a-token-at-all");
    assert.deepEqual({ ...garbage }, { active: false });
  });

  await check("introspection of its own refresh token by the client", async () => {
    const config = need(s.rpConfig, "discovery");
    const tokens = need(s.refreshed, "the refresh check");
    const rt = await client.tokenIntrospection(config, tokens.refresh_token, { token_type_hint: "refresh_token" });
    assert.equal(rt.active, true);
    assert.equal(rt.token_type, "refresh_token");
    // Another client (not a resource server) sees nothing of it.
    const postConfig = await configFor(post, client.ClientSecretPost(post.secret));
    const other = await client.tokenIntrospection(postConfig, tokens.refresh_token);
    assert.deepEqual({ ...other }, { active: false });
  });

  await check("revocation of the refresh token ends its family", async () => {
    const config = need(s.rpConfig, "discovery");
    const rsConfig = need(s.rsConfig, "the introspection check");
    const tokens = need(s.refreshed, "the refresh check");
    await client.tokenRevocation(config, tokens.refresh_token, { token_type_hint: "refresh_token" });
    const err = await rejectsWithOAuthError(client.refreshTokenGrant(config, tokens.refresh_token), "invalid_grant");
    assert.ok(err instanceof client.ResponseBodyError);
    assert.equal(err.status, 400);
    const rt = await client.tokenIntrospection(rsConfig, tokens.refresh_token);
    assert.equal(rt.active, false);
    const at = await client.tokenIntrospection(rsConfig, tokens.access_token);
    assert.equal(at.active, false, "the family's access token is still active after revoking its refresh token");
    await assert.rejects(client.fetchUserInfo(config, tokens.access_token, s.claims.sub), (e) => {
      assert.ok(e instanceof client.WWWAuthenticateChallengeError, `${e.name}: ${e.message}`);
      assert.equal(e.cause?.[0]?.parameters?.error, "invalid_token");
      return true;
    });
    // Unknown tokens: still 200 (RFC 7009 §2.2).
    await client.tokenRevocation(config, "no-such-token");
  });

  await check("revocation of an access token (jti)", async () => {
    const m2mConfig = need(s.m2mConfig, "client_credentials");
    const rsConfig = need(s.rsConfig, "the introspection check");
    const tokens = await client.clientCredentialsGrant(m2mConfig, { scope: "api:read" });
    assert.equal((await client.tokenIntrospection(rsConfig, tokens.access_token)).active, true);
    await client.tokenRevocation(m2mConfig, tokens.access_token, { token_type_hint: "access_token" });
    assert.equal((await client.tokenIntrospection(rsConfig, tokens.access_token)).active, false);
  });

  await check("consent denied: access_denied error response with iss", async () => {
    const config = need(s.rpConfig, "discovery");
    const b = createBrowser();
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: rpRedirect,
      scope: "openid profile",
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      state,
    });
    const callback = await b.authorize(url, { redirectUri: rpRedirect, username: bob.username, password: bob.password, decision: "deny" });
    assert.equal(b.lastFlow.sawConsent, true);
    assert.equal(callback.searchParams.get("error"), "access_denied");
    assert.equal(callback.searchParams.get("iss"), oxidp.issuer);
    assert.equal(callback.searchParams.get("state"), state);
    await assert.rejects(client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state }), (err) => {
      assert.ok(err instanceof client.AuthorizationResponseError, `${err.name}: ${err.message}`);
      assert.equal(err.error, "access_denied");
      return true;
    });
  });

  await check("client_secret_post client: code flow (library default auth from a bare secret)", async () => {
    // The most common RP set-up: discovery(issuer, id, secret) and nothing else.
    const config = await client.discovery(issuer, post.id, post.secret, undefined, opts);
    const b = createBrowser();
    const verifier = client.randomPKCECodeVerifier();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: post.redirect_uris[0],
      scope: "openid email",
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      nonce,
    });
    const callback = await b.authorize(url, { redirectUri: post.redirect_uris[0], username: bob.email, password: bob.password });
    assert.equal(b.lastFlow.sawLogin, true);
    const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedNonce: nonce }); // no state sent: the library expects none back
    const last = rec.entries.findLast((e) => e.url.endsWith("/token"));
    assert.equal(last.auth, null, "client_secret_post sent an Authorization header");
    assert.match(last.reqBody, /client_secret=/);
    assert.equal(new URLSearchParams(last.reqBody).get("client_secret"), post.secret);
    const c = tokens.claims();
    assert.equal(c.aud, post.id);
    assert.equal(c.email, bob.email);
    assert.equal(c.name, undefined, "name released without the profile scope");
    if (s.claims) assert.notEqual(c.sub, s.claims.sub, "bob and alice share a sub");
    const info = await client.fetchUserInfo(config, tokens.access_token, c.sub);
    assert.equal(info.email, bob.email);
  });

  await check("RP-initiated logout: end-session URL with id_token_hint, post_logout_redirect_uri, state", async () => {
    const config = need(s.rpConfig, "discovery");
    const tokens = need(s.tokens, "the code flow");
    const state = client.randomState();
    const url = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: rpLoggedOut, state });
    assert.equal(url.origin + url.pathname, `${oxidp.issuer}/logout`);
    const res = await browser.request(url.href);
    await res.body?.cancel();
    assert.equal(res.status, 303, `GET /logout answered ${res.status}`);
    const loc = new URL(res.headers.get("location"));
    assert.equal(loc.origin + loc.pathname, rpLoggedOut);
    assert.equal(loc.searchParams.get("state"), state);
    s.loggedOut = true;
  });

  await check("after logout: session refresh tokens are refused, login is required again", async () => {
    need(s.loggedOut, "the logout check");
    const pubConfig = need(s.pubConfig, "the public client flow");
    const pubTokens = need(s.pubTokens, "the public client flow");
    await rejectsWithOAuthError(client.refreshTokenGrant(pubConfig, pubTokens.refresh_token), "invalid_grant");
    const config = s.rpConfig;
    // prompt=none: login_required, carried back with iss.
    const state = client.randomState();
    const verifier = client.randomPKCECodeVerifier();
    const noneUrl = client.buildAuthorizationUrl(config, {
      redirect_uri: rpRedirect,
      scope: "openid",
      prompt: "none",
      state,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
    });
    const noneCb = await browser.authorize(noneUrl, { redirectUri: rpRedirect });
    await assert.rejects(client.authorizationCodeGrant(config, noneCb, { pkceCodeVerifier: verifier, expectedState: state }), (err) => {
      assert.ok(err instanceof client.AuthorizationResponseError, `${err.name}: ${err.message}`);
      assert.equal(err.error, "login_required");
      return true;
    });
    // A normal authorization shows the login page again.
    const v2 = client.randomPKCECodeVerifier();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: rpRedirect,
      scope: "openid profile email roles",
      code_challenge: await client.calculatePKCECodeChallenge(v2),
      code_challenge_method: "S256",
    });
    const cb = await browser.authorize(url, { redirectUri: rpRedirect, username: alice.username, password: alice.password, expectLogin: true });
    assert.equal(browser.lastFlow.sawConsent, false, "consent was not remembered across sessions");
    const tokens = await client.authorizationCodeGrant(config, cb, { pkceCodeVerifier: v2 }); // no state sent: the library expects none back
    const c = tokens.claims();
    assert.equal(c.sub, s.claims.sub);
    assert.notEqual(c.sid, s.claims.sid, "the new session kept the old sid");
    s.lastClaims = c;
  });

  await check("prompt=login and max_age: re-authentication, auth_time checked by the library", async () => {
    const config = need(s.rpConfig, "discovery");
    const before = need(s.lastClaims, "the check after logout");
    await new Promise((r) => setTimeout(r, 1100)); // auth_time has one-second resolution
    const verifier = client.randomPKCECodeVerifier();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: rpRedirect,
      scope: "openid profile email roles",
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      prompt: "login",
      max_age: "30",
      nonce,
    });
    const cb = await browser.authorize(url, { redirectUri: rpRedirect, username: alice.username, password: alice.password, expectLogin: true });
    const tokens = await client.authorizationCodeGrant(config, cb, { pkceCodeVerifier: verifier, expectedNonce: nonce, maxAge: 30 }); // no state sent: the library expects none back
    const c = tokens.claims();
    assert.equal(c.sub, before.sub);
    assert.ok(c.auth_time > before.auth_time, `auth_time ${c.auth_time} not after ${before.auth_time}`);
    assert.notEqual(c.sid, before.sid, "prompt=login kept the session id");
  });
}
