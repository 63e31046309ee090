#!/usr/bin/env bash
# See replisnap work, in one command: a throwaway redis-server with a little data, the
# daemon attached to it with local storage (snapshots every 10 s into a temp directory),
# a snapshot appearing and checked, then everything stopped and removed.
#
#   scripts/try.sh            uses redis-server from $PATH, else installs redis-7.0 with
#                             scripts/install-test-servers.sh (into .test-servers/)
#   REDIS=/path/redis-server scripts/try.sh
#   KEEP=1 scripts/try.sh     leaves the temp directory (config, log, snapshots) behind
set -euo pipefail
cd "$(dirname "$0")/.."

redis="${REDIS:-$(command -v redis-server || true)}"
if [ -z "$redis" ]; then
    servers="${REPLISNAP_TEST_SERVERS:-$PWD/.test-servers}"
    if [ ! -x "$servers/redis-7.0/server" ]; then
        echo "try: no redis-server on PATH; installing redis-7.0 into $servers" >&2
        REPLISNAP_TEST_SERVERS="$servers" ONLY=redis-7.0 scripts/install-test-servers.sh >&2
    fi
    redis="$servers/redis-7.0/server"
fi

echo "try: building replisnap (release)" >&2
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/replisnap"

dir="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport="$(free_port)"
hport="$(free_port)"
cleanup() {
    [ -n "${dpid:-}" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
    [ -n "${rpid:-}" ] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null
    if [ -n "${KEEP:-}" ]; then echo "try: kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT

"$redis" --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --logfile "$dir/redis.log" &
rpid=$!
cli_bin="$(dirname "$redis")/redis-cli"
[ -x "$cli_bin" ] || cli_bin="$(command -v redis-cli || echo "${REPLISNAP_TEST_SERVERS:-$PWD/.test-servers}/bin/redis-cli")"
cli() { "$cli_bin" -p "$rport" "$@"; }
for _ in $(seq 50); do cli PING >/dev/null 2>&1 && break; sleep 0.1; done
cli SET greeting hello >/dev/null
cli HSET user:1 name ada lang rust >/dev/null
cli RPUSH queue a b c >/dev/null
cli ZADD board 10 alice 20 bob >/dev/null

cat >"$dir/replisnap.toml" <<EOF
[source]
address = "127.0.0.1:$rport"
[replica]
state_dir = "$dir/state"
[snapshot]
schedule = "*/10 * * * * *"
[storage]
kind = "local"
path = "$dir/snapshots"
[retention]
keep_last = 3
[http]
listen = "127.0.0.1:$hport"
EOF

echo "try: replisnap run --config $dir/replisnap.toml (log: $dir/replisnap.log)" >&2
"$bin" run --config "$dir/replisnap.toml" >"$dir/replisnap.log" 2>&1 &
dpid=$!
for _ in $(seq 300); do
    n="$("$bin" list --config "$dir/replisnap.toml" --json 2>/dev/null |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0)"
    [ "$n" != 0 ] && break
    kill -0 "$dpid" 2>/dev/null || { cat "$dir/replisnap.log" >&2; exit 1; }
    sleep 0.1
done
echo "try: a snapshot appeared:" >&2
"$bin" list --config "$dir/replisnap.toml"
id="$("$bin" list --config "$dir/replisnap.toml" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"
"$bin" verify --config "$dir/replisnap.toml" "$id"
echo "try: metrics at http://127.0.0.1:$hport/metrics, e.g.:" >&2
python3 -c "import urllib.request; print(''.join(l for l in urllib.request.urlopen('http://127.0.0.1:$hport/metrics').read().decode().splitlines(True) if l.startswith(('replisnap_snapshots_total', 'replisnap_master_link_up', 'replisnap_replication_lag_bytes', 'replisnap_dataset_keys'))))"
