#!/usr/bin/env python3
"""Second factors against their ceilings, in the same run, on Postgres and SQLite (run after
`cargo build --release`; `bench/run` runs it last):

- a login with a TOTP code (POST /login, 403 mfa_required, POST /login/mfa) against a login
  with the password alone, both argon2-bound: target >= 0.85 of its rate;
- the same with a passkey as the second step (POST /login/mfa/passkey for the options, a
  software authenticator's assertion to POST /login/mfa; bench/soft_passkey.py);
- /refresh of a session whose login had a second factor, against the same rotation of a
  password-only session: within 5%. With BENCH_BEFORE_BIN=<an older tessera binary>, also
  against that build's /refresh (what the MFA state costs the rotation, if anything).

The CPU cost of one TOTP check is `cargo bench --bench hot_paths -- TOTP`. Each user's code
works once per 30-second step, so every MFA login is a different user; the load is 8 client
threads (http.client), the same for both logins. The loads compared run in the order
A B C C B A (A B B A for the refreshes), each for half of BENCH_SECONDS, and each figure joins
its halves: this machine's speed drifts within a run by more than the differences measured.
Nothing leaves 127.0.0.1.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import queue
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import BASE, PASSWORD, PORT, SECS, CpuShare, Server, log, sh  # noqa: E402
from soft_passkey import ORIGIN, RP_ID, SoftPasskey  # noqa: E402

THREADS = 8
USERS = int(os.environ.get("BENCH_MFA_USERS", "1000"))
results = {}


def totp(secret_b32, at):
    """RFC 6238: SHA-1, 6 digits, 30-second steps."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    o = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000)


class Client:
    def __init__(self):
        self.c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)

    def post(self, path, body, token=None):
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.c.request("POST", path, json.dumps(body), headers)
        r = self.c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)


def admin_token():
    status, t = Client().post("/login", {"username": "bench0", "password": PASSWORD})
    assert status == 200, status
    return t["access_token"]


def make_users(prefix, n, with_totp, passkeys=False):
    """n users; with a confirmed TOTP factor each when `with_totp`, or a passkey each when
    `passkeys`. Returns {name: its TOTP secret or SoftPasskey, or None}."""
    token = admin_token()
    names = queue.Queue()
    for i in range(n):
        names.put(f"{prefix}{i}")
    secrets = {}

    def work():
        c = Client()
        while True:
            try:
                name = names.get_nowait()
            except queue.Empty:
                return
            status, _ = c.post("/admin/users", {"username": name, "password": PASSWORD, "roles": []}, token)
            assert status == 201, status
            if passkeys:
                status, t = c.post("/login", {"username": name, "password": PASSWORD})
                assert status == 200, status
                start = c.post("/me/factors/passkey", {"name": "bench"}, t["access_token"])[1]
                key = SoftPasskey()
                status, _ = c.post("/me/factors/passkey/finish",
                                   {"ceremony": start["ceremony"], "credential": key.register(start["publicKey"])},
                                   t["access_token"])
                assert status == 201, status
                secrets[name] = key
                continue
            if not with_totp:
                secrets[name] = None
                continue
            status, t = c.post("/login", {"username": name, "password": PASSWORD})
            assert status == 200, status
            access = t["access_token"]
            status, e = c.post("/me/factors/totp", {"name": "bench"}, access)
            assert status == 201, status
            status, _ = c.post(f"/me/factors/{e['id']}/confirm", {"code": totp(e["secret"], time.time())}, access)
            assert status == 200, status
            secrets[name] = e["secret"]

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return secrets


def login_load(users, mfa, secs, pid):
    """Logins of distinct users by THREADS threads for `secs` seconds (or until the users run
    out): complete logins per second, and where the cores went (Tessera's `pid`, this client,
    the rest)."""
    todo = queue.Queue()
    for u in users:
        todo.put(u)
    done, failed = [0], [0]
    lock = threading.Lock()
    end = time.time() + secs
    start = time.perf_counter()
    cpu = CpuShare(pid, own=True)

    def work():
        c = Client()
        while time.time() < end:
            try:
                name = todo.get_nowait()
            except queue.Empty:
                return
            status, body = c.post("/login", {"username": name, "password": PASSWORD})
            ok = status == 200
            if mfa:
                ok = False
                if status == 403 and body.get("error") == "mfa_required" and isinstance(users[name], SoftPasskey):
                    mfa_token = body["mfa_token"]
                    status, options = c.post("/login/mfa/passkey", {"mfa_token": mfa_token})
                    if status == 200:
                        credential = users[name].assert_(options["publicKey"])
                        status, body = c.post("/login/mfa", {"mfa_token": mfa_token, "passkey": credential})
                        ok = status == 200
                elif status == 403 and body.get("error") == "mfa_required":
                    # The next step's code (the window takes one step ahead): the current one may
                    # have confirmed the factor a moment ago, and a code works once.
                    code = totp(users[name], time.time() + 30)
                    status, body = c.post("/login/mfa", {"mfa_token": body["mfa_token"], "totp_code": code})
                    ok = status == 200
            with lock:
                done[0] += ok
                failed[0] += not ok

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"logins": done[0], "failed": failed[0], "seconds": wall, "per_sec": done[0] / wall,
            **cpu.done()}


