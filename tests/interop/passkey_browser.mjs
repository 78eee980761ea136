// Passkeys in a real browser: Debian's Chromium (playwright-core) with a CDP virtual
// authenticator (ctap2, internal, resident keys, user verification). The user signs in to the
// hosted account page with a password, adds a passkey there, then signs in to the `web`
// client's authorization request with the passkey alone; the code is exchanged and the
// tokens' amr/acr checked.
//
// usage: node passkey_browser.mjs BASE CALLBACK_PORT [USERNAME [PASSWORD]]
//   BASE must be http://localhost:PORT (a secure context for WebAuthn), with webauthn.rp_id
//   "localhost" and the `web` client of the README (redirect URI http://127.0.0.1/cb, any port).
// Exits non-zero on the first failure; prints one JSON line on success.
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import { chromium } from "playwright-core";

const [base, callbackPort, username = "alice", password = "correct horse battery staple"] =
  process.argv.slice(2);
if (!base || !callbackPort) {
  console.error("usage: node passkey_browser.mjs BASE CALLBACK_PORT [USERNAME [PASSWORD]]");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const redirectUri = `http://127.0.0.1:${callbackPort}/cb`;

class Failure extends Error {}
function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}
const b64url = (buf) => buf.toString("base64url");
const claims = (jwt) => JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString());

const server = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/plain" });
  res.end("done");
});
await new Promise((r) => server.listen(Number(callbackPort), "127.0.0.1", r));

// One authorization request of `web`, signed in with the passkey `via` the autofill (nothing
// clicked) or the "Use a passkey" button; returns the ID token's claims and `via`.
async function signInWithPasskey(page, via, extra) {
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash("sha256").update(verifier).digest());
  const state = b64url(randomBytes(16));
  const nonce = b64url(randomBytes(16));
  const url = new URL(`${base}/authorize`);
  for (const [k, v] of Object.entries({
    response_type: "code",
    client_id: "web",
    redirect_uri: redirectUri,
    scope: "openid profile",
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: "S256",
    ...extra,
  }))
    url.searchParams.set(k, v);
  // Set up after the navigation: the page is still at the last callback before it. The
  // autofill may navigate on before the login page's load event; the wait below tells.
  await page.goto(url.href).catch(() => {});
  const arrived = page.waitForURL((u) => u.href.startsWith(redirectUri), { timeout: 20000 });
  if (via === "button") {
    const button = page.getByRole("button", { name: "Use a passkey" });
    await button.click({ timeout: 10000 });
  }
  await arrived.catch((e) => {
    throw new Failure(`${via}: no sign-in with the passkey (${page.url()}): ${e}`);
  });
  const back = new URL(page.url());
  check(back.searchParams.get("state") === state, `${via}: state did not come back`);
  const code = back.searchParams.get("code");
  check(code, `${via}: no code: ${back.href}`);
  const r = await fetch(`${base}/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri,
      client_id: "web",
      code_verifier: verifier,
    }),
  });
  const tokens = await r.json();
  check(r.status === 200, `${via}: token exchange: ${r.status} ${JSON.stringify(tokens)}`);
  const id = claims(tokens.id_token);
  const access = claims(tokens.access_token);
  check(id.nonce === nonce, `${via}: nonce`);
  check(JSON.stringify(id.amr) === JSON.stringify(["hwk", "user", "mfa"]), `${via}: id token amr ${JSON.stringify(id.amr)}`);
  check(id.acr === "3" && access.acr === "3", `${via}: acr ${id.acr} / ${access.acr}`);
  return { via, ...id };
}

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
let result;
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });

  // 1. Password sign-in at the account page; no passkey yet.
  await page.goto(`${base}/account`);
  check(
    (await page.getByLabel("Username").getAttribute("autocomplete")) === "username webauthn",
    "the username field does not offer passkeys as autofill",
  );
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${base}/account`);
  check((await page.content()).includes(`Signed in as <strong>${username}</strong>`), "not signed in to the account page");

  // 2. Add a passkey: the page's script runs navigator.credentials.create.
  await page.getByRole("button", { name: "Add a passkey" }).click();
  await page.getByText("Passkey added").waitFor({ timeout: 15000 });
  const codes = await page.locator("ul.codes li").count();
  check(codes === 10, `expected 10 recovery codes, saw ${codes}`);
  check((await page.content()).includes("Passkey: Passkey"), "the new passkey is not listed");
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  check(credentials.length === 1 && credentials[0].isResidentCredential, "no discoverable credential was created");

  // 3. An app's authorization request: the password-only SSO session no longer counts, so the
  //    login page shows, and the passkey alone signs in, through the browser's autofill
  //    (conditional mediation; the virtual authenticator picks the one passkey at once).
  const first = await signInWithPasskey(page, "autofill", {});
  // 4. Again with prompt=login in a browser without autofill for passkeys: the button asks.
  await page.addInitScript(() => {
    PublicKeyCredential.isConditionalMediationAvailable = async () => false;
  });
  const second = await signInWithPasskey(page, "button", { prompt: "login" });
  const after = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  check(after.credentials[0].signCount >= 2, `the sign counter did not move: ${after.credentials[0].signCount}`);
  result = {
    ok: true,
    via: [first.via, second.via],
    amr: first.amr,
    acr: first.acr,
    sub: first.sub,
    sign_count: after.credentials[0].signCount,
  };
} catch (e) {
  console.error(e instanceof Failure ? `FAILED: ${e.message}` : e);
  process.exitCode = 1;
} finally {
  await browser.close();
  server.close();
}
if (result) console.log(JSON.stringify(result));
