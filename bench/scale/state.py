"""How long a new process takes to trust its revocation state, and what the state costs in
memory, with R denylisted jtis (and R/10 revoked sessions) in Postgres.

    python3 bench/scale/state.py 1000000 2500000 5000000

Needs a release build (bench/scale/run builds one) and Postgres on 127.0.0.1:5432. Each size
gets its own database, seeded by bench/scale/seed-postgres.sql with 1000 users and sessions.
Prints, per size: seeding time, start to /readyz, start until `revocation_state_trusted` is 1,
and the process's peak and steady RSS.
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import scale as sc  # noqa: E402


def main(sizes):
    os.chdir(tempfile.mkdtemp(prefix="tessera-state-"))
    env0 = {**os.environ, "TESSERA__HTTP__BIND": f"127.0.0.1:{h.PORT}", "TESSERA__LOG__LEVEL": "warn",
            "TESSERA__KEYS__MASTER_KEY": h.sh("openssl", "rand", "-base64", "32").strip()}
    env0.pop("DATABASE_URL", None)
    config = os.path.abspath("bench.toml")
    with open(config, "w") as f:
        f.write(f'[[clients]]\nid = "{h.CLIENT[0]}"\nsecret = "{h.CLIENT[1]}"\n')
    for r in sizes:
        db = f"tessera_state_{os.getpid()}_{r}"
        h.sh("psql", h.PG_ADMIN, "-qc", f"CREATE DATABASE {db}")
        url = h.PG_ADMIN.rsplit("/", 1)[0] + "/" + db
        try:
            env = {**env0, "DATABASE_URL": url}
            h.setup_users(env, config)
            t = time.time()
            sc.seed_postgres(url, 1000, 1000, r)
            seed = time.time() - t
            server, ready, trusted = sc.start(env, config)
            time.sleep(1)
            pid = server.proc.pid
            print(f"R={r}: seed {seed:.1f} s, ready {ready:.0f} ms, trusted {trusted:.0f} ms,"
                  f" peak RSS {sc.rss_mb(pid, 'VmHWM'):.0f} MB, steady {sc.rss_mb(pid, 'VmRSS'):.0f} MB",
                  flush=True)
            server.stop()
        finally:
            h.sh("psql", h.PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", check=False)


if __name__ == "__main__":
    main([int(x) for x in sys.argv[1:]] or [1_000_000, 2_500_000, 5_000_000])