def refresh_of(name, secret=None):
    """A refresh token of `name`'s login (with the TOTP code when `secret` is given)."""
    c = Client()
    status, body = c.post("/login", {"username": name, "password": PASSWORD})
    if secret:
        assert status == 403, status
        code = totp(secret, time.time() + 30)
        status, body = c.post("/login/mfa", {"mfa_token": body["mfa_token"], "totp_code": code})
    assert status == 200, status
    return body["refresh_token"]


def refresh_rate(tokens, secs):
    with tempfile.NamedTemporaryFile("w", delete=False, suffix=".tokens") as f:
        f.write("\n".join(tokens) + "\n")
        path = f.name
    try:
        out = sh("wrk", "-t", str(len(tokens)), "-c", str(len(tokens)), "-d", f"{secs}s",
                 "-s", os.path.join(harness.ROOT, "bench", "refresh.lua"), BASE,
                 env={**os.environ, "TOKENS_FILE": path})
    finally:
        os.unlink(path)
    r = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    return (r["requests"] - r["non_2xx"]) / r["seconds"]


def combined(halves):
    """Loads of `login_load` as one: logins over their seconds, cores averaged by time."""
    secs = sum(h["seconds"] for h in halves)
    out = {"logins": sum(h["logins"] for h in halves), "failed": sum(h["failed"] for h in halves),
           "seconds": secs}
    out["per_sec"] = out["logins"] / secs
    for k in ("server_cores", "client_cores", "other_cores"):
        out[k] = sum(h[k] * h["seconds"] for h in halves) / secs
    return out


