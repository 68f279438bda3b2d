#!/usr/bin/env bash
# Soak (issue 12): two oxidp instances sharing one PostgreSQL database, mixed traffic on
# loopback for DURATION seconds (default 600): sign-ins through the code flow, password
# grants, refreshes (10 % of them sent three times at once across both instances),
# client credentials, UserInfo, introspection, and 10 % bad requests. Reports 5xx and
# dropped requests, lost refresh families, RSS of each instance over time, and p50/p99
# per minute. Exit status 1 on any 5xx, dropped request or lost family.
#   bash bench/soak.sh                      # 10 minutes
#   DURATION=60 bash bench/soak.sh
#   SOAK_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres bash bench/soak.sh
#     (the server to use; a database oxidp_soak_<pid> is created there and dropped after)
#   THREADS=8 (load threads), OXIDP_BIN=path (skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-600}"
SOAK_DATABASE_URL="${SOAK_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PORTS="${PORTS:-9394 9395}"
if [ -z "${OXIDP_BIN:-}" ]; then
  cargo build --release --quiet
  OXIDP_BIN="${CARGO_TARGET_DIR:-target}/release/oxidp"
fi
command -v psql >/dev/null || { echo "psql is missing: apt-get install postgresql-client"; exit 1; }

work=$(mktemp -d)
pids=""
sampler=""
pgdb="oxidp_soak_$$"
cleanup() {
  for p in $pids $sampler; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$SOAK_DATABASE_URL" -c "DROP DATABASE IF EXISTS $pgdb WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql -q "$SOAK_DATABASE_URL" -c "CREATE DATABASE $pgdb" >/dev/null
db_url="${SOAK_DATABASE_URL%/*}/$pgdb"
secret="bench-client-secret-0123456789abcdef"
# Both instances: one issuer (as behind one proxy), one database, one key directory.
issuer="http://127.0.0.1:${PORTS%% *}"
bases=""
for port in $PORTS; do
  cat > "$work/config-$port.toml" <<TOML
[server]
bind = "127.0.0.1:$port"
issuer = "$issuer"
[database]
url = "$db_url"
[keys]
dir = "$work/keys"
[email]
outbox_dir = "$work/outbox"
[log]
level = "warn"
[ratelimit]
backend = "database"
password_failures_per_minute_per_ip = 100000
requests_per_minute_per_ip = 100000
[[users]]
username = "bench"
email = "bench@example.com"
password = "benchmark password"
[[clients]]
id = "app"
secret = "$secret"
first_party = true
redirect_uris = ["http://127.0.0.1/cb"]
grant_types = ["authorization_code", "refresh_token", "password"]
[[clients]]
id = "m2m"
secret = "$secret"
grant_types = ["client_credentials"]
scopes = ["api:read"]
[[clients]]
id = "rs"
secret = "$secret"
grant_types = ["client_credentials"]
introspect_any = true
TOML
  # The first instance creates the schema and the key; the second starts after it.
  "$OXIDP_BIN" --config "$work/config-$port.toml" serve 2>> "$work/server-$port.log" &
  pids="$pids $!"
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { echo "instance on $port did not start"; cat "$work/server-$port.log"; exit 1; }
  bases="${bases:+$bases,}http://127.0.0.1:$port"
done

# RSS of each instance every 10 s.
(
  while :; do
    line="$(date +%s)"
    for p in $pids; do line="$line $(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$p/status" 2>/dev/null || echo -)"; done
    echo "$line" >> "$work/rss"
    sleep 10
  done
) &
sampler=$!

echo "soak: $DURATION s, instances $bases, database $pgdb, $(nproc) cores"
status=0
python3 bench/reliability.py soak "$DURATION" "$bases" "$work" || status=1
kill "$sampler" 2>/dev/null || true
sampler=""
for p in $pids; do kill -0 "$p" 2>/dev/null || { echo "instance $p died"; status=1; }; done

echo "RSS MiB per instance (every 10 s; first, max, last, and the series):"
awk -v t0="$(head -1 "$work/rss" | cut -d' ' -f1)" '
  { for (i = 2; i <= NF; i++) { v[i] = v[i] " " $i; if (NR == 1) f[i] = $i; if ($i > m[i]) m[i] = $i; l[i] = $i } n = NF }
  END { for (i = 2; i <= n; i++) printf "  instance %d: first %s, max %s, last %s |%s\n", i - 1, f[i], m[i], l[i], v[i] }' "$work/rss"
for port in $PORTS; do
  echo "server log $port: $(grep -c . "$work/server-$port.log" || true) lines (warn and above)"
  grep -v '^$' "$work/server-$port.log" | cut -c1-160 | sed -E 's/[0-9]{4}-[0-9-]+T[0-9:.]+Z//' | sort | uniq -c | sort -rn | head -5 || true
done
exit "$status"
