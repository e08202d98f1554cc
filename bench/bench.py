#!/usr/bin/env python3
"""Benchmarks a newcomer can run with nothing but Python 3 and a release build.

    cargo build --release -p sqlite-replicate
    python3 bench/bench.py restore --size-mib 256
    python3 bench/bench.py lost --rate 200 --rounds 5
    python3 bench/bench.py many --dbs 200
    python3 bench/bench.py steady --rate 200 --settle-s 30 --window-s 40
    python3 bench/bench.py steady --replica-yaml "upload-rate: 50" --s3 s3://b/p --s3-endpoint ...
    python3 bench/bench.py lost --garage --rate 200 --burst 20 --quiet-s 5 --vs "$(which litestream)"
    python3 bench/bench.py all

Each prints one line per tool. `--vs PATH` adds a second tool that speaks the same
command line and config (Litestream: `--vs "$(which litestream)"`), measured in the same
run on the same data, so the two lines compare even on a busy machine. Replicas are
local directories unless `--s3 s3://BUCKET/PREFIX` is given (credentials and endpoint
from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and --s3-endpoint).

What each measures:
- restore: time to restore a database of SIZE MiB (median of --runs), against the floor
  of copying the same file and fsyncing it; the ratio is what to compare. Also the
  replicator's CPU seconds for its first full image of the database (and final sync).
  --replica-yaml applies here too (e.g. "age: {identities: [AGE-SECRET-KEY-1...]}").
  The replicator's peak RSS (VmHWM); with --maintenance, through its first snapshot and
  a level-1 compaction (issue 27: `--size-mib 8192 --maintenance`, at most 100 MiB).
- lost: the recovery point. A writer commits one row per transaction at --rate per second
  (0: as fast as it can); at a random moment the writer and the replicator are killed
  with SIGKILL together, the database is restored from the replica alone, and the rows
  the writer saw committed but the restore lacks are counted, in rows and milliseconds.
  Every restore must be a consistent prefix (ids 1..n, integrity_check ok) or the bench
  fails. Also the replicator's CPU seconds up to the kill. With --burst N, the writer
  commits N rows at --rate, stays quiet --quiet-s, and again; the kill comes as the second
  burst's last commit is acknowledged (the worst moment for bursty writes).
- many: one replicator over N databases (one row each): the start-up time until every
  database has something on its replica, then, --settle-s later, an idle window of
  --idle-s: CPU, storage requests (the tool's /metrics, and the server's own count with
  --count-url), peak RSS, descriptors open and log lines.
- steady: the cost of sustained writes once start-up is over. A writer commits at --rate
  per second; the window opens --settle-s after the writer starts (default 30 s, so the
  start-up snapshot and first uploads do not count) and lasts --window-s (default 40 s).
  Reports storage requests per second in the window (every operation, read from the
  tool's own /metrics `litestream_replica_operation_total`, which Litestream exports
  too, so file replicas count as well), how many of them were PUTs, and the
  replicator's CPU as a share of one core. --replica-yaml adds YAML lines to each
  replica (e.g. "upload-rate: 50", "sync-interval: 1s"). Also the CPU per upload (CPU
  seconds over PUTs in the window), the cost of one unit. --runs windows, medians. With
  --burst, the writer bursts as in `lost`, and the PUTs per burst are printed too.

--garage starts a single-node Garage on loopback for the run (`garage` on PATH or in
~/.cargo/bin) and replicates to it, for S3 figures with nothing else set up.

The README's Performance section quotes the side-by-side scripts in ../shared/bench,
which also count object-store requests through Garage; these are the self-contained
subset for everyday use.
"""
import argparse
import os
import random
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BIN = os.path.join(HERE, "..", "target", "release", "sqlite-replicate")
TICKS = os.sysconf("SC_CLK_TCK")


class Replica:
    """Where a database's replica lives: a local directory or an S3 prefix."""

    def __init__(self, args, root, name):
        self.args = args
        if args.s3:
            self.url = f"{args.s3.rstrip('/')}/{os.path.basename(root)}/{name}"
        else:
            self.url = "file://" + os.path.join(root, "replica-" + name)

    def yaml(self):
        lines = [f"      - url: {self.url}"]
        if self.args.s3_endpoint:
            lines.append(f"        endpoint: {self.args.s3_endpoint}")
            lines.append("        force-path-style: true")
        for extra in getattr(self.args, "replica_yaml", None) or []:
            lines.append(f"        {extra}")
        return "\n".join(lines) + "\n"


