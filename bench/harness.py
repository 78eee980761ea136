"""Tessera's benchmark harness (run it through bench/run).

Starts Tessera on Postgres and on SQLite, loads every hot path over loopback, measures each
one's machine ceiling in the same run, and prints one table of figure / ceiling / ratio.
Every load is bounded in time; nothing leaves 127.0.0.1.
"""
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "tessera")
BENCH_BIN = os.path.join(ROOT, "target", "release", "examples", "tessera-bench")
PORT = 18080
HELLO_PORT = 18090
BASE = f"http://127.0.0.1:{PORT}"
PASSWORD = "correct horse battery staple"
SECS = int(os.environ.get("BENCH_SECONDS", "8"))
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
CLIENT = ("bench", "bench-secret-0123456789")
FLOOD_RATE = int(os.environ.get("BENCH_FLOOD_RATE", "1000"))

results = {}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(*args, env=None, input=None, check=True):
    r = subprocess.run(args, env=env, input=input, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def cpu_seconds(pid):
    """CPU time (user + system) a process has used, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds():
    """CPU time the whole machine has spent busy (all cores), in seconds."""
    with open("/proc/stat") as f:
        t = [int(x) for x in f.readline().split()[1:]]
    return (sum(t[:8]) - t[3] - t[4]) / os.sysconf("SC_CLK_TCK")


class CpuShare:
    """Where the cores went during a load: Tessera (`pid`), the load generator (children of
    this script, or with `own` this script itself) and everything else (Postgres, mostly), each
    in cores (CPU-seconds per second)."""

    def __init__(self, pid, own=False):
        self.pid = pid
        self.who = resource.RUSAGE_SELF if own else resource.RUSAGE_CHILDREN
        self.t = time.perf_counter()
        self.server = cpu_seconds(pid)
        ch = resource.getrusage(self.who)
        self.client = ch.ru_utime + ch.ru_stime
        self.busy = busy_seconds()

    def done(self):
        wall = time.perf_counter() - self.t
        ch = resource.getrusage(self.who)
        server = (cpu_seconds(self.pid) - self.server) / wall
        client = (ch.ru_utime + ch.ru_stime - self.client) / wall
        busy = (busy_seconds() - self.busy) / wall
        return {"server_cores": server, "client_cores": client, "other_cores": max(busy - server - client, 0.0)}


def oha(url, secs, conc, method="GET", body=None, headers=(), basic=None, rate=None, pid=None):
    cpu = CpuShare(pid) if pid else None
    args = ["oha", "-z", f"{secs}s", "-c", str(conc), "--no-tui", "--output-format", "json", "-m", method]
    for h in headers:
        args += ["-H", h]
    if body is not None:
        args += ["-d", body]
    if basic:
        args += ["-a", f"{basic[0]}:{basic[1]}"]
    if rate:
        args += ["-q", str(rate)]
    out = json.loads(sh(*args, url))
    codes = out.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    total = sum(codes.values()) or 1
    pct = out["latencyPercentiles"]
    return {
        "rps": out["summary"]["requestsPerSec"],
        "ok_rps": out["summary"]["requestsPerSec"] * ok / total,
        "p50_ms": (pct.get("p50") or 0) * 1000,
        "p99_ms": (pct.get("p99") or 0) * 1000,
        "codes": codes,
        **(cpu.done() if cpu else {}),
    }


def http_json(method, path, body=None, headers=None):
    req = urllib.request.Request(BASE + path, method=method, data=body, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def login(user="bench0"):
    return http_json("POST", "/login", json.dumps({"username": user, "password": PASSWORD}).encode(),
                     {"content-type": "application/json"})


class Server:
    def __init__(self, env, config):
        # A leftover process on the port would answer /readyz and be measured instead.
        try:
            urllib.request.urlopen(BASE + "/healthz", timeout=1)
            taken = True
        except urllib.error.HTTPError:
            taken = True
        except OSError:
            taken = False
        if taken:
            raise SystemExit(f"something already answers on {BASE}: stop it first")
        self.proc = subprocess.Popen([BIN, "--config", config, "serve"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.started = time.perf_counter()
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(BASE + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit("tessera did not become ready:\n" + (self.proc.stderr.read() if self.proc.poll() is not None else ""))
            time.sleep(0.005)
        self.ready_ms = (time.perf_counter() - self.started) * 1000

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def refresh_load(env, secs, conns=8, pid=None):
    """Each wrk thread keeps its own rotation chain (a real rotation per request)."""
    tokens = [login(f"bench{i % 4}")["refresh_token"] for i in range(conns)]
    cpu = CpuShare(pid) if pid else None
    with tempfile.NamedTemporaryFile("w", delete=False, suffix=".tokens") as f:
        f.write("\n".join(tokens) + "\n")
        path = f.name
    try:
        out = sh("wrk", "-t", str(conns), "-c", str(conns), "-d", f"{secs}s",
                 "-s", os.path.join(ROOT, "bench", "refresh.lua"), BASE,
                 env={**os.environ, "TOKENS_FILE": path})
    finally:
        os.unlink(path)
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    r["rps"] = (r["requests"] - r["non_2xx"]) / r["seconds"]
    r.update(cpu.done() if cpu else {})
    return r


def chain_p99(secs, refresh_token):
    """p99 of sequential real rotations by one client, about `secs` seconds' worth (enough
    samples that the p99 is not just the few worst hiccups of a shared machine)."""
    out = sh("python3", os.path.join(ROOT, "bench", "chain_refresh.py"), BASE, "--token", refresh_token,
             str(max(50, secs * 400)))
    return json.loads(out)


def backend_run(name, env, config):
    log(f"== {name}: starting")
    server = Server(env, config)
    r = {"ready_ms": server.ready_ms}
    access = login()["access_token"]

    # Each ceiling is measured right before the load it bounds: this machine's speed drifts
    # during a run, and adjacent measurements keep the ratios honest.
    log(f"== {name}: hello-world ceiling, then JWKS")
    # The ceiling is measured before and after the load, and averaged: this machine's speed
    # drifts by several percent within a minute.
    like = f"{BASE}/.well-known/jwks.json"
    before = hello_ceiling(env, like=like)
    r["jwks"] = oha(f"{BASE}/.well-known/jwks.json", SECS, 64, pid=server.proc.pid)
    after = hello_ceiling(env, like=like)
    r["hello"] = {**after, "rps": (before["rps"] + after["rps"]) / 2,
                  "rps_before": before["rps"], "rps_after": after["rps"]}
    log(f"== {name}: verify ceiling, then /userinfo")
    r["verify"] = json.loads(sh(BENCH_BIN, "verify", "--alg", "ES256", "--seconds", "4", env=env))
    r["userinfo"] = oha(f"{BASE}/userinfo", SECS, 16, headers=[f"authorization: Bearer {access}"],
                        pid=server.proc.pid)
    log(f"== {name}: /introspect")
    r["introspect"] = oha(f"{BASE}/introspect", SECS, 16, method="POST", body=f"token={access}",
                          headers=["content-type: application/x-www-form-urlencoded"], basic=CLIENT)
    log(f"== {name}: argon2 ceiling, then /login")
    r["hash"] = json.loads(sh(BENCH_BIN, "hash", "--seconds", "4", env=env))
    r["login"] = oha(f"{BASE}/login", SECS, 4, method="POST",
                     body=json.dumps({"username": "bench2", "password": PASSWORD}),
                     headers=["content-type: application/json"])
    # Sixteen clients logging in to one account at once (devices, workers of one service
    # account): more than its allowance (5) is in flight, and the attempts beyond it wait their
    # turn (invariant 11). None may be refused.
    r["login_one_account"] = oha(f"{BASE}/login", SECS, 16, method="POST",
                                 body=json.dumps({"username": "bench2", "password": PASSWORD}),
                                 headers=["content-type: application/json"])
    log(f"== {name}: /refresh")
    if name == "postgres":
        # This machine's speed drifts by tens of percent within a minute: take the rotation-SQL
        # ceiling right before and right after the load, and use their mean.
        before = pg_rotation_ceiling(env["DATABASE_URL"])
        r["refresh"] = refresh_load(env, SECS, pid=server.proc.pid)
        after = pg_rotation_ceiling(env["DATABASE_URL"])
        r["rotation_sql_tps"] = (before + after) / 2
        r["rotation_sql_tps_runs"] = [before, after]
    else:
        r["refresh"] = refresh_load(env, SECS)
    server.stop()

    # The flood runs on a fresh process, so its peak RSS is the flood's.
    log(f"== {name}: 300-login flood")
    server = Server(env, config)
    r["restart_ready_ms"] = server.ready_ms
    idle_jwks = oha(f"{BASE}/.well-known/jwks.json", 5, 4, rate=200)
    idle_refresh = chain_p99(5, login("bench1")["refresh_token"])
    flood_rt = login("bench1")["refresh_token"]
    flood_out = {}

    def flood():
        # 300 concurrent login clients sending 1,000 attempts/s in all: ten times what argon2
        # can serve on this machine. (An unthrottled closed loop would instead measure how
        # fast the load generator, sharing these cores, can collect 503s.)
        flood_out["login"] = oha(f"{BASE}/login", SECS + 4, 300, method="POST",
                                 body=json.dumps({"username": "bench3", "password": PASSWORD}),
                                 headers=["content-type: application/json"], rate=FLOOD_RATE)

    t = threading.Thread(target=flood)
    t.start()
    time.sleep(2)
    busy_jwks = oha(f"{BASE}/.well-known/jwks.json", 5, 4, rate=200)
    busy_refresh = chain_p99(4, flood_rt)
    t.join()
    r["flood"] = {
        "peak_rss_mb": server.peak_rss_mb(),
        "login": flood_out["login"],
        "jwks_p99_idle_ms": idle_jwks["p99_ms"], "jwks_p99_flood_ms": busy_jwks["p99_ms"],
        "refresh_p99_idle_ms": idle_refresh["p99_ms"], "refresh_p99_flood_ms": busy_refresh["p99_ms"],
    }
    server.stop()
    return r


def hello_ceiling(env, like=None):
    """Requests per second of a bare axum route on Tessera's serve loop, same load shape as
    JWKS. With `like`, it answers with that URL's body and headers (the request id's value
    is a fixed one of the same length): the same bytes without Tessera's middleware and
    handler."""
    args = [BENCH_BIN, "hello", "--bind", f"127.0.0.1:{HELLO_PORT}"]
    if like:
        with urllib.request.urlopen(like, timeout=10) as r:
            body, headers = r.read(), r.headers.items()
        path = os.path.abspath("hello-body")
        with open(path, "wb") as f:
            f.write(body)
        args += ["--body-file", path]
        for k, v in headers:
            if k.lower() in ("date", "content-length", "connection", "transfer-encoding"):
                continue
            if k.lower() == "x-request-id":
                v = "0" * len(v)
            args += ["--header", f"{k}: {v}"]
    hello = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    hello.stdout.readline()
    try:
        return oha(f"http://127.0.0.1:{HELLO_PORT}/", SECS, 64)
    finally:
        hello.send_signal(signal.SIGTERM)
        hello.wait(timeout=30)


def server_env():
    """The environment of the OpenID Provider's and the second factors' benches: this process's,
    with Tessera on PORT, BASE as the issuer, a fresh master key, and no per-address throttle
    (every load comes from one address). DATABASE_URL is left for the caller to set."""
    env = {**os.environ, "TESSERA__HTTP__BIND": f"127.0.0.1:{PORT}",
           "TESSERA__LOG__LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warn"),
           "TESSERA__TOKENS__ISSUER": BASE,
           "TESSERA__KEYS__MASTER_KEY": sh("openssl", "rand", "-base64", "32").strip(),
           "TESSERA__THROTTLE__IP_FREE_FAILURES": "0"}
    env.pop("DATABASE_URL", None)
    return env


def markdown_table(rows):
    """Prints `rows` (the first one the header) as a Markdown table, columns padded."""
    w = [max(len(str(x[i])) for x in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(str(c).ljust(w[j]) for j, c in enumerate(row)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (x + 2) for x in w) + "|")


def setup_users(env, config, n=4):
    for i in range(n):
        sh(BIN, "--config", config, "user", "add", f"bench{i}", "--password-stdin", env=env, input=PASSWORD + "\n")


def pg_rotation_ceiling(db_url):
    psql = ["psql", db_url, "-qAt", "-c"]
    sh(*psql, """
        INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at,
                              idle_expires_at, absolute_expires_at, client_id)
        SELECT ('00000000-0000-7000-8000-' || lpad(n::text, 12, '0'))::uuid,
               (SELECT id FROM users ORDER BY username LIMIT 1), 0, 0, 0,
               32503680000000, 32503680000000, 'tessera'
        FROM generate_series(1, 10000) n ON CONFLICT DO NOTHING""")
    out = sh("pgbench", "-n", "-M", "prepared", "-c", "8", "-j", "2", "-T", str(SECS),
             "-f", os.path.join(ROOT, "bench", "rotation.sql"), db_url)
    m = re.search(r"tps = ([0-9.]+)", out)
    return float(m.group(1)) if m else 0.0


def main():
    os.chdir(tempfile.mkdtemp(prefix="tessera-bench-"))
    base_env = {**os.environ, "TESSERA__HTTP__BIND": f"127.0.0.1:{PORT}", "TESSERA__LOG__LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warn"),
                "TESSERA__KEYS__MASTER_KEY": sh("openssl", "rand", "-base64", "32").strip(),
                # Benchmarks hammer one address; the per-address brute-force limit would trip.
                "TESSERA__THROTTLE__IP_FREE_FAILURES": "0"}
    base_env.pop("DATABASE_URL", None)
    config = os.path.abspath("bench.toml")
    with open(config, "w") as f:
        f.write(f'[[clients]]\nid = "{CLIENT[0]}"\nsecret = "{CLIENT[1]}"\n')


    # Postgres
    db = f"tessera_bench_{os.getpid()}"
    sh("psql", PG_ADMIN, "-qc", f"CREATE DATABASE {db}")
    pg_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + db
    try:
        env = {**base_env, "DATABASE_URL": pg_url}
        setup_users(env, config)
        results["postgres"] = backend_run("postgres", env, config)
    finally:
        sh("psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", check=False)

    # SQLite
    env = {**base_env, "TESSERA__DATABASE__URL": "sqlite://bench-data/tessera.db"}
    setup_users(env, config)
    results["sqlite"] = backend_run("sqlite", env, config)

    with open(os.path.join(ROOT, "bench", "last-run.json"), "w") as f:
        json.dump(results, f, indent=2)
    print_table()


def print_table():
    rows = []

    def row(path, figure, ceiling, ratio, target):
        rows.append((path, figure, ceiling, ratio, target))

    for name in ("postgres", "sqlite"):
        r = results[name]
        h, v, hello = r["hash"], r["verify"], r["hello"]
        f = r["flood"]
        login = r["login"]["ok_rps"]
        row(f"{name}: login/s (c=4)", f"{login:.1f}", f"{h['argon2_verifies_per_sec']:.1f} argon2/s",
            f"{login / h['argon2_verifies_per_sec']:.2f}", ">= 0.85")
        one = r.get("login_one_account")
        if one:
            refused = sum(n for code, n in one["codes"].items() if code != "200")
            row(f"{name}: login/s one account (c=16), p99", f"{one['ok_rps']:.1f}, {one['p99_ms']:.0f} ms",
                f"{h['argon2_verifies_per_sec']:.1f} argon2/s",
                f"{one['ok_rps'] / h['argon2_verifies_per_sec']:.2f}, {refused} refused",
                ">= 0.85, 0 refused")
        ceiling = r.get("rotation_sql_tps")
        ref = r["refresh"]["rps"]
        row(f"{name}: refresh/s (c=8)", f"{ref:.0f}", f"{ceiling:.0f} SQL tps" if ceiling else "-",
            f"{ref / ceiling:.2f}" if ceiling else "-", ">= 0.6 and >= 2000/s" if ceiling else "")
        row(f"{name}: JWKS req/s (c=64)", f"{r['jwks']['ok_rps']:.0f}", f"{hello['rps']:.0f} same bytes on bare axum/s",
            f"{r['jwks']['ok_rps'] / hello['rps']:.2f}", ">= 0.9")
        row(f"{name}: /userinfo req/s (c=16)", f"{r['userinfo']['ok_rps']:.0f}",
            f"{v['verifies_per_sec']:.0f} verify/s", f"{r['userinfo']['ok_rps'] / v['verifies_per_sec']:.2f}", ">= 0.5")
        row(f"{name}: /introspect req/s (c=16)", f"{r['introspect']['ok_rps']:.0f}", "-", "-", "")
        # What bounds the ratios above: the cores each party used during the load. Per core of
        # Tessera, /userinfo against the verify ceiling per core.
        for k in ("jwks", "userinfo", "refresh"):
            c = r[k]
            if "server_cores" in c:
                row(f"{name}: {k} cores: tessera / load gen / other", f"{c['server_cores']:.2f} / "
                    f"{c['client_cores']:.2f} / {c['other_cores']:.2f}", "-", "-", "")
        u = r["userinfo"]
        if u.get("server_cores"):
            per_core = u["ok_rps"] / u["server_cores"]
            ceiling = v["verifies_per_sec"] / v["cores"]
            row(f"{name}: /userinfo per Tessera core", f"{per_core:.0f}", f"{ceiling:.0f} verify/s/core",
                f"{per_core / ceiling:.2f}", "")
        fl = f["login"]["codes"]
        row(f"{name}: peak RSS, 300-login flood", f"{f['peak_rss_mb']:.0f} MB", "-", "-", "<= 150 MB")
        row(f"{name}: flood outcome ({FLOOD_RATE}/s offered)",
            f"{fl.get('200', 0)} ok, {fl.get('503', 0)} shed", "-", "-", "no other status")
        row(f"{name}: /refresh p99 flood/idle", f"{f['refresh_p99_flood_ms']:.2f} / {f['refresh_p99_idle_ms']:.2f} ms", "-",
            f"{f['refresh_p99_flood_ms'] / max(f['refresh_p99_idle_ms'], 1e-9):.2f}", "<= 3")
        row(f"{name}: JWKS p99 flood/idle", f"{f['jwks_p99_flood_ms']:.2f} / {f['jwks_p99_idle_ms']:.2f} ms", "-",
            f"{f['jwks_p99_flood_ms'] / max(f['jwks_p99_idle_ms'], 1e-9):.2f}", "<= 3")
        row(f"{name}: start to /readyz 200", f"{r['restart_ready_ms']:.0f} ms", "-", "-", "<= 300 ms")
    v = results["postgres"]["verify"]
    row("ES256 sign (per core)", f"{1e6 * v['cores'] / v['signs_per_sec']:.1f} us", "-", "-", "<= 20 us")

    lat = []
    for name in ("postgres", "sqlite"):
        r = results[name]
        for k in ("login", "jwks", "userinfo", "introspect", "refresh"):
            lat.append((f"{name}: {k}", f"{r[k]['p50_ms']:.2f}", f"{r[k]['p99_ms']:.2f}"))

    w = [max(len(str(x[i])) for x in rows + [("path", "figure", "ceiling", "ratio", "target")]) for i in range(5)]
    fmt = " | ".join("{:<%d}" % n for n in w)
    print("| " + fmt.format("path", "figure", "ceiling (same run)", "ratio", "target") + " |")
    print("|" + "|".join("-" * (n + 2) for n in w) + "|")
    for r in rows:
        print("| " + fmt.format(*r) + " |")
    print()
    print("| path | p50 ms | p99 ms |")
    print("|---|---|---|")
    for l in lat:
        print(f"| {l[0]} | {l[1]} | {l[2]} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--table":
        with open(os.path.join(ROOT, "bench", "last-run.json")) as f:
            results.update(json.load(f))
        print_table()
    else:
        main()
