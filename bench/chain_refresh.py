"""Sequential refresh-token rotation latency: log in once, then refresh N times, each with the
successor of the previous call (a real rotation every time, never the grace-window retry).

Usage: chain_refresh.py BASE_URL USERNAME PASSWORD N
       chain_refresh.py BASE_URL --token REFRESH_TOKEN N   (start from a token obtained earlier)
Prints p50/p99/mean in milliseconds and the rotations per second of this single client.
"""
import http.client
import json
import statistics
import sys
import time
import urllib.parse


def main() -> int:
    base, user, password, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    u = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    headers = {"content-type": "application/json"}
    if user == "--token":
        rt = password
    else:
        conn.request("POST", "/login", json.dumps({"username": user, "password": password}), headers)
        r = conn.getresponse()
        body = json.loads(r.read())
        assert r.status == 200, body
        rt = body["refresh_token"]
    times = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/refresh", json.dumps({"refresh_token": rt}), headers)
        r = conn.getresponse()
        body = json.loads(r.read())
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200, body
        rt = body["refresh_token"]
    total = time.perf_counter() - started
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(json.dumps({"n": n, "p50_ms": round(p(0.5), 3), "p99_ms": round(p(0.99), 3),
                      "mean_ms": round(statistics.mean(times), 3), "per_sec": round(n / total, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
