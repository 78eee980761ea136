#!/usr/bin/env python3
"""/userinfo with the verified-token cache, on Postgres and SQLite (run after
`cargo build --release`; `bench/run` runs it):

- the verify ceiling (`tessera-bench verify`: ES256 verifications a second on every core),
  measured right before the loads it bounds;
- one token sent again and again (every request a cache hit);
- 10,000 distinct live tokens drawn with a Zipf distribution (s = 1): target >= 2x the
  verify ceiling;
- every request a miss: the same tokens walked in order against a cache of 1,000, so none
  comes back while held; per core of Tessera against the verify ceiling per core: target
  >= 0.8;
- a flood of distinct forged tokens (BENCH_FORGED_SECS, default 8 s): Tessera's peak RSS
  before and after, and the Zipf load again after it (forgeries are never held, so they push
  nothing out).

The hit rate of each load comes from /metrics (verified_token_cache_total). The tokens come
from /refresh chains (a new access token per rotation). Nothing leaves 127.0.0.1.
"""
import http.client
import json
import os
import re
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import BASE, BENCH_BIN, PASSWORD, PORT, SECS, CpuShare, Server, log, sh  # noqa: E402

TOKENS = int(os.environ.get("BENCH_USERINFO_TOKENS", "10000"))
FORGED_SECS = int(os.environ.get("BENCH_FORGED_SECS", "8"))
results = {}


