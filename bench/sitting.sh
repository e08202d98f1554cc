#!/usr/bin/env bash
# The performance table of the README in one sitting: every row side by side with
# Litestream (when it is given), on the same machine, one after the other, nothing else
# running. About 40 minutes on a 2-core machine.
#
#   cargo build --release -p sqlite-replicate
#   bench/sitting.sh /path/to/litestream | tee sitting.txt   (the binary itself, not a
#   pyenv shim: a shim's start-up would count in its CPU)
#
# S3 rows replicate to a single-node Garage on loopback that bench.py starts for each row
# (`garage` on PATH or in ~/.cargo/bin). Rows that exercise a key Litestream does not have
# (`upload-rate`) and the 10,000-database row measure sqlite-replicate alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
vs=()
if [ "${1:-}" ]; then vs=(--vs "$1"); fi
b() { echo "== bench.py $*"; python3 bench/bench.py "$@"; }
started=$(date +%s)
uptime

# The data lost when the host dies (writer and replicator killed together), with the
# replicator's CPU up to the kill.
b lost --rate 200 --rounds 5 "${vs[@]}"
b lost --rate 200 --rounds 5 --garage "${vs[@]}"
b lost --rate 200 --rounds 5 --replica-yaml "sync-interval: 1s" "${vs[@]}"
b lost --rate 200 --rounds 5 --garage --replica-yaml "sync-interval: 1s" "${vs[@]}"
b lost --rate 200 --rounds 5 --garage --replica-yaml "upload-rate: 50"
b lost --rate 2 --rounds 5 --garage "${vs[@]}"
b lost --rate 200 --burst 20 --quiet-s 20 --rounds 3 --garage "${vs[@]}"
b lost --rate 0 --payload 4000 --rounds 5 --garage "${vs[@]}"

# Steady state: requests and CPU over 40 s that start 30 s after the writer.
b steady --rate 200 --runs 1 --garage "${vs[@]}"
b steady --rate 200 --runs 1 --garage --replica-yaml "upload-rate: 50"
b steady --rate 200 --runs 1 --garage --replica-yaml "sync-interval: 1s" "${vs[@]}"
b steady --rate 200 --runs 1 "${vs[@]}"
b steady --rate 200 --runs 1 --replica-yaml "sync-interval: 1s" "${vs[@]}"
b steady --rate 200 --burst 20 --quiet-s 20 --settle-s 25 --window-s 84 --runs 1 --garage "${vs[@]}"

# Many databases in one process (needs a descriptor limit of 20,000: ulimit -n 20000);
# idle measured two minutes after all replicate (the first minutes are start-up).
b many --dbs 10000 --settle-s 120 --idle-s 30 --garage

# An 8 GiB database (needs about 52 GB of free disk at its peak; TMPDIR chooses where):
# the replicator's peak RSS through its first snapshot and a compaction, and the restore
# against the copy floor, from a file replica and from S3.
b restore --size-mib 8192 --maintenance --runs 1
b restore --size-mib 8192 --maintenance --runs 1 --garage

echo "== sitting done in $(( $(date +%s) - started )) s"
uptime
