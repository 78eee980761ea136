#!/usr/bin/env python3
"""Self-service accounts against their ceilings, in the same run, on Postgres and SQLite (run
after `cargo build --release`; `bench/run` runs it):

- signup (POST /signup, argon2-bound like a login) against POST /login with a password:
  target >= 0.85 of its rate. SMTP is down meanwhile, so every signup's verification mail
  waits in the outbox;
- /refresh and /login while those mails wait in the outbox, against the same loads once the
  outbox is empty: within 5% (waiting mail costs them nothing);
- the outbox draining to a local SMTP server (aiosmtpd's Sink) once it is up, one replica:
  target >= 200 messages/s on Postgres;
- the answer times of /password/forgot and /signup for a known and an unknown address, one
  request at a time, interleaved (anti-enumeration: the same answer after the same time).

The load is 32 client threads (http.client) for the logins and signups, wrk for /refresh.
Nothing leaves 127.0.0.1.
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PASSWORD, PORT, SECS, Server, log, sh  # noqa: E402
from mfa import refresh_of, refresh_rate  # noqa: E402

# Enough clients that the answers' 150 ms floor (Auth::ANSWER_FLOOR) does not bound the signup
# rate: 8 clients could never pass 8 / 0.15 s = 53 signups a second.
THREADS = 32
SMTP_PORT = 18025
results = {}


def post(c, path, body):
    c.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    r = c.getresponse()
    r.read()
    return r.status


def load(make_body, path, ok_status, secs):
    """THREADS threads POSTing `make_body(n)` (n distinct per request) to `path` for `secs`
    seconds: answers of `ok_status` per second."""
    done, failed, counter = [0], [0], [0]
    lock = threading.Lock()
    end = time.time() + secs
    start = time.perf_counter()

    def work():
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        while time.time() < end:
            with lock:
                n = counter[0]
                counter[0] += 1
            ok = post(c, path, make_body(n)) == ok_status
            with lock:
                done[0] += ok
                failed[0] += not ok

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"ok": done[0], "failed": failed[0], "seconds": wall, "per_sec": done[0] / wall}


def answer_times(path, known, unknown):
    """Interleaved single requests to `path` with the bodies of `known` and `unknown`: the
    median and 90th percentile answer time (ms) of each, and whether every answer was 202."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    times = {"known": [], "unknown": []}
    all_202 = True
    for k, u in zip(known, unknown):
        for label, body in (("known", k), ("unknown", u)):
            t = time.perf_counter()
            all_202 &= post(c, path, body) == 202
            times[label].append((time.perf_counter() - t) * 1000)
    out = {"all_202": all_202}
    for label, ts in times.items():
        ts.sort()
        out[label] = {"median_ms": ts[len(ts) // 2], "p90_ms": ts[int(len(ts) * 0.9)]}
    return out


def login_rate(secs):
    return load(lambda n: {"username": f"bench{n % 4}", "password": PASSWORD}, "/login", 200, secs)


def signup_rate(prefix, secs):
    return load(lambda n: {"email": f"{prefix}{n}@example.com", "password": PASSWORD}, "/signup", 202, secs)


class Outbox:
    """The outbox's rows, read from the database (psql or sqlite3's module)."""

    def __init__(self, env):
        self.pg = env.get("DATABASE_URL")
        self.sqlite = None if self.pg else env["TESSERA__DATABASE__URL"].removeprefix("sqlite://").split("?")[0]

    def query(self, sql):
        if self.pg:
            return sh("psql", self.pg, "-qAtc", sql).strip()
        import sqlite3
        con = sqlite3.connect(self.sqlite, timeout=30)
        try:
            rows = con.execute(sql).fetchall()
            con.commit()
            return "\n".join("|".join(str(v) for v in r) for r in rows)
        finally:
            con.close()

    def pending(self):
        return int(self.query("SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL AND dead_at IS NULL"))

    def sent(self):
        return int(self.query("SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NOT NULL"))

    def due_now(self):
        """Makes every waiting message due at once (the bench's SMTP outage is over)."""
        self.query("UPDATE mail_outbox SET next_attempt_at = 0, claimed_until = NULL "
                   "WHERE sent_at IS NULL AND dead_at IS NULL")


def smtp_sink():
    p = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{SMTP_PORT}",
                          "-c", "aiosmtpd.handlers.Sink"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", SMTP_PORT), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.05)
    raise SystemExit("aiosmtpd did not start")


def backend_run(name, env, config):
    outbox = Outbox(env)
    r = {}
    server = Server(env, config)
    log(f"== {name}: /login with a password, then /signup (SMTP down: the mail waits)")
    login_rate(2)  # warm-up
    r["login"] = login_rate(SECS)
    r["signup"] = signup_rate("s", SECS)
    r["signup"]["ratio"] = r["signup"]["per_sec"] / r["login"]["per_sec"]
    log(f"== {name}: answer times for known and unknown addresses")
    r["forgot_times"] = answer_times(
        "/password/forgot",
        [{"email": f"s{i}@example.com"} for i in range(40)],
        [{"email": f"nobody{i}@example.com"} for i in range(40)])
    r["signup_times"] = answer_times(
        "/signup",
        [{"email": f"s{i + 100}@example.com", "password": PASSWORD} for i in range(40)],
        [{"email": f"probe{i}@example.com", "password": PASSWORD} for i in range(40)])
    # More waiting mail: every new account's password reset too (one a minute per account).
    resets = load(lambda n: {"email": f"s{n}@example.com"}, "/password/forgot", 202, 4)
    r["waiting"] = outbox.pending()
    log(f"== {name}: /refresh and /login with {r['waiting']} mails waiting")
    tokens = [refresh_of(f"bench{i % 4}") for i in range(8)]
    r["refresh_waiting"] = refresh_rate(tokens, SECS)
    r["login_waiting"] = login_rate(SECS)["per_sec"]
    server.stop()

    log(f"== {name}: the outbox drains to aiosmtpd")
    sink = smtp_sink()
    try:
        outbox.due_now()
        before = outbox.sent()
        server = Server(env, config)
        start = time.perf_counter()
        deadline = time.time() + 120
        while outbox.pending() > 0 and time.time() < deadline:
            time.sleep(0.05)
        wall = time.perf_counter() - start
        sent = outbox.sent() - before
        r["outbox"] = {"messages": sent, "seconds": wall, "per_sec": sent / wall, "left": outbox.pending(),
                       "resets_asked": resets["ok"]}
        log(f"== {name}: /refresh and /login with the outbox empty")
        tokens = [refresh_of(f"bench{i % 4}") for i in range(8)]
        r["refresh_empty"] = refresh_rate(tokens, SECS)
        r["login_empty"] = login_rate(SECS)["per_sec"]
        server.stop()
    finally:
        sink.terminate()
        sink.wait()
    r["refresh_ratio"] = r["refresh_waiting"] / r["refresh_empty"]
    r["login_ratio"] = r["login_waiting"] / r["login_empty"]
    return r


def write_config(path):
    with open(path, "w") as f:
        f.write(f"""# accounts bench
[mail]
smtp_url = "smtp://127.0.0.1:{SMTP_PORT}"
from = "bench@example.com"
# SMTP is down while the signups run: their mail waits (an hour) until the bench makes it due.
retry_base = "1h"

[accounts]
signup = "open"
# Every load comes from 127.0.0.1.
ip_requests = 0
""")


def main():
    os.chdir(tempfile.mkdtemp(prefix="tessera-bench-accounts-"))
    base_env = harness.server_env()
    config = os.path.abspath("bench.toml")
    write_config(config)
    db = f"tessera_bench_accounts_{os.getpid()}"
    sh("psql", harness.PG_ADMIN, "-qc", f"CREATE DATABASE {db}")
    try:
        env = {**base_env, "DATABASE_URL": harness.PG_ADMIN.rsplit("/", 1)[0] + "/" + db}
        harness.setup_users(env, config)
        results["postgres"] = backend_run("postgres", env, config)
    finally:
        sh("psql", harness.PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", check=False)
    os.makedirs("bench-data", exist_ok=True)
    env = {**base_env, "TESSERA__DATABASE__URL": "sqlite://bench-data/tessera.db"}
    harness.setup_users(env, config)
    results["sqlite"] = backend_run("sqlite", env, config)
    with open(os.path.join(harness.ROOT, "bench", "last-run-accounts.json"), "w") as f:
        json.dump(results, f, indent=2)
    table()


def table():
    rows = [("path", "figure", "ceiling (same run)", "ratio", "target")]
    for name, r in results.items():
        s, l = r["signup"]["per_sec"], r["login"]["per_sec"]
        rows.append((f"{name}: signups/s", f"{s:.1f}", f"{l:.1f} password logins/s", f"{s / l:.2f}", ">= 0.85"))
        o = r["outbox"]
        rows.append((f"{name}: outbox to SMTP, messages/s", f"{o['per_sec']:.0f}",
                     f"{o['messages']} messages in {o['seconds']:.2f} s", "", ">= 200 (Postgres)"))
        rows.append((f"{name}: /refresh/s with {r['waiting']} mails waiting", f"{r['refresh_waiting']:.0f}",
                     f"{r['refresh_empty']:.0f} with none", f"{r['refresh_ratio']:.2f}", "0.95-1.05"))
        rows.append((f"{name}: /login/s with {r['waiting']} mails waiting", f"{r['login_waiting']:.1f}",
                     f"{r['login_empty']:.1f} with none", f"{r['login_ratio']:.2f}", "0.95-1.05"))
        for path, key in (("/password/forgot", "forgot_times"), ("/signup", "signup_times")):
            t = r[key]
            rows.append((f"{name}: {path} answer, registered vs unknown address (median, p90 ms)",
                         f"{t['known']['median_ms']:.1f}, {t['known']['p90_ms']:.1f}",
                         f"{t['unknown']['median_ms']:.1f}, {t['unknown']['p90_ms']:.1f}",
                         f"{t['known']['median_ms'] - t['unknown']['median_ms']:+.1f} ms",
                         "same answer (all 202: " + str(t["all_202"]) + ")"))
    harness.markdown_table(rows)


if __name__ == "__main__":
    main()
