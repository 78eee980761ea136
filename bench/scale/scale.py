"""Tessera at scale (run it through bench/scale/run).

Seeds a database directly at each size (users N, live sessions M, revocations R: R denylisted
jtis and R/10 revoked sessions inside the token horizon; N audit events), starts Tessera on it,
and measures the hot paths, the revocation feed, the admin listings (users, audit trail),
start-up, memory, one purge of M expired sessions, and the disk used. Prints each figure against the smallest size, and the query plans of the hot
statements at the largest size.

Postgres is seeded by bench/scale/seed-postgres.sql (generate_series); SQLite by batched
inserts in one transaction (sqlite3). SQLite stops at 100k by default: see the README.
Environment: SCALE_SIZES (e.g. "1000,1000,100 100000,100000,10000"), SCALE_SQLITE_MAX,
SCALE_SECONDS (each load phase, default 5), BENCH_PG_URL.
"""
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness as h  # noqa: E402

ROOT = h.ROOT
SECS = int(os.environ.get("SCALE_SECONDS", "5"))
h.SECS = SECS
SIZES = [tuple(int(x) for x in s.split(",")) for s in
         os.environ.get("SCALE_SIZES", "1000,1000,100 100000,100000,10000 1000000,1000000,100000").split()]
SQLITE_MAX = int(os.environ.get("SCALE_SQLITE_MAX", "100000"))
DAY = 86_400_000
results = {}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def metrics():
    with urllib.request.urlopen(h.BASE + "/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text, name):
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def rss_mb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def start(env, config):
    """Starts Tessera; returns (server, ms to /readyz, ms until the revocation state is trusted)."""
    t0 = time.perf_counter()
    server = h.Server(env, config)
    ready = (time.perf_counter() - t0) * 1000
    trusted = None
    while time.perf_counter() - t0 < 30:
        if metric(metrics(), "revocation_state_trusted") == 1:
            trusted = (time.perf_counter() - t0) * 1000
            break
        time.sleep(0.02)
    return server, ready, trusted


def admin_pages(path, key, n=30, walk=10):
    """Latency of the first page of an admin listing (default page size), n times, and of each
    of `walk` further pages followed by their cursor."""
    token = h.login("benchadmin")["access_token"]

    def get(url):
        req = urllib.request.Request(h.BASE + url)
        req.add_header("authorization", f"Bearer {token}")
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
        return (time.perf_counter() - t) * 1000, body
    first, size = [], 0
    for _ in range(n):
        ms, body = get(path)
        first.append(ms)
        size = len(body)
    first.sort()
    walked, cursor = [], json.loads(body).get("next_cursor")
    for _ in range(walk):
        if not cursor:
            break
        sep = "&" if "?" in path else "?"
        ms, body = get(f"{path}{sep}cursor={urllib.parse.quote(str(cursor))}")
        walked.append(ms)
        cursor = json.loads(body).get("next_cursor")
    return {"p50_ms": first[len(first) // 2], "p99_ms": first[min(len(first) - 1, int(len(first) * 0.99))],
            "bytes": size, "rows": len(json.loads(body).get(key, [])),
            "walk_max_ms": max(walked) if walked else None}


def feed_poll(n=30):
    """Latency of a first-page `GET /revocations` (the default page), n times."""
    times, size = [], 0
    for _ in range(n):
        req = urllib.request.Request(h.BASE + "/revocations")
        req.add_header("authorization", "Basic " + __import__("base64").b64encode(
            f"{h.CLIENT[0]}:{h.CLIENT[1]}".encode()).decode())
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        times.append((time.perf_counter() - t) * 1000)
        size = len(body)
        more = json.loads(body).get("has_more")
    times.sort()
    return {"p50_ms": times[len(times) // 2], "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
            "bytes": size, "has_more": more}


# ---------------------------------------------------------------- seeding

def phc_of(env, config):
    h.setup_users(env, config)  # bench0..3, for the loads; their hash is the PHC every user gets
    h.sh(h.BIN, "--config", config, "user", "add", "benchadmin", "--password-stdin", "--role", "admin",
         env=env, input=h.PASSWORD + "\n")


def seed_postgres(url, n, m, r, expired=0):
    phc = h.sh("psql", url, "-qAtc", "SELECT password_hash FROM users WHERE username = 'bench0'").strip()
    h.sh("psql", url, "-q", "-v", f"users={n}", "-v", f"sessions={m}", "-v", f"revoked={r}",
         "-v", f"expired={expired}", "-v", f"audit={0 if expired else n}", "-v", f"phc={phc}",
         "-f", os.path.join(ROOT, "bench", "scale", "seed-postgres.sql"))


def seed_sqlite(path, n, m, r, expired=0, only_expired=False):
    db = sqlite3.connect(path)
    now = int(time.time() * 1000)
    phc = db.execute("SELECT password_hash FROM users WHERE username = 'bench0'").fetchone()[0]
    uid = lambda i: uuid.UUID(int=(0x5EED << 96) | i).bytes  # noqa: E731
    sid = lambda tag, i: uuid.UUID(int=(tag << 96) | i).bytes  # noqa: E731
    with db:
        if not only_expired:
            db.executemany(
                "INSERT INTO users (id, username, password_hash, roles, claims, disabled, tokens_not_before,"
                " created_at, updated_at) VALUES (?, ?, ?, '[]', '{}', 0, 0, ?, ?)",
                ((uid(i), f"s{i:07d}", phc, now, now) for i in range(1, n + 1)))
            db.executemany(
                "INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at, idle_expires_at,"
                " absolute_expires_at, client_id) VALUES (?, ?, 0, ?, ?, ?, ?, 'tessera')",
                ((sid(0x7000, i), uid(1 + i % n), now, now, now + 14 * DAY, now + 30 * DAY)
                 for i in range(1, m + 1)))
            db.executemany(
                "INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at, idle_expires_at,"
                " absolute_expires_at, client_id, revoked_at, revoked_reason)"
                " VALUES (?, ?, 0, ?, ?, ?, ?, 'tessera', ?, 'seeded')",
                ((sid(0xA000, i), uid(1 + i % n), now, now, now + 14 * DAY, now + 30 * DAY, now - i % 300000)
                 for i in range(1, r // 10 + 1)))
            db.executemany(
                "INSERT INTO revoked_tokens (jti, user_id, session_id, expires_at, revoked_at, reason)"
                " VALUES (?, ?, NULL, ?, ?, 'seeded')",
                ((str(uuid.UUID(int=(0x7171 << 96) | i)), uid(1 + i % n), now + 600000 - i % 300000, now - i % 300000)
                 for i in range(1, r + 1)))
            # N audit events, one a second back from now (as the Postgres seed).
            db.executemany(
                "INSERT INTO audit_events (id, at, event, user_id, ip, reason)"
                " VALUES (?, ?, 'login.succeeded', ?, '127.0.0.1', NULL)",
                ((sid(0xAD17, i), now - i * 1000, uid(1 + i % n)) for i in range(1, n + 1)))
        db.executemany(
            "INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at, idle_expires_at,"
            " absolute_expires_at, client_id) VALUES (?, ?, 0, ?, ?, ?, ?, 'tessera')",
            ((sid(0x9000, i), uid(1 + i % n), now - 40 * DAY, now - 40 * DAY, now - 26 * DAY, now - 10 * DAY)
             for i in range(1, expired + 1)))
    db.close()


def seed_expired_postgres(url, n, e):
    h.sh("psql", url, "-qc", f"""
        INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at, idle_expires_at,
                              absolute_expires_at, client_id)
        SELECT ('00000000-0000-7000-9000-' || lpad(i::text, 12, '0'))::uuid,
               md5('user' || (1 + i % {n}))::uuid, 0, 0, 0, 1, 2, 'tessera'
        FROM generate_series(1, {e}) i""")
    h.sh("psql", url, "-qc", "VACUUM ANALYZE sessions")


# ---------------------------------------------------------------- one size

def run_size(backend, env, config, n, m, r, db_url=None, db_path=None):
    key = f"{backend} {n}/{m}/{r}"
    log(f"== {key}: seeding")
    t = time.perf_counter()
    if backend == "postgres":
        seed_postgres(db_url, n, m, r)
    else:
        seed_sqlite(db_path, n, m, r)
    out = {"seed_s": time.perf_counter() - t}
    log(f"== {key}: start-up")
    server, out["ready_ms"], out["trusted_ms"] = start(env, config)
    out["startup_peak_rss_mb"] = rss_mb(server.proc.pid, "VmHWM")
    access = h.login()["access_token"]
    log(f"== {key}: loads")
    out["login"] = h.oha(f"{h.BASE}/login", SECS, 4, method="POST",
                         body=json.dumps({"username": "s0000001" if n else "bench2", "password": h.PASSWORD}),
                         headers=["content-type: application/json"])
    out["refresh"] = h.refresh_load(env, SECS)
    out["userinfo"] = h.oha(f"{h.BASE}/userinfo", SECS, 16, headers=[f"authorization: Bearer {access}"])
    out["introspect"] = h.oha(f"{h.BASE}/introspect", SECS, 16, method="POST", body=f"token={access}",
                              headers=["content-type: application/x-www-form-urlencoded"], basic=h.CLIENT)
    out["feed"] = feed_poll()
    out["admin_users"] = admin_pages("/admin/users", "users")
    out["admin_audit"] = admin_pages("/admin/audit", "events")
    out["steady_rss_mb"] = rss_mb(server.proc.pid, "VmRSS")
    out["peak_rss_mb"] = rss_mb(server.proc.pid, "VmHWM")
    out["revocation_entries"] = metric(metrics(), 'revocation_state_entries{kind="jti"}')
    idle = h.chain_p99(2, h.login()["refresh_token"])
    server.stop()

    log(f"== {key}: purge of {m} expired sessions")
    if backend == "postgres":
        seed_expired_postgres(db_url, n, m)
    else:
        seed_sqlite(db_path, n, m, r, expired=m, only_expired=True)
    # The first upkeep round purges at start: rotate a chain meanwhile.
    server = h.Server(env, config)
    token = h.login()["refresh_token"]
    during = {}
    thread = threading.Thread(target=lambda: during.update(h.chain_p99(8, token)))
    thread.start()
    t = time.perf_counter()
    purge_s = None
    while time.perf_counter() - t < 600:
        text = metrics()
        rows = metric(text, 'upkeep_purged_rows_total{table="sessions"}') or 0
        if rows >= m:
            purge_s = metric(text, "upkeep_purge_seconds_sum")
            break
        time.sleep(0.05)
    thread.join()
    out["purge_s"] = purge_s
    out["refresh_p99_idle_ms"] = idle["p99_ms"]
    out["refresh_p99_purge_ms"] = during.get("p99_ms")
    server.stop()
    if backend == "postgres":
        size = int(h.sh("psql", db_url, "-qAtc", "SELECT pg_total_relation_size('sessions')").strip())
        out["sessions_mb_per_1m"] = size / 1e6 * (1e6 / max(m + r // 10, 1))
    else:
        out["db_mb_per_1m_sessions"] = os.path.getsize(db_path) / 1e6 * (1e6 / max(m + r // 10, 1))
    results[key] = out
    return out


def explain(db_url):
    now = int(time.time() * 1000)
    plans = {}
    for name, sql in [
        ("login: user by name", "SELECT * FROM users WHERE username = 's0500000'"),
        ("refresh: rotation", open(os.path.join(ROOT, "bench", "rotation.sql")).read().split("\n", 4)[4]
         .replace(":n::text", "'500000'")),
        ("denylist lookup", "SELECT 1 FROM revoked_tokens WHERE jti = md5('jti5')::uuid::text"),
        ("feed page (tokens)", f"SELECT jti, expires_at, revoked_at FROM revoked_tokens WHERE revoked_at > 0"
                               f" AND expires_at > {now} ORDER BY revoked_at, jti COLLATE \"C\" LIMIT 1001"),
        ("purge batch (ended sessions)", f"SELECT id FROM sessions WHERE absolute_expires_at < {now - DAY}"
                                         f" ORDER BY absolute_expires_at LIMIT 250"),
        ("purge batch (revoked sessions)", f"SELECT id FROM sessions WHERE revoked_at < {now - DAY}"
                                           f" ORDER BY revoked_at LIMIT 250"),
    ]:
        plans[name] = h.sh("psql", db_url, "-qAtc", "EXPLAIN " + sql).strip()
    return plans


def main():
    os.chdir(tempfile.mkdtemp(prefix="tessera-scale-"))
    base_env = {**os.environ, "TESSERA__HTTP__BIND": f"127.0.0.1:{h.PORT}", "TESSERA__LOG__LEVEL": "warn",
                "TESSERA__KEYS__MASTER_KEY": h.sh("openssl", "rand", "-base64", "32").strip(),
                "TESSERA__THROTTLE__IP_FREE_FAILURES": "0"}
    base_env.pop("DATABASE_URL", None)
    config = os.path.abspath("bench.toml")
    with open(config, "w") as f:
        f.write(f'[[clients]]\nid = "{h.CLIENT[0]}"\nsecret = "{h.CLIENT[1]}"\n')
    plans = None
    for (n, m, r) in SIZES:
        db = f"tessera_scale_{os.getpid()}_{n}"
        h.sh("psql", h.PG_ADMIN, "-qc", f"CREATE DATABASE {db}")
        url = h.PG_ADMIN.rsplit("/", 1)[0] + "/" + db
        try:
            env = {**base_env, "DATABASE_URL": url}
            phc_of(env, config)
            run_size("postgres", env, config, n, m, r, db_url=url)
            if (n, m, r) == SIZES[-1]:
                plans = explain(url)
        finally:
            h.sh("psql", h.PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", check=False)
        if n <= SQLITE_MAX:
            path = os.path.abspath(f"sqlite-{n}/tessera.db")
            env = {**base_env, "TESSERA__DATABASE__URL": f"sqlite://{path}"}
            phc_of(env, config)
            run_size("sqlite", env, config, n, m, r, db_path=path)
    with open(os.path.join(ROOT, "bench", "scale", "last-run.json"), "w") as f:
        json.dump({"results": results, "plans": plans}, f, indent=2)
    table(results, plans)


def table(results, plans):
    # Each figure against the smallest size: the largest size of each backend ÷ its smallest.
    spans = []
    for backend in ("postgres", "sqlite"):
        idx = [i for i, k in enumerate(results) if k.startswith(backend)]
        if len(idx) > 1:
            spans.append((backend, idx[0], idx[-1]))
    rows = [("figure", *results.keys(), *[f"{b} largest ÷ smallest" for b, _, _ in spans])]
    def fmt(v, d=0):
        return "-" if v is None else f"{v:.{d}f}"
    def add(name, get, d=0):
        vals = [get(v) for v in results.values()]
        ratios = [vals[hi] / vals[lo] if vals[lo] and vals[hi] is not None else None for _, lo, hi in spans]
        rows.append((name, *[fmt(x, d) for x in vals], *[fmt(r, 2) for r in ratios]))
    def ratio_row(name, get):
        for backend in ("postgres", "sqlite"):
            keys = [k for k in results if k.startswith(backend)]
            if len(keys) > 1:
                base = get(results[keys[0]])
                print(f"{backend}: {name} at {keys[-1].split(' ')[1]} / at {keys[0].split(' ')[1]}:"
                      f" {get(results[keys[-1]]) / base:.2f}" if base else "")
    add("seed s", lambda v: v["seed_s"], 1)
    add("start to /readyz ms", lambda v: v["ready_ms"])
    add("revocation state trusted ms", lambda v: v["trusted_ms"])
    add("login/s", lambda v: v["login"]["ok_rps"])
    add("login p99 ms", lambda v: v["login"]["p99_ms"], 1)
    add("refresh/s", lambda v: v["refresh"]["rps"])
    add("/userinfo req/s", lambda v: v["userinfo"]["ok_rps"])
    add("/userinfo p99 ms", lambda v: v["userinfo"]["p99_ms"], 2)
    add("/introspect req/s", lambda v: v["introspect"]["ok_rps"])
    add("/introspect p99 ms", lambda v: v["introspect"]["p99_ms"], 2)
    add("/revocations first page p99 ms", lambda v: v["feed"]["p99_ms"], 1)
    add("/revocations first page KB", lambda v: v["feed"]["bytes"] / 1000)
    add("/admin/users first page p99 ms", lambda v: v.get("admin_users", {}).get("p99_ms"), 1)
    add("/admin/users first page KB", lambda v: v.get("admin_users", {}).get("bytes", 0) / 1000 or None)
    add("/admin/users next 10 pages, slowest ms", lambda v: v.get("admin_users", {}).get("walk_max_ms"), 1)
    add("/admin/audit first page p99 ms (N events)", lambda v: v.get("admin_audit", {}).get("p99_ms"), 1)
    add("/admin/audit next 10 pages, slowest ms", lambda v: v.get("admin_audit", {}).get("walk_max_ms"), 1)
    add("peak RSS MB", lambda v: v["peak_rss_mb"])
    add("steady RSS MB", lambda v: v["steady_rss_mb"])
    add("revocation state jtis", lambda v: v["revocation_entries"])
    add("purge of M expired sessions s", lambda v: v["purge_s"], 2)
    add("refresh chain p99 idle ms", lambda v: v["refresh_p99_idle_ms"], 2)
    add("refresh chain p99 during purge ms", lambda v: v["refresh_p99_purge_ms"], 2)
    add("disk MB per 1M sessions", lambda v: v.get("sessions_mb_per_1m") or v.get("db_mb_per_1m_sessions"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("| " + " | ".join(str(c).ljust(widths[j]) for j, c in enumerate(r)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print()
    for name, get in [("login/s", lambda v: v["login"]["ok_rps"]), ("refresh/s", lambda v: v["refresh"]["rps"]),
                      ("/userinfo", lambda v: v["userinfo"]["ok_rps"]),
                      ("/introspect", lambda v: v["introspect"]["ok_rps"])]:
        ratio_row(name, get)
    if plans:
        print("\nQuery plans at the largest size (Postgres):")
        for name, plan in plans.items():
            print(f"\n-- {name}\n{plan}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--table":
        d = json.load(open(os.path.join(ROOT, "bench", "scale", "last-run.json")))
        table(d["results"], d["plans"])
    else:
        main()
