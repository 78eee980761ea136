#!/usr/bin/env python3
"""The OpenID Provider's hot paths, each beside its ceiling in the same run, on Postgres and
SQLite (run through `bench/run --oidc`, or directly after `cargo build --release`):

- the code exchange (code lookup, session creation, access and ID tokens signed) against the
  refresh rotation on the same backend: target >= 0.8. The codes come from the SSO sessions
  of BENCH_OIDC_USERS (16) users in turn, as a deployment's do; the same load with every code
  of one user is reported beside it (each exchange locks its user's row FOR SHARE, as a
  login does, so one user's parallel exchanges share that lock);
- an SSO re-authorization (authorize with the SSO cookie, the code, its exchange) against the
  same rotation, over the same users: target >= 0.5;
- a login through the hosted page (POST /authorize/login) against /login, both argon2-bound:
  target >= 0.9 of its rate (at most 10% more cost);
- rendering the login page (GET /authorize without a session), p50 at one connection: < 1 ms;
- a login flood on the hosted page (300 clients, about 1,000 attempts/s): JWKS and refresh
  p99 within 3x of idle.

Loads are wrk scripts in bench/oidc/; nothing leaves 127.0.0.1.
"""
import base64
import hashlib
import http.client
import json
import os
import re
import secrets
import sys
import tempfile
import threading
import time
import urllib.parse as up

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import BASE, PASSWORD, PORT, ROOT, SECS, Server, log, login, sh  # noqa: E402

LUA = os.path.join(ROOT, "bench", "oidc")
REDIRECT = "http://127.0.0.1/cb"
VERIFIER = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
QUERY = up.urlencode({
    "response_type": "code", "client_id": "web", "redirect_uri": REDIRECT,
    "scope": "openid profile", "state": "s", "nonce": "n",
    "code_challenge": CHALLENGE, "code_challenge_method": "S256",
})
OIDC_USERS = int(os.environ.get("BENCH_OIDC_USERS", "16"))
results = {}


def wrk(script, secs, conns, path="/", env=None, latency=False):
    args = ["wrk", "-t", str(min(conns, 2)), "-c", str(conns), "-d", f"{secs}s", "-s",
            os.path.join(LUA, script)]
    if latency:
        args.append("--latency")
    out = sh(*args, BASE + path, env={**os.environ, **(env or {})})
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    dur = float(re.search(r"requests in ([0-9.]+)(m?s)", out).group(1))
    unit = re.search(r"requests in [0-9.]+(m?s)", out).group(1)
    dur = dur / 1000 if unit == "ms" else dur
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = int(bad.group(1)) if bad else 0
    r = {"requests": reqs, "non_2xx_3xx": bad, "seconds": dur, "ok_per_sec": (reqs - bad) / dur}
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([0-9.]+)(us|ms|s)", out)
        if m:
            v = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            r[f"p{pct}_ms"] = v
    return r


