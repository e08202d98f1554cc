#!/usr/bin/env python3
"""A watched directory of many databases: start-up, a new database's first upload, cost.

    cargo build --release -p sqlite-replicate
    python3 bench/watch.py --dbs 10000
    python3 bench/watch.py --dbs 2000 --vs "$(which litestream)"

Builds a tree of N small WAL databases (--per-dir per subdirectory), runs one replicator
over it (`dir:` + `pattern: '*.db'` + `recursive: true` + `watch: true`, file replica),
and prints, per tool:
- startup_s: from launch until every database has its first LTX file in the replica
  (or, if some never get one within --startup-timeout-s, how many did);
- new_db_ms: a database created in a new subdirectory once the tree is replicating,
  until its first LTX file appears in the replica (median of --new runs);
- gone_ms: a database deleted, until the replicator logs that it stopped it (ours only);
- rss_mib (now, and peak), fds (open descriptors), fds_per_db (beyond an empty run's),
  threads, and the open-file limits the process runs with;
- idle_cpu_pct: the replicator's CPU over --idle-s once every database is replicating
  (process CPU seconds, as a share of one core);
- inotify_watches: watches the process holds (from /proc/PID/fdinfo of its inotify
  descriptors), against fs.inotify.max_user_watches;
- emfile_log_lines: log lines mentioning "Too many open files" or "EMFILE".

Litestream 0.5 speaks the same config (`--vs`); its numbers land on the second line.
"""
import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BIN = os.path.join(HERE, "..", "target", "release", "sqlite-replicate")


def make_db(path):
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=OFF")
    c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
    c.execute("INSERT INTO t(v) VALUES (randomblob(100))")
    c.commit()
    c.close()


def build_tree(root, n, per_dir):
    paths = []
    for i in range(n):
        d = os.path.join(root, f"d{i // per_dir:04d}")
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"db{i:05d}.db")
        make_db(p)
        paths.append(p)
    return paths


