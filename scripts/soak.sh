#!/usr/bin/env bash
# Soak test (not part of CI): replicate a database written at varied rates for a long time,
# restore it periodically and verify every restore, then report the figures.
#
# Usage: scripts/soak.sh [SECONDS] [WORKDIR]     (default: 3 hours, a fresh temp dir)
#
# The writer commits transactions of a deterministic model (transaction k inserts row k and
# sets u = k on row k/2; every 50th rewrites a tenth of the blobs), cycling through rates of
# 2, 50, 300 tx/s and bursts with no pause, with application checkpoints of every mode now and
# then. Every 20 s the replica is restored and must be exactly the model after some N <= the
# committed count (a consistent committed prefix); every 5th check pauses the writer, waits
# for the replica to reach the source, and compares every row's content with the source.
# Housekeeping runs on short intervals (compaction 10 s/1 m, snapshots every 5 m, retention)
# so a soak of hours goes through many of each.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10800}"
work="${2:-$(mktemp -d -t sr-soak-XXXXXX)}"
mkdir -p "$work"
cargo build --release --quiet --bin sqlite-replicate
bin="$PWD/target/release/sqlite-replicate"
echo "== soak for ${secs}s in $work"

cat >"$work/sr.yml" <<EOF
levels:
  - interval: 10s
  - interval: 1m
snapshot:
  interval: 5m
  retention: 10m
l0-retention: 30s
dbs:
  - path: $work/app.db
    checkpoint-interval: 30s
    replicas:
      - type: file
        path: $work/replica
EOF

python3 - "$bin" "$work" "$secs" <<'PY'
import hashlib, os, random, sqlite3, subprocess, sys, threading, time

bin_, work, secs = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = os.path.join(work, "app.db")
url = "file://" + os.path.join(work, "replica")

def blob_len(k): return 60 + (k * 7919) % 2500

c = sqlite3.connect(db, isolation_level=None, timeout=10)
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE IF NOT EXISTS c(n INTEGER PRIMARY KEY, u INTEGER, v BLOB)")
committed = c.execute("SELECT count(*) FROM c").fetchone()[0]

log = open(os.path.join(work, "replicate.log"), "w")
rep = subprocess.Popen([bin_, "replicate", "-config", os.path.join(work, "sr.yml")],
                       stdout=log, stderr=subprocess.STDOUT)

lock = threading.Lock()      # held by the writer per transaction; the verifier takes it to pause
stop = False
rates = [(2, "2/s"), (50, "50/s"), (300, "300/s"), (0, "burst")]
phase_tx = {name: 0 for _, name in rates}
ckpts = 0