def request(method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    return r, data


def login_form(user="bench1"):
    """The login page's cookie and form body for `user`, as a browser would submit it."""
    r, page = request("GET", "/authorize?" + QUERY)
    cookie = r.getheader("set-cookie").split(";")[0]
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.decode())
    unescape = lambda v: (v.replace("&#x2f;", "/").replace("&quot;", '"').replace("&#x27;", "'")
                          .replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    form = [(k, unescape(v)) for k, v in fields] + [("username", user), ("password", PASSWORD)]
    return cookie, up.urlencode(form)


def sso_cookie(user="bench1"):
    cookie, body = login_form(user)
    r, _ = request("POST", "/authorize/login", body,
                   {"content-type": "application/x-www-form-urlencoded", "cookie": cookie, "origin": BASE})
    assert r.status == 303, r.status
    sso = [h.split(";")[0] for k, h in r.getheaders() if k.lower() == "set-cookie" and "tessera_sso" in h]
    return sso[0]


def jwks_p99(secs):
    """p99 of sequential JWKS requests over `secs` seconds on one connection."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    samples, end = [], time.time() + secs
    while time.time() < end:
        t = time.perf_counter()
        c.request("GET", "/.well-known/jwks.json")
        c.getresponse().read()
        samples.append((time.perf_counter() - t) * 1000)
        time.sleep(0.004)
    samples.sort()
    return samples[int(len(samples) * 0.99) - 1]


def backend_run(name, env, config):
    log(f"== {name}: starting")
    server = Server(env, config)
    r = {}
    one = sso_cookie()
    many = " ".join(sso_cookie(f"bench{4 + i}") for i in range(OIDC_USERS))
    redirect_enc = up.quote(REDIRECT, safe="")
    lua_env = {"SSO_COOKIES": many, "AUTHORIZE_QUERY": QUERY, "VERIFIER": VERIFIER,
               "REDIRECT_URI_ENC": redirect_enc}

    def exchange(cookies):
        with tempfile.NamedTemporaryFile("w", delete=False, suffix=".codes") as f:
            codes = f.name
        # Codes for the exchange: more than it can use in SECS (each lives 60 s).
        env = {**lua_env, "SSO_COOKIES": cookies, "CODES_FILE": codes}
        wrk("codes.lua", SECS, 8, env=env)
        with open(codes) as f:
            made = sum(1 for _ in f)
        out = wrk("exchange.lua", SECS, 8, env={**env, "THREADS": "2"})
        os.unlink(codes)
        out["codes_made"] = made
        return out

    log(f"== {name}: refresh rotation, then the code exchange ({OIDC_USERS} users, then one)")
    r["refresh"] = harness.refresh_load(env, SECS)
    r["exchange"] = exchange(many)
    r["exchange_one_user"] = exchange(one)
    log(f"== {name}: SSO re-authorization")
    r["sso"] = wrk("sso.lua", SECS, 8, env=lua_env)
    r["sso"]["reauth_per_sec"] = r["sso"]["ok_per_sec"] / 2

    log(f"== {name}: /login, then the hosted login")
    login_body = json.dumps({"username": "bench2", "password": PASSWORD})
    r["login"] = wrk("form.lua", SECS, 8, env={"FORM_PATH": "/login", "FORM_BODY": login_body,
                                                "FORM_TYPE": "application/json"})
    cookie, body = login_form()
    r["hosted_login"] = wrk("form.lua", SECS, 8, env={"FORM_PATH": "/authorize/login", "FORM_BODY": body,
                                                      "FORM_COOKIE": cookie, "FORM_ORIGIN": BASE})
    log(f"== {name}: rendering the login page")
    r["page"] = wrk("codes.lua", SECS, 1, env={**lua_env, "SSO_COOKIES": "", "CODES_FILE": "/dev/null"},
                    latency=True)

    log(f"== {name}: a login flood on the hosted page")
    idle_jwks = jwks_p99(5)
    idle_refresh = harness.chain_p99(5, login("bench0")["refresh_token"])
    flood_rt = login("bench0")["refresh_token"]
    flood = {}
    cookie, body = login_form()

    def run_flood():
        flood["load"] = wrk("form.lua", SECS + 4, 300, env={
            "FORM_PATH": "/authorize/login", "FORM_BODY": body, "FORM_COOKIE": cookie,
            "FORM_ORIGIN": BASE, "DELAY_MS": "300"})

    t = threading.Thread(target=run_flood)
    t.start()
    time.sleep(2)
    busy_jwks = jwks_p99(5)
    busy_refresh = harness.chain_p99(4, flood_rt)
    t.join()
    r["flood"] = {"load": flood["load"], "jwks_p99_idle_ms": idle_jwks, "jwks_p99_flood_ms": busy_jwks,
                  "refresh_p99_idle_ms": idle_refresh["p99_ms"],
                  "refresh_p99_flood_ms": busy_refresh["p99_ms"]}
    # The same flood at /login, measured the same way: what the hosted page is compared with.
    login_body = json.dumps({"username": "bench3", "password": PASSWORD})
    login_flood_rt = login("bench0")["refresh_token"]

    def run_login_flood():
        flood["login"] = wrk("form.lua", SECS + 4, 300, env={
            "FORM_PATH": "/login", "FORM_BODY": login_body, "FORM_TYPE": "application/json",
            "DELAY_MS": "300"})

    t = threading.Thread(target=run_login_flood)
    t.start()
    time.sleep(2)
    r["flood"]["jwks_p99_login_flood_ms"] = jwks_p99(5)
    r["flood"]["refresh_p99_login_flood_ms"] = harness.chain_p99(4, login_flood_rt)["p99_ms"]
    t.join()
    server.stop()
    return r


def main():
    os.chdir(tempfile.mkdtemp(prefix="tessera-bench-oidc-"))
    base_env = harness.server_env()
    config = os.path.abspath("bench.toml")
    with open(config, "w") as f:
        f.write('[[clients]]\nid = "web"\npublic = true\nfirst_party = true\n'
                f'redirect_uris = ["{REDIRECT}"]\nscopes = ["openid", "profile", "offline_access"]\n')
    db = f"tessera_bench_oidc_{os.getpid()}"
    sh("psql", harness.PG_ADMIN, "-qc", f"CREATE DATABASE {db}")
    try:
        env = {**base_env, "DATABASE_URL": harness.PG_ADMIN.rsplit("/", 1)[0] + "/" + db}
        harness.setup_users(env, config, n=4 + OIDC_USERS)
        results["postgres"] = backend_run("postgres", env, config)
    finally:
        sh("psql", harness.PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", check=False)
    env = {**base_env, "TESSERA__DATABASE__URL": "sqlite://bench-data/tessera.db"}
    harness.setup_users(env, config, n=4 + OIDC_USERS)
    results["sqlite"] = backend_run("sqlite", env, config)
    with open(os.path.join(ROOT, "bench", "last-run-oidc.json"), "w") as f:
        json.dump(results, f, indent=2)
    table()


def table():
    rows = [("path", "figure", "ceiling (same run)", "ratio", "target")]
    for name, r in results.items():
        ref = r["refresh"]["rps"]
        ex = r["exchange"]["ok_per_sec"]
        rows.append((f"{name}: code exchange/s ({OIDC_USERS} users)", f"{ex:.0f}", f"{ref:.0f} refresh/s",
                     f"{ex / ref:.2f}", ">= 0.8"))
        if "exchange_one_user" in r:
            ex1 = r["exchange_one_user"]["ok_per_sec"]
            rows.append((f"{name}: code exchange/s (one user)", f"{ex1:.0f}", f"{ref:.0f} refresh/s",
                         f"{ex1 / ref:.2f}", "-"))
        sso = r["sso"]["reauth_per_sec"]
        rows.append((f"{name}: SSO re-authorization/s", f"{sso:.0f}", f"{ref:.0f} refresh/s", f"{sso / ref:.2f}", ">= 0.5"))
        lg, hl = r["login"]["ok_per_sec"], r["hosted_login"]["ok_per_sec"]
        rows.append((f"{name}: hosted login/s", f"{hl:.1f}", f"{lg:.1f} /login/s", f"{hl / lg:.2f}", ">= 0.9"))
        rows.append((f"{name}: login page p50", f"{r['page'].get('p50_ms', 0):.3f} ms", "-", "-", "< 1 ms"))
        fl = r["flood"]
        for what in ("jwks", "refresh"):
            idle, busy = fl[f"{what}_p99_idle_ms"], fl[f"{what}_p99_flood_ms"]
            rows.append((f"{name}: {what} p99 in a hosted-login flood", f"{busy:.2f} ms", f"{idle:.2f} ms idle",
                         f"{busy / idle:.2f}", "<= 3"))
            login = fl[f"{what}_p99_login_flood_ms"]
            rows.append((f"{name}: {what} p99 in a /login flood (same method)", f"{login:.2f} ms",
                         f"{idle:.2f} ms idle", f"{login / idle:.2f}", "-"))
    harness.markdown_table(rows)


if __name__ == "__main__":
    main()