def write_config(path, dbs, addr=None):
    """dbs: [(db_path, Replica)] -> a Litestream-style config at path."""
    with open(path, "w") as f:
        if addr:
            f.write(f"addr: {addr}\n")
        f.write("dbs:\n")
        for db, rep in dbs:
            f.write(f"  - path: {db}\n    replicas:\n")
            f.write(rep.yaml())


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid, key="VmHWM"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def start(tool, cfg, log):
    return subprocess.Popen([tool, "replicate", "-config", cfg], stdout=log, stderr=log,
                            start_new_session=True)


def kill9(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def restore(tool, cfg, db, out, phases=None):
    """Times one restore. With `phases` (a dict), also adds each phase's seconds to it from
    the tool's -json progress events (listing, fetch, verify, install) and the restore's
    CPU seconds as "cpu"."""
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    extra = ["-json"] if phases is not None else []
    r = subprocess.run([tool, "restore", "-config", cfg, "-o", out, *extra, db],
                       capture_output=True, text=True)
    took = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"{tool}: restore failed:\n{r.stderr[-2000:]}")
    if phases is not None:
        import json
        for line in r.stderr.splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("event") == "finish":
                ph = ev.get("phase")
                phases[ph] = phases.get(ph, 0) + ev.get("elapsed_seconds", 0)
        phases["cpu"] = phases.get("cpu", 0) + (after.ru_utime - before.ru_utime) + (
            after.ru_stime - before.ru_stime)
    return took


def stop(p, timeout=30):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        kill9(p)


def fill(db, size_mib):
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    rows = size_mib * 1024 * 1024 // 1000
    for start_id in range(0, rows, 10_000):
        n = min(10_000, rows - start_id)
        c.executemany("INSERT INTO t(v) VALUES (?)", ((os.urandom(1000),) for _ in range(n)))
        c.commit()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def copy_floor(src, dst):
    t = time.perf_counter()
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - t


def bench_restore(tool, args, work):
    d = tempfile.mkdtemp(dir=work)
    db = os.path.join(d, "app.db")
    fill(db, args.size_mib)
    cfg = os.path.join(d, "cfg.yml")
    write_config(cfg, [(db, Replica(args, d, "app"))])
    # The replicator's CPU for the first full image and its final sync: the children's
    # rusage across its run (no other child is reaped meanwhile).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss = ""
    with open(os.path.join(d, "replicate.log"), "w") as log:
        p = start(tool, cfg, log)
        if args.maintenance and tool == os.path.abspath(args.bin):
            rss = through_maintenance(tool, cfg, db, p, args.maintenance_timeout_s)
        else:
            time.sleep(3)
        rss = rss or f"; replicator peak RSS {rss_mib(p.pid):.0f} MiB"
        stop(p, timeout=args.maintenance_timeout_s)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    times, floors = [], []
    phases = {} if tool == os.path.abspath(args.bin) else None
    for i in range(args.runs):
        out = os.path.join(d, f"out{i}.db")
        server = cpu_seconds(args.garage_pid) if args.garage_pid else None
        times.append(restore(tool, cfg, db, out, phases))
        if server is not None and phases is not None:
            # Garage shares the machine's cores: what serving the restore cost it.
            phases["garage cpu"] = phases.get("garage cpu", 0) + (
                cpu_seconds(args.garage_pid) - server)
        check_same_rows(db, out)
        os.remove(out)
        floors.append(copy_floor(db, out))
        os.remove(out)
    t, floor = statistics.median(times), statistics.median(floors)
    size = os.path.getsize(db) / 2**20
    shutil.rmtree(d, ignore_errors=True)  # an 8 GiB run leaves tens of GiB otherwise
    where = ""
    if phases:
        where = "; per restore: " + ", ".join(
            f"{k} {v / args.runs:.2f} s" for k, v in phases.items())
    return (f"restore {size:.0f} MiB: {t:.2f} s ({size / t:.0f} MiB/s), "
            f"{t / floor:.2f}x the copy floor ({floor:.2f} s); "
            f"replicator CPU for the first image {cpu:.2f} s{rss}{where}")


