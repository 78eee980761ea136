// A browser relying party against Tessera's hosted login: openid-client v6 builds the requests
// and checks the answers, Debian's Chromium (driven by playwright-core, no browser download)
// fills the login page by its accessible names, as a user would.
//
// usage: node oidc_browser.mjs BASE CALLBACK_PORT [USERNAME [PASSWORD]]
//   e.g. node oidc_browser.mjs http://127.0.0.1:18080 18081
//
// Expects the `web` client of the README (public, first party, redirect URI
// http://127.0.0.1:CALLBACK_PORT/cb, scopes openid profile offline_access). The callback is
// served by a tiny HTTP server on 127.0.0.1:CALLBACK_PORT. Flow: discovery; authorization URL
// with PKCE S256, nonce and state; login in the browser; code grant; ID token claims; userinfo;
// refresh; a second authorization in the same browser context must come back without a login
// page (SSO). Exits non-zero on the first failure; prints one JSON line on success.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import http from "node:http";
import * as client from "openid-client-6";
import { chromium } from "playwright-core";

const [base, callbackPort, username = "alice", password = "correct horse battery staple"] =
  process.argv.slice(2);
if (!base || !callbackPort) {
  console.error("usage: node oidc_browser.mjs BASE CALLBACK_PORT [USERNAME [PASSWORD]]");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const redirectUri = `http://127.0.0.1:${callbackPort}/cb`;
const scope = "openid profile offline_access";

class Failure extends Error {}
function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}
const atHash = (token) =>
  createHash("sha256").update(token, "ascii").digest().subarray(0, 16).toString("base64url");

// Chromium may still be being installed by apt: wait for it (up to 10 minutes).
async function waitForChromium() {
  for (let i = 0; i < 600 && !existsSync(executablePath); i++) {
    if (i % 30 === 0) console.error(`waiting for ${executablePath} …`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  check(existsSync(executablePath), `${executablePath} not found`);
}

// The callback: records every request to /cb and answers with a plain page.
const callbacks = [];
const loggedOut = [];
const server = http.createServer((req, res) => {
  const url = new URL(req.url, `http://127.0.0.1:${callbackPort}`);
  if (url.pathname === "/cb") callbacks.push(url.href);
  if (url.pathname === "/bye") loggedOut.push(url.href);
  const known = url.pathname === "/cb" || url.pathname === "/bye";
  res.writeHead(known ? 200 : 404, { "content-type": "text/plain" });
  res.end(known ? "done; you can close this page" : "not found");
});

async function authorizationRequest(config, extra = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
    nonce,
    ...extra,
  });
  return { url, verifier, state, nonce };
}

// Opens the URL in the page and returns the callback URL it ends at, and whether a login page
// (an HTML answer with a password field) was shown on the way.
async function runAuthorization(page, url, login) {
  const seen = [];
  const onResponse = (r) => seen.push({ url: r.url(), status: r.status() });
  page.on("response", onResponse);
  const before = callbacks.length;
  try {
    await page.goto(url.href);
    let loginShown = false;
    if (!page.url().startsWith(redirectUri)) {
      const pw = page.getByLabel("Password");
      loginShown = (await pw.count()) > 0;
      check(login || !loginShown, "SSO: the login page was shown although the browser is signed in");
      check(loginShown, `expected ${login ? "the login page" : "the callback"}, the browser is at ${page.url()}`);
      await page.getByLabel("Username").fill(username);
      await pw.fill(password);
      await page.getByRole("button", { name: "Sign in" }).click();
      try {
        await page.waitForURL((u) => u.href.startsWith(redirectUri), { timeout: 15_000 });
      } catch {
        const alert = await page.getByRole("alert").allTextContents().catch(() => []);
        throw new Failure(`login: no callback, the browser is at ${page.url()}: ${alert.join(" ")}`);
      }
    }
    check(callbacks.length === before + 1, `the callback was hit ${callbacks.length - before} times`);
    return { callbackUrl: new URL(callbacks[callbacks.length - 1]), loginShown, seen };
  } finally {
    page.off("response", onResponse);
  }
}

function checkIdClaims(claims, nonce) {
  const now = Math.floor(Date.now() / 1000);
  check(claims, "no ID token");
  check(claims.iss === base, `ID token iss ${claims.iss}`);
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  check(aud.length === 1 && aud[0] === "web", `ID token aud ${JSON.stringify(claims.aud)}`);
  check(claims.azp === "web", `ID token azp ${claims.azp}`);
  check(claims.nonce === nonce, `ID token nonce ${claims.nonce}`);
  check(claims.exp > now && claims.iat <= now + 10, "ID token exp/iat out of range");
  check(Number.isInteger(claims.auth_time) && claims.auth_time <= claims.iat + 10 &&
    claims.auth_time > now - 600, `ID token auth_time ${claims.auth_time}`);
  check(typeof claims.sid === "string" && claims.sid.length > 0, "ID token without sid");
  check(claims.preferred_username === username, `preferred_username ${claims.preferred_username}`);
}

