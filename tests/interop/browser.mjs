// Drives Debian's Chromium (no browser download) through a cookie-mode SPA served from two
// loopback origins: one in http.cors_origins, one not. Prints one JSON object of observations;
// the Rust test asserts on them and on the stored state.
//
// usage: node browser.mjs TESSERA_BASE ALLOWED_PORT OTHER_PORT USERNAME PASSWORD
import { readFileSync } from "node:fs";
import http from "node:http";
import { chromium } from "playwright-core";

const [base, allowedPort, otherPort, username, password] = process.argv.slice(2);
const page = readFileSync(new URL("./spa.html", import.meta.url));

function serve(port) {
  const server = http.createServer((_, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(page);
  });
  return new Promise((resolve) => server.listen(Number(port), "127.0.0.1", () => resolve(server)));
}

const servers = [await serve(allowedPort), await serve(otherPort)];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const out = {};
try {
  const context = await browser.newContext();
  const jar = async () =>
    (await context.cookies(base)).find((c) => c.name === "__Host-tessera_refresh") ?? null;
  const open = async (port) => {
    const p = await context.newPage();
    await p.goto(`http://127.0.0.1:${port}/?api=${encodeURIComponent(base)}`);
    return p;
  };
  const app = await open(allowedPort);
  out.login = await app.evaluate(([u, pw]) => window.app.login(u, pw), [username, password]);
  out.cookieAfterLogin = await jar();
  out.refresh = await app.evaluate(() => window.app.refresh());
  out.cookieAfterRefresh = await jar();
  out.userinfo = await app.evaluate(() => window.app.userinfo());

  const other = await open(otherPort);
  out.otherRefresh = await other.evaluate(() => window.app.refresh());
  out.otherLogout = await other.evaluate(() => window.app.logout());
  out.cookieAfterOther = await jar();

  out.refreshAgain = await app.evaluate(() => window.app.refresh());
  out.logout = await app.evaluate(() => window.app.logout());
  out.cookieAfterLogout = await jar();
  out.refreshAfterLogout = await app.evaluate(() => window.app.refresh());
} finally {
  await browser.close();
  servers.forEach((s) => s.close());
}
console.log(JSON.stringify(out));