def replica_levels(tool, cfg, db):
    """{level: [max TXID, ...]} of the files the replica holds (the tool's `ltx` listing)."""
    r = subprocess.run([tool, "ltx", "-config", cfg, db], capture_output=True, text=True)
    levels = {}
    for line in r.stdout.splitlines()[1:]:
        f = line.split()
        if len(f) >= 3 and f[0].isdigit():
            levels.setdefault(int(f[0]), []).append(int(f[2], 16))
    return levels


def wait_levels(tool, cfg, db, p, cond, what, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if p.poll() is not None:
            sys.exit(f"{tool}: the replicator exited while waiting for {what}")
        levels = replica_levels(tool, cfg, db)
        if cond(levels):
            return levels
        time.sleep(1)
    sys.exit(f"{tool}: no {what} after {timeout_s:.0f} s")


def through_maintenance(tool, cfg, db, p, timeout_s):
    """--maintenance: waits for the first snapshot (level 9), then commits a little more
    and waits for a level-1 compaction past it (which merges the full image too), and
    reports the replicator's peak RSS (VmHWM) at each point."""
    t0 = time.monotonic()
    levels = wait_levels(tool, cfg, db, p, lambda lv: 9 in lv, "level-9 snapshot", timeout_s)
    snap_s, snap_rss = time.monotonic() - t0, rss_mib(p.pid)
    top = max(levels[9])
    c = sqlite3.connect(db)
    c.executemany("INSERT INTO t(v) VALUES (?)", ((os.urandom(1000),) for _ in range(1000)))
    c.commit()
    c.close()
    t1 = time.monotonic()
    wait_levels(tool, cfg, db, p, lambda lv: any(m > top for m in lv.get(1, [])),
                "level-1 compaction", timeout_s)
    comp_s, comp_rss = time.monotonic() - t1, rss_mib(p.pid)
    return (f"; replicator peak RSS {snap_rss:.0f} MiB up to the first snapshot "
            f"({snap_s:.0f} s), {comp_rss:.0f} MiB through a compaction ({comp_s:.0f} s)")


def check_same_rows(a, b):
    ca, cb = sqlite3.connect(a), sqlite3.connect(b)
    q = "SELECT count(*), total(length(v)), max(id) FROM t"
    if ca.execute(q).fetchone() != cb.execute(q).fetchone():
        sys.exit(f"restore of {a} differs from the source")
    if cb.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
        sys.exit(f"restore of {a} fails integrity_check")


def writer(db, rate, payload, acked, stop_flag, burst=0, quiet_s=0.0):
    """Commits one row per transaction at `rate` per second (0: as fast as it can); with
    `burst`, `burst` commits at that rate, then `quiet_s` of silence, and again."""
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA synchronous=NORMAL")
    blob = os.urandom(payload)
    i, n, t0 = 0, 0, time.perf_counter()
    while not stop_flag.is_set():
        i += 1
        n += 1
        c.execute("INSERT INTO t(id, v) VALUES (?, ?)", (i, blob))
        acked.append((i, time.time()))
        if burst and n == burst:
            stop_flag.wait(quiet_s)
            n, t0 = 0, time.perf_counter()
            continue
        if rate:
            delay = t0 + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)


def until_acked(acked, n, deadline_s=120):
    """Waits until the writer has acknowledged its n-th commit (a burst's last)."""
    end = time.perf_counter() + deadline_s
    while len(acked) < n:
        if time.perf_counter() > end:
            sys.exit(f"the writer did not reach commit {n} in {deadline_s} s")
        time.sleep(0.0005)