const summary = {};
let browser;
try {
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(callbackPort), "127.0.0.1", resolve);
  });

  // Discovery. The issuer is http on the loopback, so allow insecure requests.
  const config = await client.discovery(new URL(base), "web", undefined, client.None(), {
    execute: [client.allowInsecureRequests],
  });
  const meta = config.serverMetadata();
  check(meta.issuer === base, `discovery: issuer ${meta.issuer}`);
  check(meta.authorization_response_iss_parameter_supported === true, "discovery: no RFC 9207 iss");
  check(meta.code_challenge_methods_supported?.includes("S256"), "discovery: no S256");

  await waitForChromium();
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const context = await browser.newContext();
  const page = await context.newPage();

  // First authorization: the login page, filled by accessible names.
  const first = await authorizationRequest(config);
  const one = await runAuthorization(page, first.url, true);
  check(one.loginShown, "no login page on the first authorization");
  check(one.callbackUrl.searchParams.get("iss") === base, "callback without iss");
  check(one.callbackUrl.searchParams.get("state") === first.state, "callback state differs");
  const cookies = await context.cookies(base);
  const sso = cookies.find((c) => c.name === "__Host-tessera_sso");
  check(sso && sso.httpOnly && sso.secure && sso.sameSite === "Lax" && sso.path === "/",
    `__Host-tessera_sso cookie: ${JSON.stringify(sso)}`);

  const tokens = await client.authorizationCodeGrant(config, one.callbackUrl, {
    pkceCodeVerifier: first.verifier,
    expectedNonce: first.nonce,
    expectedState: first.state,
    idTokenExpected: true,
  });
  check(tokens.token_type?.toLowerCase() === "bearer", `token_type ${tokens.token_type}`);
  check(tokens.refresh_token, "no refresh token although offline_access was granted");
  const claims = tokens.claims();
  checkIdClaims(claims, first.nonce);
  check(claims.at_hash === atHash(tokens.access_token), "ID token at_hash does not match");
  const idHeader = JSON.parse(Buffer.from(tokens.id_token.split(".")[0], "base64url"));
  check(idHeader.typ === "JWT", `ID token typ ${idHeader.typ}`);

  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  check(info.sub === claims.sub, "userinfo sub differs");
  check(info.preferred_username === username, `userinfo preferred_username ${info.preferred_username}`);

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  check(refreshed.access_token && refreshed.access_token !== tokens.access_token,
    "refresh: no new access token");
  check(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token,
    "refresh: the refresh token was not rotated");
  const info2 = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
  check(info2.sub === claims.sub, "userinfo after refresh: sub differs");

  // Second authorization in the same browser context: SSO, no login page.
  const second = await authorizationRequest(config);
  const two = await runAuthorization(page, second.url, false);
  check(!two.loginShown, "SSO: the login page was shown");
  check(!two.seen.some((r) => new URL(r.url).pathname === "/authorize/login"),
    "SSO: the browser posted the login form");
  const tokens2 = await client.authorizationCodeGrant(config, two.callbackUrl, {
    pkceCodeVerifier: second.verifier,
    expectedNonce: second.nonce,
    expectedState: second.state,
    idTokenExpected: true,
  });
  const claims2 = tokens2.claims();
  checkIdClaims(claims2, second.nonce);
  check(claims2.sub === claims.sub, "SSO: another subject");
  check(claims2.sid === claims.sid, "SSO: another sid");
  check(claims2.auth_time === claims.auth_time, "SSO: auth_time changed without a login");

  // RP-Initiated Logout: the ID token as the hint names this browser's session, so it ends
  // without a confirmation, and the browser comes back to the registered URI with the state.
  const postLogout = `http://127.0.0.1:${callbackPort}/bye`;
  const logoutState = client.randomState();
  const endSession = client.buildEndSessionUrl(config, {
    id_token_hint: tokens2.id_token,
    post_logout_redirect_uri: postLogout,
    state: logoutState,
  });
  await page.goto(endSession.href);
  try {
    await page.waitForURL((u) => u.href.startsWith(postLogout), { timeout: 15_000 });
  } catch {
    const text = (await page.locator("main").allTextContents().catch(() => [])).join(" ");
    throw new Failure(`logout: the browser is at ${page.url()}: ${text.trim()}`);
  }
  const back = new URL(loggedOut[loggedOut.length - 1] ?? "http://invalid/");
  check(back.searchParams.get("state") === logoutState, "logout: state not returned");
  const after = await context.cookies(base);
  check(!after.some((c) => c.name === "__Host-tessera_sso"), "logout: the SSO cookie is still set");
  let refused = false;
  try {
    await client.fetchUserInfo(config, tokens2.access_token, claims.sub);
  } catch {
    refused = true;
  }
  check(refused, "logout: the access token still works at /userinfo");
  // The next authorization asks for a login again.
  const third = await authorizationRequest(config);
  const three = await runAuthorization(page, third.url, true);
  check(three.loginShown, "after logout: no login page");

  Object.assign(summary, {
    ok: true,
    issuer: base,
    client: "web",
    sub: claims.sub,
    sid: claims.sid,
    scope: tokens.scope,
    id_token_alg: idHeader.alg,
    refreshed: true,
    sso: true,
    logged_out: true,
    callbacks: callbacks.length,
  });
} catch (e) {
  const detail = e instanceof Failure ? e.message
    : `${e.name}: ${e.message}${e.code ? ` (${e.code})` : ""}${e.error ? ` [${e.error}: ${e.error_description}]` : ""}`;
  console.error(`oidc_browser: FAILED: ${detail}`);
  process.exitCode = 1;
} finally {
  await browser?.close();
  server.close();
}
if (!process.exitCode) console.log(JSON.stringify(summary));