def mint(n):
    """n distinct live access tokens, from 8 refresh chains."""
    out, lock = [], threading.Lock()

    def chain(i):
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)

        def post(path, body):
            c.request("POST", path, json.dumps(body), {"content-type": "application/json"})
            r = c.getresponse()
            return r.status, json.loads(r.read())

        status, t = post("/login", {"username": f"bench{i % 4}", "password": PASSWORD})
        assert status == 200, status
        while True:
            with lock:
                if len(out) >= n:
                    return
                out.append(t["access_token"])
            status, t = post("/refresh", {"refresh_token": t["refresh_token"]})
            assert status == 200, status

    threads = [threading.Thread(target=chain, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out[:n]


def cache_counts():
    with harness.urllib.request.urlopen(BASE + "/metrics", timeout=10) as r:
        text = r.read().decode()
    counts = {"hit": 0.0, "miss": 0.0}
    for m in re.finditer(r'^verified_token_cache_total\{result="(hit|miss)"\} ([0-9.e+]+)$', text, re.M):
        counts[m.group(1)] = float(m.group(2))
    return counts


def mix_load(path, mix, secs, pid):
    """wrk (2 threads, 16 connections) with bench/userinfo_mix.lua: rate, cores, hit rate."""
    before = cache_counts()
    cpu = CpuShare(pid)
    out = sh("wrk", "-t", "2", "-c", "16", "-d", f"{secs}s", "-s",
             os.path.join(harness.ROOT, "bench", "userinfo_mix.lua"), BASE,
             env={**os.environ, "TOKENS_FILE": path, "MIX": mix})
    cores = cpu.done()
    r = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    after = cache_counts()
    hits, misses = after["hit"] - before["hit"], after["miss"] - before["miss"]
    r.update(cores)
    r["ok_rps"] = (r["requests"] - r["non_2xx"]) / r["seconds"]
    r["rps"] = r["requests"] / r["seconds"]
    r["hit_rate"] = hits / max(hits + misses, 1)
    return r


def backend_run(name, env, config):
    r = {}
    server = Server(env, config)
    log(f"== {name}: minting {TOKENS} tokens")
    tokens = mint(TOKENS)
    with tempfile.NamedTemporaryFile("w", delete=False, suffix=".tokens") as f:
        f.write("\n".join(tokens) + "\n")
        path = f.name
    try:
        log(f"== {name}: verify ceiling, then one token, then the Zipf mix")
        r["verify"] = json.loads(sh(BENCH_BIN, "verify", "--alg", "ES256", "--seconds", "4", env=env))
        with open(path + ".one", "w") as one:
            one.write(tokens[0] + "\n")
        r["one_token"] = mix_load(path + ".one", "cycle", SECS, server.proc.pid)
        os.unlink(path + ".one")
        r["zipf"] = mix_load(path, "zipf", SECS, server.proc.pid)
        log(f"== {name}: a flood of forged tokens, then the Zipf mix again")
        r["rss_before_flood_mb"] = server.peak_rss_mb()
        r["forged"] = mix_load(path, "forged", FORGED_SECS, server.proc.pid)
        r["rss_after_flood_mb"] = server.peak_rss_mb()
        r["zipf_after_flood"] = mix_load(path, "zipf", SECS, server.proc.pid)
        server.stop()
        log(f"== {name}: every request a miss (cache of 1,000, {TOKENS} tokens in order)")
        server = Server({**env, "TESSERA__TOKENS__VERIFIED_CACHE": "1000"}, config)
        r["verify_before_miss"] = json.loads(sh(BENCH_BIN, "verify", "--alg", "ES256", "--seconds", "4", env=env))
        r["miss_only"] = mix_load(path, "cycle", SECS, server.proc.pid)
        server.stop()
    finally:
        os.unlink(path)
    return r


def main():
    os.chdir(tempfile.mkdtemp(prefix="tessera-bench-userinfo-"))
    base_env = harness.server_env()
    config = os.path.abspath("bench.toml")
    with open(config, "w") as f:
        f.write("# /userinfo bench: defaults\n")
    db = f"tessera_bench_userinfo_{os.getpid()}"
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
    with open(os.path.join(harness.ROOT, "bench", "last-run-userinfo.json"), "w") as f:
        json.dump(results, f, indent=2)
    table()


def table():
    rows = [("path", "figure", "ceiling (same run)", "ratio", "target")]
    for name, r in results.items():
        v = r["verify"]["verifies_per_sec"]
        one = r["one_token"]["ok_rps"]
        rows.append((f"{name}: /userinfo, one token, req/s", f"{one:.0f}", f"{v:.0f} verify/s", f"{one / v:.2f}", ""))
        z = r["zipf"]
        rows.append((f"{name}: /userinfo, Zipf over {TOKENS} tokens, req/s", f"{z['ok_rps']:.0f} (hits {z['hit_rate']:.1%})",
                     f"{v:.0f} verify/s", f"{z['ok_rps'] / v:.2f}", ">= 2"))
        m = r["miss_only"]
        vm = r["verify_before_miss"]
        per_core = m["ok_rps"] / max(m["server_cores"], 1e-9)
        ceiling = vm["verifies_per_sec"] / vm["cores"]
        rows.append((f"{name}: /userinfo, every request a miss, req/s per Tessera core",
                     f"{per_core:.0f} (hits {m['hit_rate']:.1%}; {m['ok_rps']:.0f} req/s on {m['server_cores']:.2f} cores)",
                     f"{ceiling:.0f} verify/s/core", f"{per_core / ceiling:.2f}", ">= 0.8"))
        fl = r["forged"]
        rows.append((f"{name}: forged-token flood", f"{fl['requests']} refused ({fl['rps']:.0f}/s), {fl['requests'] - fl['non_2xx']} accepted",
                     "-", "-", "0 accepted"))
        rows.append((f"{name}: peak RSS before / after the flood", f"{r['rss_before_flood_mb']:.0f} / {r['rss_after_flood_mb']:.0f} MB",
                     "-", "-", "no growth"))
        za = r["zipf_after_flood"]
        rows.append((f"{name}: Zipf after the flood, req/s", f"{za['ok_rps']:.0f} (hits {za['hit_rate']:.1%})",
                     f"{z['ok_rps']:.0f} before", f"{za['ok_rps'] / z['ok_rps']:.2f}", "~1"))
    harness.markdown_table(rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--table":
        with open(os.path.join(harness.ROOT, "bench", "last-run-userinfo.json")) as f:
            results.update(json.load(f))
        table()
    else:
        main()