def writer():
    global committed, ckpts
    rng = random.Random(1)
    w = sqlite3.connect(db, isolation_level=None, timeout=10)
    start = time.time()
    while not stop:
        rate, name = rates[int((time.time() - start) // 30) % len(rates)]
        with lock:
            k = committed + 1
            w.execute("BEGIN")
            w.execute("INSERT INTO c(n, u, v) VALUES (?, NULL, randomblob(?))", (k, blob_len(k)))
            w.execute("UPDATE c SET u = ? WHERE n = ? / 2", (k, k))
            if k % 50 == 0:
                w.execute("UPDATE c SET v = randomblob(length(v)) WHERE n % 10 = ? % 10", (k,))
            w.execute("COMMIT")
            committed = k
            phase_tx[name] += 1
            if rng.randrange(500) == 0:
                mode = rng.choice(["PASSIVE", "FULL", "RESTART", "TRUNCATE"])
                w.execute("PRAGMA busy_timeout=300")
                w.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
                w.execute("PRAGMA busy_timeout=10000")
                ckpts += 1
        if rate:
            time.sleep(1.0 / rate)

def model_prefix(path):
    r = sqlite3.connect(path)
    rows = r.execute("SELECT n, u, length(v) FROM c ORDER BY n").fetchall()
    n_max = len(rows)
    for i, (n, u, ln) in enumerate(rows):
        assert n == i + 1, f"{path}: row {i+1} missing"
        want_u = next((k for k in (2 * n + 1, 2 * n) if k <= n_max), None)
        assert u == want_u, f"{path}: row {n} u={u}, want {want_u} for prefix {n_max}"
        assert ln == blob_len(n), f"{path}: row {n} length"
    ok = r.execute("PRAGMA integrity_check").fetchone()[0]
    assert ok == "ok", f"{path}: integrity {ok}"
    r.close()
    return n_max

def content_hash(path):
    r = sqlite3.connect(path)
    h = hashlib.sha256()
    for row in r.execute("SELECT n, u, v FROM c ORDER BY n"):
        h.update(repr(row).encode())
    r.close()
    return h.hexdigest()

def restore(out):
    t = time.time()
    subprocess.run([bin_, "restore", "-o", out, url], check=True, capture_output=True)
    return time.time() - t

def proc_stats(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().split(")")[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu

def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try: total += os.path.getsize(os.path.join(root, f))
            except FileNotFoundError: pass
    return total

t = threading.Thread(target=writer); t.start()
start = time.time()
checks = full = 0
restore_s, lags, max_rss, last_cpu = [], [], 0, 0.0
try:
    while time.time() - start < secs:
        time.sleep(min(20, max(0, secs - (time.time() - start))))
        rss, cpu = proc_stats(rep.pid); max_rss = max(max_rss, rss); last_cpu = cpu
        out = os.path.join(work, "check.db")
        before = committed
        restore_s.append(restore(out))
        n = model_prefix(out)
        assert n <= committed, f"restore has {n} transactions, {committed} committed"
        lags.append(before - n)
        os.remove(out)
        checks += 1
        if checks % 5 == 0:
            with lock:            # writer paused: the replica must reach the source exactly
                deadline = time.time() + 60
                while True:
                    restore(out)
                    n = model_prefix(out)
                    if n == committed or time.time() > deadline:
                        break
                    os.remove(out); time.sleep(0.5)
                assert n == committed, f"replica stuck at {n} of {committed}"
                assert content_hash(out) == content_hash(db), "restore differs from the source"
                os.remove(out)
                full += 1
        print(f"[{time.time()-start:7.0f}s] tx {committed}  restore {restore_s[-1]:.2f}s  lag {lags[-1]} tx  "
              f"rss {rss//1024} MiB  cpu {cpu:.1f}s  replica {du(os.path.join(work,'replica'))>>20} MiB", flush=True)
finally:
    stop = True; t.join()
rep.terminate(); code = rep.wait(timeout=120)
assert code == 0, f"replicator exit {code}"
out = os.path.join(work, "final.db")
restore(out)
assert model_prefix(out) == committed and content_hash(out) == content_hash(db), "final restore"
elapsed = time.time() - start
print("== soak figures")
print(f"duration            {elapsed:.0f} s")
print(f"transactions        {committed} ({committed/elapsed:.1f}/s average); per phase {phase_tx}")
print(f"app checkpoints     {ckpts}")
print(f"restores verified   {checks} prefix checks + {full} exact comparisons + 1 final")
print(f"restore time        avg {sum(restore_s)/len(restore_s):.2f} s, max {max(restore_s):.2f} s" if restore_s else "")
print(f"lag at restore      avg {sum(lags)/len(lags):.1f} tx, max {max(lags)} tx" if lags else "")
print(f"replicator          max RSS {max_rss//1024} MiB, CPU {last_cpu:.1f} s ({100*last_cpu/elapsed:.1f}% of one core)")
print(f"database            {os.path.getsize(db)>>20} MiB; replica {du(os.path.join(work,'replica'))>>20} MiB; "
      f"local meta {du(os.path.join(work,'.app.db-sqlite-replicate'))>>10} KiB")
print("== soak ok")
PY