def bench_lost(tool, args, work, rng):
    lost_rows, lost_ms, cpus = [], [], []
    for _ in range(args.rounds):
        d = tempfile.mkdtemp(dir=work)
        db = os.path.join(d, "app.db")
        c = sqlite3.connect(db)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        c.close()
        cfg = os.path.join(d, "cfg.yml")
        write_config(cfg, [(db, Replica(args, d, "app"))])
        with open(os.path.join(d, "replicate.log"), "w") as log:
            p = start(tool, cfg, log)
            time.sleep(2)
            acked, stop_flag = [], threading.Event()
            th = threading.Thread(target=writer,
                                  args=(db, args.rate, args.payload, acked, stop_flag,
                                        args.burst, args.quiet_s))
            th.start()
            if args.burst:
                # The worst moment of bursty writes: right after the last commit of the
                # second burst (the first follows start-up).
                until_acked(acked, 2 * args.burst)
            else:
                time.sleep(rng.uniform(3, 6))
            # The host dies: the replicator at once, and nothing the writer does after
            # this instant counts as acknowledged.
            cpus.append(cpu_seconds(p.pid))
            died = time.time()
            kill9(p)
            stop_flag.set()
            th.join()
        acked = [(i, t) for i, t in acked if t <= died]
        out = os.path.join(d, "restored.db")
        restore(tool, cfg, db, out)
        rc = sqlite3.connect(out)
        n, top = rc.execute("SELECT count(*), coalesce(max(id), 0) FROM t").fetchone()
        ok = rc.execute("PRAGMA integrity_check").fetchone()[0]
        rc.close()
        if n != top or ok != "ok":
            sys.exit(f"{tool}: not a consistent prefix: {n} rows, max id {top}, {ok}")
        last_id, last_t = acked[-1]
        top = min(top, last_id)
        lost_rows.append(last_id - top)
        # Steady writes: back to the last commit restored. Bursts: back to the first commit
        # lost (the quiet spell before a burst is not data lost).
        since = dict(acked).get(top + 1 if args.burst else top, acked[0][1])
        lost_ms.append(0.0 if top == last_id else (last_t - since) * 1000)
        shutil.rmtree(d, ignore_errors=True)
    shape = (f"bursts of {args.burst} at {args.rate:g} tx/s every {args.quiet_s:g} s, killed "
             f"as a burst ends" if args.burst else f"{args.rate:g} tx/s")
    return (f"lost at {shape}: median {statistics.median(lost_ms):.0f} ms "
            f"({statistics.median(lost_rows):.0f} rows), max {max(lost_ms):.0f} ms; "
            f"replicator CPU median {statistics.median(cpus):.2f} s "
            f"(rounds: {', '.join(f'{v:.0f}' for v in lost_ms)} ms)")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def operations(port):
    """(all requests, PUTs) so far from a tool's /metrics (Litestream's metric names)."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    total = puts = 0.0
    for line in text.splitlines():
        if line.startswith("litestream_replica_operation_total{"):
            v = float(line.rsplit(" ", 1)[1])
            total += v
            if 'operation="PUT"' in line:
                puts += v
    return total, puts


def bench_steady(tool, args, work):
    """--runs windows, each on a fresh database and replicator; the median of each figure."""
    runs = [steady_once(tool, args, work) for _ in range(args.runs)]
    med = [statistics.median(r[i] for r in runs) for i in range(5)]
    settle = 30.0 if args.settle_s is None else args.settle_s
    tx, req, puts, cpu, dt = med
    per = [r[3] / r[2] for r in runs if r[2]]
    per_put = f"{1000 * statistics.median(per):.2f} ms" if per else "-"
    per_burst = (f", {puts * (args.burst / args.rate + args.quiet_s):.1f} PUTs per burst of "
                 f"{args.burst}" if args.burst and args.rate else "")
    return (f"steady state at {tx:.0f} tx/s{per_burst} ({settle:g} s after the writer, over {dt:.0f} s, "
            f"median of {len(runs)}): {req:.2f} requests/s ({puts:.2f} PUT/s), "
            f"CPU {100 * cpu:.2f}% of a core, {per_put} of CPU per upload "
            f"(runs: {', '.join(f'{100 * r[3]:.2f}%' for r in runs)})")


def steady_once(tool, args, work):
    """One window: (tx/s, requests/s, PUT/s, CPU share of a core, window seconds)."""
    settle = 30.0 if args.settle_s is None else args.settle_s
    d = tempfile.mkdtemp(dir=work)
    db = os.path.join(d, "app.db")
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    c.close()
    port = free_port()
    cfg = os.path.join(d, "cfg.yml")
    write_config(cfg, [(db, Replica(args, d, "app"))], addr=f"127.0.0.1:{port}")
    with open(os.path.join(d, "replicate.log"), "w") as log:
        p = start(tool, cfg, log)
        time.sleep(2)
        acked, stop_flag = [], threading.Event()
        th = threading.Thread(target=writer, args=(db, args.rate, args.payload, acked, stop_flag,
                                                   args.burst, args.quiet_s))
        th.start()
        time.sleep(settle)
        (r0, p0), c0, n0, t0 = operations(port), cpu_seconds(p.pid), len(acked), time.perf_counter()
        time.sleep(args.window_s)
        (r1, p1), c1, n1, t1 = operations(port), cpu_seconds(p.pid), len(acked), time.perf_counter()
        stop_flag.set()
        th.join()
        stop(p)
    shutil.rmtree(d, ignore_errors=True)
    dt = t1 - t0
    return (n1 - n0) / dt, (r1 - r0) / dt, (p1 - p0) / dt, (c1 - c0) / dt, dt


def replicating(port):
    """How many databases have something on every replica, from the tool's /metrics
    (`sqlite_replicate_replica_txid`; None for a tool without it, such as Litestream)."""
    import urllib.request
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    except OSError:
        return 0
    seen = False
    dbs = set()
    for line in text.splitlines():
        if line.startswith("sqlite_replicate_replica_txid{"):
            seen = True
            if float(line.rsplit(" ", 1)[1]) > 0:
                dbs.add(line.split('db="', 1)[1].split('"', 1)[0])
    return len(dbs) if seen else None


def server_requests(url):
    """Requests a server has answered so far, from its Prometheus text (Garage's admin
    /metrics: `api_s3_request_counter`); 0 without --count-url."""
    import urllib.request
    if not url:
        return 0
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("api_s3_request_counter{"))


def bench_many(tool, args, work):
    d = tempfile.mkdtemp(dir=work)
    dbs = []
    t = time.perf_counter()
    # One database made, checkpointed and copied (the WAL mode is in its header): making
    # 10,000 one by one takes minutes.
    template = os.path.join(work, "template.db")
    c = sqlite3.connect(template)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    c.execute("INSERT INTO t(v) VALUES (randomblob(100))")
    c.commit()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    for i in range(args.dbs):
        db = os.path.join(d, f"db{i}.db")
        shutil.copyfile(template, db)
        dbs.append((db, Replica(args, d, f"db{i}")))
    os.remove(template)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(template + suffix):
            os.remove(template + suffix)
    print(f"  ({args.dbs} databases made in {time.perf_counter() - t:.0f} s)", flush=True)
    port = free_port()
    cfg = os.path.join(d, "cfg.yml")
    write_config(cfg, dbs, addr=f"127.0.0.1:{port}")
    with open(os.path.join(d, "replicate.log"), "w") as log:
        t0 = time.perf_counter()
        p = start(tool, cfg, log)
        # Start-up: until every database has something on its replica (or 15 minutes).
        ready = None
        while time.perf_counter() - t0 < 900 and p.poll() is None:
            n = replicating(port)
            if n is None:
                break
            if n == args.dbs:
                ready = time.perf_counter() - t0
                break
            time.sleep(2)
        if p.poll() is not None:
            with open(os.path.join(d, "replicate.log"), errors="replace") as f:
                tail = "".join(f.readlines()[-20:])
            sys.exit(f"{tool} exited with status {p.returncode} during start-up; "
                     f"its log ends:\n{tail}")
        time.sleep(10.0 if args.settle_s is None else args.settle_s)
        cpu0, r0, s0 = cpu_seconds(p.pid), operations(port)[0], server_requests(args.count_url)
        t1 = time.perf_counter()
        time.sleep(args.idle_s)
        dt = time.perf_counter() - t1
        idle = (cpu_seconds(p.pid) - cpu0) / dt * 100
        reqs = operations(port)[0] - r0
        sreqs = server_requests(args.count_url) - s0
        peak, now = rss_mib(p.pid), rss_mib(p.pid, "VmRSS")
        fds = len(os.listdir(f"/proc/{p.pid}/fd"))
        lines = sum(1 for _ in open(os.path.join(d, "replicate.log"), errors="replace"))
        stop(p)
    shutil.rmtree(d, ignore_errors=True)
    up = f"all replicating {ready:.0f} s after start" if ready is not None else "start-up not measured"
    counted = f", {sreqs:.0f} counted by the server" if args.count_url else ""
    return (f"{args.dbs} databases: {up}; peak RSS {peak:.0f} MiB (now {now:.0f} MiB), "
            f"idle over {dt:.0f} s: CPU {idle:.2f}% of a core, {reqs:.0f} requests{counted}; "
            f"{fds} descriptors open; {lines} log lines")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["restore", "lost", "many", "steady", "all"])
    ap.add_argument("--bin", default=DEFAULT_BIN, help="the tool to measure")
    ap.add_argument("--vs", help="a second tool measured in the same run")
    ap.add_argument("--s3", help="s3://BUCKET/PREFIX instead of local directories")
    ap.add_argument("--s3-endpoint", help="e.g. http://127.0.0.1:3900")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--payload", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dbs", type=int, default=200)
    ap.add_argument("--settle-s", type=float,
                    help="many: idle settling before measuring (default 10 s); steady: the "
                         "window opens this long after the writer starts (default 30 s)")
    ap.add_argument("--idle-s", type=float, default=20)
    ap.add_argument("--window-s", type=float, default=40)
    ap.add_argument("--replica-yaml", action="append",
                    help="a YAML line added to each replica (repeatable), e.g. 'upload-rate: 50'")
    ap.add_argument("--count-url",
                    help="many: also count idle requests at the server, from its Prometheus "
                         "text (Garage: http://ADMIN/metrics)")
    ap.add_argument("--burst", type=int, default=0,
                    help="lost, steady: write in bursts of this many commits at --rate, "
                         "--quiet-s apart (lost: killed as the second burst ends)")
    ap.add_argument("--quiet-s", type=float, default=20.0)
    ap.add_argument("--garage", action="store_true",
                    help="start a local Garage (S3) for the run and replicate to it")
    ap.add_argument("--maintenance", action="store_true",
                    help="restore: before stopping the replicator, wait for its first snapshot "
                         "and a level-1 compaction, and report its peak RSS through each "
                         "(the --bin tool only; --vs tools run 3 s as without it)")
    ap.add_argument("--maintenance-timeout-s", type=float, default=1800)
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = ap.parse_args()
    tools = [os.path.abspath(args.bin)] + ([args.vs] if args.vs else [])
    for t in tools:
        if not os.access(t, os.X_OK):
            sys.exit(f"{t}: not an executable (cargo build --release -p sqlite-replicate?)")
    print(f"seed {args.seed}")
    work = tempfile.mkdtemp(prefix="sr-bench-")
    args.garage_pid = None
    garage = start_garage(args, work) if args.garage else None
    try:
        for what in (["restore", "lost", "many"] if args.what == "all" else [args.what]):
            for tool in tools:
                if what == "restore":
                    line = bench_restore(tool, args, work)
                elif what == "steady":
                    line = bench_steady(tool, args, work)
                elif what == "lost":
                    line = bench_lost(tool, args, work, random.Random(args.seed))
                else:
                    line = bench_many(tool, args, work)
                print(f"{os.path.basename(tool):>18}  {line}", flush=True)
    finally:
        if garage:
            garage.kill()
            garage.wait()
        shutil.rmtree(work, ignore_errors=True)


def start_garage(args, work):
    """--garage: a single-node Garage on loopback (vfs.py's), its bucket as --s3, its
    key in the environment the tools inherit."""
    from vfs import start_garage as garage_in
    d = os.path.join(work, "garage")
    os.makedirs(d)
    proc, endpoint, key_id, secret = garage_in(d)
    args.garage_pid = proc.pid
    os.environ.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret)
    # A CA bundle set for the machine's proxy is no use on plain-HTTP loopback, and
    # Litestream's AWS SDK refuses to start with one beside a custom endpoint.
    os.environ.pop("AWS_CA_BUNDLE", None)
    args.s3, args.s3_endpoint = "s3://bench/runs", endpoint
    with open(os.path.join(d, "garage.toml")) as f:
        admin = f.read().split("[admin]", 1)[1].split('"')[1]
    args.count_url = args.count_url or f"http://{admin}/metrics"
    args.replica_yaml = ["region: garage"] + (args.replica_yaml or [])
    return proc


if __name__ == "__main__":
    main()
