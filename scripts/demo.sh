#!/usr/bin/env bash
# The main job, end to end, with no server: build, replicate a live database to a local
# file replica while a writer commits, stop, restore, and compare with the source.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin sqlite-replicate
bin="$PWD/target/release/sqlite-replicate"
dir=$(mktemp -d -t sqlite-replicate-demo-XXXX)
echo "working in $dir"

python3 - "$dir/app.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT)"); c.commit()
PY

"$bin" replicate "$dir/app.db" "file://$dir/replica" &
rep=$!
python3 - "$dir/app.db" <<'PY'
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
for i in range(500):
    c.execute("INSERT INTO notes(body) VALUES (?)", (f"note {i}",)); time.sleep(0.002)
PY
sleep 0.5
kill -TERM $rep; wait $rep
echo "replica files:"; find "$dir/replica" -name '*.ltx' | sort | sed "s|$dir/||"

"$bin" restore -integrity-check full -o "$dir/restored.db" "file://$dir/replica"
python3 - "$dir/app.db" "$dir/restored.db" <<'PY'
import sqlite3, sys
a = sqlite3.connect(sys.argv[1]).execute("SELECT count(*), max(id) FROM notes").fetchone()
b = sqlite3.connect(sys.argv[2]).execute("SELECT count(*), max(id) FROM notes").fetchone()
print("source:", a, "restored:", b)
sys.exit(0 if a == b else 1)
PY
echo "demo ok"
