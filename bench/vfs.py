#!/usr/bin/env python3
"""The VFS extension against `restore`, on a replica in a local Garage (S3) server.

    cargo build --release -p sqlite-replicate -p sqlite-replicate-vfs
    python3 bench/vfs.py --size-mib 1024

Needs `garage` (scripts/test.sh installs it) and Debian's python3 (loadable extensions).
Builds a database of SIZE MiB (rows of 1000 random bytes: incompressible, so the replica
is as large as the database), replicates it to a fresh Garage bucket with the release
binary, stops the replicator, then measures, each in a fresh process:

- restore: `sqlite-replicate restore` of the latest state (its default quick check);
- first query: open through the VFS and look up one row by primary key (connect to
  the first row, wall clock), with the GETs and bytes the VFS fetched for it; several
  lookups of random keys, each in a new process;
- scan: `SELECT sum(length(v)) FROM t` through the VFS with the cache bounded at
  --cache-mib, its throughput, and the process's peak RSS (the bound at work), --scans
  times.

Medians are printed after the individual runs (the machine is noisy). `--lib A --lib B`
measures several builds of the extension against the same replica, in turn (to compare
a change with the build before it).
"""
import statistics
import argparse
import json
import os
import random
import re
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/sqlite-replicate")
LIB = os.path.join(ROOT, "target/release/libsqlite_replicate_vfs.so")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_garage(d):
    rpc, s3, admin = free_port(), free_port(), free_port()
    cfg = os.path.join(d, "garage.toml")
    with open(cfg, "w") as f:
        f.write(f"""metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{os.urandom(32).hex()}"
[s3_api]
api_bind_addr = "127.0.0.1:{s3}"
s3_region = "garage"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:{admin}"
""")
    garage = shutil.which("garage") or os.path.expanduser("~/.cargo/bin/garage")
    log = open(os.path.join(d, "garage.log"), "w")
    proc = subprocess.Popen([garage, "-c", cfg, "server"], stdout=log, stderr=log)
    cli = lambda *a: subprocess.run([garage, "-c", cfg, *a], capture_output=True, text=True)
    deadline = time.time() + 30
    while cli("status").returncode != 0:
        assert time.time() < deadline, "garage did not start"
        time.sleep(0.1)
    node = cli("node", "id", "-q").stdout.strip().split("@")[0]
    cli("layout", "assign", "-z", "dc1", "-c", "20G", node)
    cli("layout", "apply", "--version", "1")
    key = cli("key", "create", "bench-key").stdout
    key_id = re.search(r"Key ID:\s*(\S+)", key).group(1)
    secret = re.search(r"Secret key:\s*(\S+)", key).group(1)
    cli("bucket", "create", "bench")
    cli("bucket", "allow", "--read", "--write", "--owner", "bench", "--key", "bench-key")
    while True:
        try:
            socket.create_connection(("127.0.0.1", s3), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline, "garage S3 did not start"
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{s3}", key_id, secret


def make_db(path, size_mib):
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    rows = size_mib * 1024 * 1024 // 1050
    for start in range(0, rows, 10000):
        c.executemany("INSERT INTO t(v) VALUES (randomblob(1000))", [()] * min(10000, rows - start))
        c.commit()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return rows


CHILD = r"""
import json, resource, sqlite3, sys, time
lib, uri, sql, arg = sys.argv[1:5]
m = sqlite3.connect(':memory:'); m.enable_load_extension(True); m.load_extension(lib)
t = time.monotonic()
c = sqlite3.connect(uri, uri=True)
row = c.execute(sql, (int(arg),) if '?' in sql else ()).fetchone()
ms = (time.monotonic() - t) * 1000
stats = json.loads(c.execute('PRAGMA sqlite_replicate_stats').fetchone()[0])
print(json.dumps({"ms": ms, "row": row[0], "stats": stats,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def vfs_child(env, uri, sql, arg=0, lib=LIB):
    out = subprocess.run(["/usr/bin/python3", "-c", CHILD, lib, uri, sql, str(arg)],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def measure(lib, env, uri, rows, size, a):
    ms = []
    for i in range(a.lookups):
        r = vfs_child(env, uri, "SELECT length(v) FROM t WHERE id = ?", random.randint(1, rows), lib)
        s = r["stats"]
        ms.append(r["ms"])
        print(f"  first query (point lookup {i + 1}): {r['ms']:.1f} ms (load {s.get('load_ms', '?')} ms: "
              f"listing {s.get('list_ms', '?')}, indexes after it {s.get('index_ms', '?')}, map {s.get('map_ms', '?')}; "
              f"waiting for pages {s.get('page_wait_ms', '?')} ms), "
              f"{s['gets']} page GETs, {s['bytes_fetched'] / 1024:.0f} KiB of pages, "
              f"{s.get('index_gets', '?')} header/index GETs, {s.get('index_bytes', 0) / 1024:.0f} KiB")
    print(f"  first query: median {statistics.median(ms):.1f} ms of {len(ms)}")
    rates, rss = [], []
    for i in range(a.scans):
        r = vfs_child(env, uri, "SELECT sum(length(v)) FROM t", 0, lib)
        s = r["stats"]
        rates.append(size / 2**20 / (r["ms"] / 1000))
        rss.append(r["rss_mib"])
        print(f"  scan {i + 1} (cache {a.cache_mib} MiB): {r['ms'] / 1000:.2f} s, "
              f"{rates[-1]:.0f} MiB/s, {s['gets']} GETs, "
              f"{s['bytes_fetched'] / 2**20:.0f} MiB fetched, peak RSS {r['rss_mib']:.0f} MiB, "
              f"cache {s['cache_bytes'] / 2**20:.0f} MiB")
    if rates:
        print(f"  scan: median {statistics.median(rates):.0f} MiB/s, peak RSS median "
              f"{statistics.median(rss):.0f} MiB (max {max(rss):.0f}) of {len(rates)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--cache-mib", type=int, default=64)
    ap.add_argument("--lookups", type=int, default=5)
    ap.add_argument("--scans", type=int, default=3)
    ap.add_argument("--lib", action="append", help="extension to measure (repeatable; default the release build)")
    a = ap.parse_args()
    libs = a.lib or [LIB]
    for p in (BIN, *libs):
        assert os.path.exists(p), f"{p} missing: cargo build --release -p sqlite-replicate -p sqlite-replicate-vfs"
    d = tempfile.mkdtemp(prefix="sr-vfs-bench-")
    garage, endpoint, key_id, secret = start_garage(d)
    try:
        db = os.path.join(d, "app.db")
        t = time.monotonic()
        rows = make_db(db, a.size_mib)
        print(f"database: {os.path.getsize(db) / 2**20:.0f} MiB, {rows} rows ({time.monotonic() - t:.0f} s)")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret)
        url = f"s3://bench/app?endpoint={endpoint}&region=garage&forcePathStyle=true"
        cfg = os.path.join(d, "sr.yml")
        with open(cfg, "w") as f:
            f.write(f"dbs:\n  - path: {db}\n    replica:\n      url: {url}\n      upload-rate: 0\n")
        t = time.monotonic()
        rep = subprocess.Popen([BIN, "replicate", "-config", cfg], env=env,
                               stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "rep.log"), "w"))
        # Replicated once the replica restores (the snapshot is uploaded at start).
        while True:
            ls = subprocess.run([BIN, "ltx", url], env=env, capture_output=True, text=True).stdout
            if re.search(r"^9\s", ls, re.M):
                break
            assert rep.poll() is None, open(os.path.join(d, "rep.log")).read()
            time.sleep(0.5)
        rep.terminate()
        rep.wait(60)
        print(f"replicated in {time.monotonic() - t:.0f} s")
        out = os.path.join(d, "restored.db")
        size = os.path.getsize(db)
        secs = []
        for _ in range(3):
            t = time.monotonic()
            subprocess.run([BIN, "restore", "-o", out, url], env=env, check=True)
            secs.append(time.monotonic() - t)
            os.remove(out)
        restore_s = statistics.median(secs)
        print(f"restore: median {restore_s:.2f} s of 3, {size / 2**20 / restore_s:.0f} MiB/s")
        enc = url.replace("?", "%3F").replace("&", "%26").replace("=", "%3D")
        uri = f"file:app.db?vfs=sqlite-replicate&cache_size={a.cache_mib}MiB&replica={enc}"
        for lib in libs:
            print(f"extension {lib}:")
            measure(lib, env, uri, rows, size, a)
    finally:
        garage.terminate()
        garage.wait(30)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