def has_ltx(replica_db):
    try:
        return any(True for _ in os.scandir(os.path.join(replica_db, "ltx", "0")))
    except FileNotFoundError:
        return False


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def limits(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                parts = line.split()
                return f"{parts[3]}/{parts[4]}"
    return "?"


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def inotify_watches(pid):
    """Watches held by the process's inotify descriptors (`inotify wd:` lines of fdinfo)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                n += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            pass
    return n


def run_tool(tool, args, work, paths, res):
    root, replica = os.path.join(work, "data"), os.path.join(work, "replica")
    shutil.rmtree(replica, ignore_errors=True)
    cfg = os.path.join(work, "cfg.yml")
    with open(cfg, "w") as f:
        f.write(
            f"dbs:\n  - dir: {root}\n    pattern: '*.db'\n    recursive: true\n"
            f"    watch: true\n    replica:\n      type: file\n      path: {replica}\n"
        )
    log_path = os.path.join(work, os.path.basename(tool) + ".log")
    log = open(log_path, "w")
    t0 = time.monotonic()
    p = subprocess.Popen([tool, "replicate", "-config", cfg], stdout=log, stderr=log)
    res["tool"] = os.path.basename(tool)
    try:
        # Start-up: every database's first LTX file in its replica.
        rel = [os.path.relpath(x, root) for x in paths]
        pending = set(rel)
        deadline = t0 + args.startup_timeout_s
        while pending and time.monotonic() < deadline and p.poll() is None:
            pending = {r for r in pending if not has_ltx(os.path.join(replica, r))}
            if pending:
                time.sleep(0.5)
        res["startup_s"] = round(time.monotonic() - t0, 1)
        res["replicating"] = f"{len(paths) - len(pending)}/{len(paths)}"
        time.sleep(args.settle_s)
        if p.poll() is not None:
            res["exited"] = p.returncode
            return res
        st = proc_status(p.pid)
        res["rss_mib"] = int(st["VmRSS"].split()[0]) // 1024
        res["peak_rss_mib"] = int(st["VmHWM"].split()[0]) // 1024
        res["threads"] = int(st["Threads"])
        res["fds"] = fd_count(p.pid)
        res["nofile_soft/hard"] = limits(p.pid)
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            res["inotify_watches"] = f"{inotify_watches(p.pid)}/{f.read().strip()}"
        c0, t0 = cpu_seconds(p.pid), time.monotonic()
        time.sleep(args.idle_s)
        res["idle_cpu_pct"] = round(100 * (cpu_seconds(p.pid) - c0) / (time.monotonic() - t0), 2)
        # New databases, each in a new subdirectory.
        times = []
        for k in range(args.new):
            d = os.path.join(root, f"new{k}", "deep")
            os.makedirs(d)
            db = os.path.join(d, "fresh.db")
            t = time.monotonic()
            make_db(db)
            target = os.path.join(replica, os.path.relpath(db, root))
            while not has_ltx(target) and time.monotonic() - t < 60:
                time.sleep(0.005)
            times.append((time.monotonic() - t) * 1000 if has_ltx(target) else float("inf"))
        m = statistics.median(times)
        res["new_db_ms"] = round(m) if m != float("inf") else "never(60s)"
        # A deleted database: until the replicator says it stopped it.
        victim = paths[len(paths) // 2]
        t = time.monotonic()
        for s in ("", "-wal", "-shm"):
            try:
                os.remove(victim + s)
            except FileNotFoundError:
                pass
        gone = None
        said = ("stopped replicating a deleted database", "removed database from replication")
        while gone is None and time.monotonic() - t < 30:
            with open(log_path, errors="replace") as f:
                for line in f:
                    if victim in line and any(s in line for s in said):
                        gone = (time.monotonic() - t) * 1000
                        break
            time.sleep(0.05)
        res["gone_ms"] = round(gone) if gone is not None else "-"
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()
    with open(log_path, errors="replace") as f:
        text = f.read()
    res["emfile_log_lines"] = sum(1 for line in text.splitlines() if "Too many open files" in line or "EMFILE" in line)
    return res


def empty_fds(tool, work):
    """Descriptors of a replicator watching an empty directory (the baseline)."""
    root = os.path.join(work, "empty")
    os.makedirs(root, exist_ok=True)
    cfg = os.path.join(work, "empty.yml")
    with open(cfg, "w") as f:
        f.write(
            f"dbs:\n  - dir: {root}\n    pattern: '*.db'\n    watch: true\n"
            f"    replica:\n      type: file\n      path: {os.path.join(work, 'empty-replica')}\n"
        )
    p = subprocess.Popen([tool, "replicate", "-config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    n = fd_count(p.pid)
    p.terminate()
    p.wait()
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--vs", help="a second tool measured on the same tree")
    ap.add_argument("--dbs", type=int, default=10000)
    ap.add_argument("--per-dir", type=int, default=100)
    ap.add_argument("--new", type=int, default=5, help="new databases to time")
    ap.add_argument("--settle-s", type=float, default=5)
    ap.add_argument("--idle-s", type=float, default=30, help="idle CPU window")
    ap.add_argument("--startup-timeout-s", type=float, default=600)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--work", help="reuse this work directory's whole tree (from --keep; --dbs is then what it holds)")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="bench-watch-")
    try:
        t = time.monotonic()
        if args.work:
            for e in os.listdir(os.path.join(work, "data")):
                if e.startswith("new"):
                    shutil.rmtree(os.path.join(work, "data", e))
            paths = sorted(
                os.path.join(d, f)
                for d, _, fs in os.walk(os.path.join(work, "data"))
                for f in fs
                if f.endswith(".db")
            )
        else:
            paths = build_tree(os.path.join(work, "data"), args.dbs, args.per_dir)
        print(f"# {len(paths)} databases ready in {time.monotonic() - t:.0f} s under {work}", file=sys.stderr)
        for tool in [args.bin] + ([args.vs] if args.vs else []):
            base = empty_fds(tool, work)
            res = {}
            try:
                res = run_tool(tool, args, work, paths, res)
            except Exception as e:  # report what was measured before the failure
                res["failed"] = repr(e)
            if isinstance(res.get("fds"), int) and res["fds"] > 0:
                n = int(res["replicating"].split("/")[0]) or 1
                res["fds_per_db"] = round((res["fds"] - base) / n, 2)
            print("  ".join(f"{k}={v}" for k, v in res.items()), flush=True)
            # The next tool starts from the same tree: drop the new databases.
            for e in os.listdir(os.path.join(work, "data")):
                if e.startswith("new"):
                    shutil.rmtree(os.path.join(work, "data", e))
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
