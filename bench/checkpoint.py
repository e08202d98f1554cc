#!/usr/bin/env python3
"""How long an application's own `PRAGMA wal_checkpoint(MODE)` waits on the replicator.

    cargo build --release -p sqlite-replicate
    python3 bench/checkpoint.py --vs "$(which litestream)"

For each tool (ours, and with `--vs` a second one that speaks the same command line and
config, such as Litestream 0.5.17), each load (idle, and a second process committing one
row per transaction at --rate per second) and each mode (PASSIVE, FULL, RESTART,
TRUNCATE): a fresh database replicated to a local directory; then --tries times, the
application (busy_timeout = 5000 ms, as many applications set it) commits --rows rows
one per transaction, pauses --pause-ms and runs `PRAGMA wal_checkpoint(MODE)`, timed.
Prints the median and the slowest wait, and how many checkpoints SQLite reported busy
(the busy column of the pragma: the checkpoint did not finish, FULL/RESTART/TRUNCATE
after waiting the whole busy timeout).

Afterwards the replicator is stopped (SIGTERM, its final sync), the database restored
from the replica with the same tool, and the restore compared with the source row for
row (and `integrity_check`): a difference fails the bench for the measured tool, and is
noted in the cell for the `--vs` tool, and the run goes on.

Both tools are measured in the same run on the same machine, so the two columns
compare even on a busy machine.
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
MODES = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"]


def write_config(path, db, replica_dir):
    with open(path, "w") as f:
        f.write(f"dbs:\n  - path: {db}\n    replicas:\n      - url: file://{replica_dir}\n")


def load_writer(db, rate):
    """The background application (a process of its own): one row per transaction."""
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA busy_timeout=5000")
    c.execute("PRAGMA synchronous=NORMAL")
    blob = os.urandom(100)
    i, t0 = 0, time.perf_counter()
    while True:
        i += 1
        try:
            c.execute("INSERT INTO load(v) VALUES (?)", (blob,))
        except sqlite3.OperationalError as e:
            # Busy after 5 s: a checkpoint held the write lock that long. Keep writing.
            print(f"load writer: {e}", file=sys.stderr)
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def wait_for(what, cond, timeout=30):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.02)


def has_ltx(replica_dir):
    for _, _, files in os.walk(replica_dir):
        if any(f.endswith(".ltx") for f in files):
            return True
    return False


def same_rows(a, b):
    q = ["SELECT count(*), total(length(v)), coalesce(max(id), 0) FROM t",
         "SELECT count(*), coalesce(max(id), 0) FROM load"]
    ca, cb = sqlite3.connect(a), sqlite3.connect(b)
    try:
        for s in q:
            if ca.execute(s).fetchone() != cb.execute(s).fetchone():
                return False
        return cb.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        ca.close()
        cb.close()


def run_mode(tool, mode, rate, args, work, strict):
    """Returns ([wait ms], busy count, whether the restore equals the source) for one tool,
    load and mode. `strict` (our tool): a restore that differs ends the bench."""
    d = tempfile.mkdtemp(dir=work)
    db, replica = os.path.join(d, "app.db"), os.path.join(d, "replica")
    app = sqlite3.connect(db, isolation_level=None)
    app.execute("PRAGMA journal_mode=WAL")
    app.execute("PRAGMA busy_timeout=5000")
    app.execute("PRAGMA synchronous=NORMAL")
    app.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    app.execute("CREATE TABLE load(id INTEGER PRIMARY KEY, v BLOB)")
    cfg = os.path.join(d, "cfg.yml")
    write_config(cfg, db, replica)
    log = open(os.path.join(d, "replicate.log"), "w")
    rep = subprocess.Popen([tool, "replicate", "-config", cfg], stdout=log, stderr=log,
                           start_new_session=True)
    writer = None
    try:
        wait_for("the first upload", lambda: has_ltx(replica))
        if rate:
            writer = subprocess.Popen([sys.executable, os.path.abspath(__file__), "_writer",
                                       db, str(rate)])
            time.sleep(1)
        waits, busy = [], 0
        blob = os.urandom(100)
        for _ in range(args.tries):
            for _ in range(args.rows):
                app.execute("INSERT INTO t(v) VALUES (?)", (blob,))
            time.sleep(args.pause_ms / 1000)
            t = time.perf_counter()
            row = app.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            waits.append((time.perf_counter() - t) * 1000)
            busy += row[0] != 0
            if os.environ.get("CKPT_BENCH_VERBOSE"):
                print(f"  {mode} {rate}: {waits[-1]:.1f} ms {row}", file=sys.stderr)
        if writer:
            writer.terminate()
            writer.wait()
            writer = None
        rep.send_signal(signal.SIGTERM)
        rep.wait(60)
        out = os.path.join(d, "restored.db")
        r = subprocess.run([tool, "restore", "-config", cfg, "-o", out, db],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{tool}: restore failed:\n{r.stderr[-2000:]}")
        equal = same_rows(db, out)
        if not equal and strict:
            sys.exit(f"{tool}: {mode} at {rate} tx/s: the restore differs from the source ({d})")
    finally:
        if writer:
            writer.kill()
            writer.wait()
        if rep.poll() is None:
            os.killpg(rep.pid, signal.SIGKILL)
            rep.wait()
        app.close()
        log.close()
    shutil.rmtree(d, ignore_errors=True)
    return waits, busy, equal


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "_writer":
        load_writer(sys.argv[2], float(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=DEFAULT_BIN, help="the tool to measure")
    ap.add_argument("--vs", help="a second tool measured in the same run")
    ap.add_argument("--rate", type=float, default=200, help="background tx/s under load")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--pause-ms", type=float, default=300)
    ap.add_argument("--tries", type=int, default=5)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--loads", default="idle,load", help="idle, load or both")
    args = ap.parse_args()
    tools = [os.path.abspath(args.bin)] + ([args.vs] if args.vs else [])
    for t in tools:
        if not os.access(t, os.X_OK):
            sys.exit(f"{t}: not an executable (cargo build --release -p sqlite-replicate?)")
    work = tempfile.mkdtemp(prefix="sr-bench-ckpt-")
    names = [os.path.basename(t) for t in tools]
    print("| load | mode | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(tools))
    try:
        for load in args.loads.split(","):
            rate = args.rate if load == "load" else 0
            label = f"{args.rate:g} tx/s" if rate else "idle"
            for mode in args.modes.split(","):
                cells = []
                for i, tool in enumerate(tools):
                    waits, busy, equal = run_mode(tool, mode, rate, args, work, i == 0)
                    cell = f"{statistics.median(waits):.1f} ms (max {max(waits):.0f})"
                    if busy:
                        cell += f", BUSY {busy} of {len(waits)}"
                    if not equal:
                        cell += ", restore differs from the source"
                    cells.append(cell)
                print(f"| {label} | {mode} | " + " | ".join(cells) + " |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