def backend_run(name, env, config, settle=None):
    log(f"== {name}: users")
    server = Server(env, config)
    r = {}
    plain = make_users("plain", USERS, False)
    mfa_users = make_users("mfa", USERS, True)
    # Sixteen users kept out of the login load: their codes are still unused for the refreshes.
    kept = {n: mfa_users.pop(n) for n in list(mfa_users)[-16:]}
    passkey_users = make_users("pk", USERS, False, passkeys=True)
    # This machine's speed drifts within a run (the database grows with every login, and
    # settles after), so the loads run in the order A B C C B A, each for half the time, and
    # each figure is its two halves together. A TOTP code works once per user and step: each
    # half has its own users.
    log(f"== {name}: /login with the password alone, a TOTP code, a passkey; then backwards")
    listed = list(mfa_users.items())
    totp_halves = [dict(listed[: len(listed) // 2]), dict(listed[len(listed) // 2:])]
    loads = {"password_login": [], "mfa_login": [], "passkey_login": []}
    for key, users, mfa in [("password_login", plain, False), ("mfa_login", totp_halves[0], True),
                            ("passkey_login", passkey_users, True), ("passkey_login", passkey_users, True),
                            ("mfa_login", totp_halves[1], True), ("password_login", plain, False)]:
        loads[key].append(login_load(users, mfa, SECS / 2, server.proc.pid))
    for key, halves in loads.items():
        r[key] = combined(halves)
    ceiling = r["password_login"]["per_sec"]
    r["mfa_login"]["ratio"] = r["mfa_login"]["per_sec"] / ceiling
    r["passkey_login"]["ratio"] = r["passkey_login"]["per_sec"] / ceiling
    if settle:
        settle()
    log(f"== {name}: /refresh of password-only sessions, MFA sessions; then backwards")
    # The same number of users on each side (the rotation reads its user's row), in the order
    # A B B A, each for half the time. Each load starts from sessions created right before
    # it: a load leaves its tokens spent (and on Postgres its pages full of dead versions).
    kept_users = list(kept.items())
    rates = {"password": [], "mfa": []}
    for key, i in [("password", 0), ("mfa", 0), ("mfa", 1), ("password", 1)]:
        if key == "password":
            tokens = [refresh_of(n) for n in list(plain)[8 * i:8 * i + 8]]
        else:
            tokens = [refresh_of(n, secret) for n, secret in kept_users[8 * i:8 * i + 8]]
        rates[key].append(refresh_rate(tokens, max(1, SECS // 2)))
    r["refresh_password_session"] = sum(rates["password"]) / 2
    r["refresh_mfa_session"] = sum(rates["mfa"]) / 2
    r["refresh_halves"] = rates
    r["refresh_ratio"] = r["refresh_mfa_session"] / r["refresh_password_session"]
    server.stop()
    return r


def refresh_before_after(env, config):
    """/refresh of an older build (BENCH_BEFORE_BIN) and of this one, each on a fresh database
    of the same backend (`env`)."""
    r = {}
    now_bin = harness.BIN
    for label, binary in (("refresh_before", os.environ["BENCH_BEFORE_BIN"]), ("refresh_after", now_bin)):
        harness.BIN = binary
        try:
            harness.setup_users(env, config)
            server = Server(env, config)
            tokens = [refresh_of(f"bench{i % 4}") for i in range(8)]
            r[label] = refresh_rate(tokens, SECS)
            server.stop()
        finally:
            harness.BIN = now_bin
        env = fresh(env)
    r["refresh_after_vs_before"] = r["refresh_after"] / r["refresh_before"]
    drop_fresh()
    return r


def drop_fresh():
    """Drops the Postgres databases `fresh` made."""
    out = sh("psql", harness.PG_ADMIN, "-qAtc",
             f"SELECT datname FROM pg_database WHERE datname LIKE 'tessera_bench_mfa_{os.getpid()}_%'")
    for db in out.split():
        sh("psql", harness.PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", check=False)


def fresh(env):
    """The same backend with an empty database."""
    if "DATABASE_URL" in env:
        db = f"tessera_bench_mfa_{os.getpid()}_{int(time.time() * 1000)}"
        sh("psql", harness.PG_ADMIN, "-qc", f"CREATE DATABASE {db}")
        return {**env, "DATABASE_URL": harness.PG_ADMIN.rsplit("/", 1)[0] + "/" + db}
    return {**env, "TESSERA__DATABASE__URL": f"sqlite://bench-data/{int(time.time() * 1000)}.db"}


def main():
    os.chdir(tempfile.mkdtemp(prefix="tessera-bench-mfa-"))
    base_env = harness.server_env()
    config = os.path.abspath("bench.toml")
    with open(config, "w") as f:
        f.write(f"# second-factor bench: defaults, and a relying party for passkeys\n"
                f"[webauthn]\nrp_id = \"{RP_ID}\"\norigins = [\"{ORIGIN}\"]\n")
    db = f"tessera_bench_mfa_{os.getpid()}"
    sh("psql", harness.PG_ADMIN, "-qc", f"CREATE DATABASE {db}")
    try:
        env = {**base_env, "DATABASE_URL": harness.PG_ADMIN.rsplit("/", 1)[0] + "/" + db}
        admin_setup(env, config)
        # The refreshes start on a settled database: the logins' dead rows vacuumed and their
        # writes checkpointed, rather than cleaned up under the first load.
        settle = lambda: sh("psql", env["DATABASE_URL"], "-qc", "VACUUM ANALYZE", "-c", "CHECKPOINT")
        results["postgres"] = backend_run("postgres", env, config, settle)
        if os.environ.get("BENCH_BEFORE_BIN"):
            log("== postgres: /refresh of the build before second factors, then of this one")
            results["postgres"].update(refresh_before_after(fresh(env), config))
    finally:
        sh("psql", harness.PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", check=False)
    env = {**base_env, "TESSERA__DATABASE__URL": "sqlite://bench-data/tessera.db"}
    admin_setup(env, config)
    results["sqlite"] = backend_run("sqlite", env, config)
    if os.environ.get("BENCH_BEFORE_BIN"):
        log("== sqlite: /refresh of the build before second factors, then of this one")
        results["sqlite"].update(refresh_before_after(fresh(env), config))
    with open(os.path.join(harness.ROOT, "bench", "last-run-mfa.json"), "w") as f:
        json.dump(results, f, indent=2)
    table()


def admin_setup(env, config):
    harness.setup_users(env, config)
    sh(harness.BIN, "--config", config, "user", "set-roles", "bench0", "--role", "admin", env=env)


def table():
    rows = [("path", "figure", "ceiling (same run)", "ratio", "target")]
    for name, r in results.items():
        pw, mfa = r["password_login"]["per_sec"], r["mfa_login"]["per_sec"]
        rows.append((f"{name}: login with a TOTP code/s", f"{mfa:.1f}", f"{pw:.1f} password logins/s",
                     f"{mfa / pw:.2f}", ">= 0.85"))
        pk = r["passkey_login"]["per_sec"]
        rows.append((f"{name}: login with a passkey second step/s", f"{pk:.1f}", f"{pw:.1f} password logins/s",
                     f"{pk / pw:.2f}", ">= 0.85"))
        a, b = r["refresh_mfa_session"], r["refresh_password_session"]
        rows.append((f"{name}: /refresh of an MFA session/s", f"{a:.0f}", f"{b:.0f} password-session refreshes/s",
                     f"{a / b:.2f}", "0.95-1.05"))
        if "refresh_before" in r:
            rows.append((f"{name}: /refresh now vs before second factors", f"{r['refresh_after']:.0f}",
                         f"{r['refresh_before']:.0f}", f"{r['refresh_after_vs_before']:.2f}", ">= 0.95"))
    harness.markdown_table(rows)


if __name__ == "__main__":
    main()
