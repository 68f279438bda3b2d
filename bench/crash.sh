#!/usr/bin/env bash
# Crash safety (issue 12): kill -9 oxidp in the middle of a load of sign-ins (code flow),
# code exchanges, password grants and refreshes, restart it on the same database and keys,
# and check that nothing was lost or half-written:
#   - the database: integrity and foreign keys (SQLite), no used code without its grant,
#     no refresh family forked (two live tokens) or dead (no live token, not revoked),
#     no refresh token or session link pointing at a session that does not exist;
#   - the keys: same files, same bytes, same JWKS;
#   - every ID and access token answered before the kill verifies against the JWKS;
#   - every refresh family the load held goes on refreshing (the last token each client
#     got: unused, or used by a rotation whose answer the kill swallowed, which the
#     grace window answers again).
# Several rounds on the same database, each killing at a random moment.
#   bash bench/crash.sh                          # 5 rounds, SQLite
#   ROUNDS=2 LOAD=4 bash bench/crash.sh
#   CRASH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres bash bench/crash.sh
#     (creates and drops a database oxidp_crash_<pid> on that server)
#   OXIDP_BIN=target/release/oxidp bash bench/crash.sh   # skip the build
# Exit status 1 when any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-5}"
LOAD="${LOAD:-6}"           # seconds of load per round; the kill comes in its middle third
PORT="${PORT:-9393}"
if [ -z "${OXIDP_BIN:-}" ]; then
  cargo build --release --quiet
  OXIDP_BIN="${CARGO_TARGET_DIR:-target}/release/oxidp"
fi
command -v sqlite3 >/dev/null || { echo "sqlite3 is missing: apt-get install sqlite3"; exit 1; }

work=$(mktemp -d)
server=""
pgdb=""
cleanup() {
  [ -z "$server" ] || kill -9 "$server" 2>/dev/null || true
  if [ -n "$pgdb" ]; then psql -q "$CRASH_DATABASE_URL" -c "DROP DATABASE IF EXISTS $pgdb WITH (FORCE)" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
base="http://127.0.0.1:$PORT"
if [ -n "${CRASH_DATABASE_URL:-}" ]; then
  pgdb="oxidp_crash_$$"
  psql -q "$CRASH_DATABASE_URL" -c "CREATE DATABASE $pgdb" >/dev/null
  db_url="${CRASH_DATABASE_URL%/*}/$pgdb"
  sql() { psql -qtA "$db_url" -c "$1"; }
else
  db_url="sqlite://$work/oxidp.db"
  sql() { sqlite3 "$work/oxidp.db" "$1"; }
fi
secret="bench-client-secret-0123456789abcdef"
cat > "$work/config.toml" <<TOML
[server]
bind = "127.0.0.1:$PORT"
issuer = "$base"
[database]
url = "$db_url"
[keys]
dir = "$work/keys"
[email]
outbox_dir = "$work/outbox"
[log]
level = "warn"
[tokens]
# Long enough for the restart and the checks: a rotation whose answer the kill swallowed
# is answered again inside this window (DESIGN.md "Refresh races").
refresh_grace_seconds = 120
[ratelimit]
password_failures_per_minute_per_ip = 100000
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
TOML

start() {
  "$OXIDP_BIN" --config "$work/config.toml" serve 2>> "$work/server.log" &
  server=$!
  for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "oxidp did not start:"; tail -5 "$work/server.log"; exit 1
}
keys_digest() { (cd "$work/keys" && sha256sum ./* | sort); }

# One query per invariant; each must return 0.
checks=(
  "used codes without their grant|SELECT COUNT(*) FROM authorization_codes WHERE used_at IS NOT NULL AND grant_id IS NULL"
  "code grants without a refresh family|SELECT COUNT(*) FROM authorization_codes c WHERE c.grant_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.family_id = c.grant_id) AND NOT EXISTS (SELECT 1 FROM revocations v WHERE v.id = c.grant_id)"
  "forked families (two live tokens)|SELECT COUNT(*) FROM (SELECT family_id FROM refresh_tokens WHERE used_at IS NULL AND revoked_at IS NULL GROUP BY family_id HAVING COUNT(*) > 1) f"
  "dead families (no live token, not revoked)|SELECT COUNT(*) FROM (SELECT family_id FROM refresh_tokens GROUP BY family_id HAVING SUM(CASE WHEN used_at IS NULL AND revoked_at IS NULL THEN 1 ELSE 0 END) = 0 AND SUM(CASE WHEN revoked_at IS NOT NULL THEN 1 ELSE 0 END) = 0) f"
  "used refresh tokens without a sealed successor|SELECT COUNT(*) FROM refresh_tokens WHERE used_at IS NOT NULL AND revoked_at IS NULL AND successor_sealed IS NULL"
  "refresh tokens of a missing session|SELECT COUNT(*) FROM refresh_tokens r WHERE r.session_sid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM browser_sessions s WHERE s.sid = r.session_sid)"
  "session links of a missing session|SELECT COUNT(*) FROM session_clients c WHERE NOT EXISTS (SELECT 1 FROM browser_sessions s WHERE s.sid = c.sid)"
  "signing keys|SELECT CASE WHEN COUNT(*) >= 1 THEN 0 ELSE 1 END FROM signing_keys WHERE retired_at IS NULL"
)

failed=0
start
jwks_before=$(curl -fs "$base/jwks.json")
keys_before=$(keys_digest)
printf '%-6s %9s %9s %11s %9s %9s %8s  %s\n' round "kill at" families "tokens ok" "failed" alive lost "database checks"
for round in $(seq "$ROUNDS"); do
  out="$work/round$round"; mkdir -p "$out"
  python3 bench/reliability.py crash-load "$LOAD" "$base" "$out" > "$out/load.json" &
  load=$!
  kill_at=$(awk -v l="$LOAD" -v r="$RANDOM" 'BEGIN { printf "%.2f", l / 3 + (r / 32768) * l / 3 }')
  sleep "$kill_at"
  kill -9 "$server"; wait "$server" 2>/dev/null || true
  server=""
  wait "$load"
  [ "${CRASH_DATABASE_URL:-}" ] || sqlite_ok=$(sqlite3 "$work/oxidp.db" "PRAGMA integrity_check; PRAGMA foreign_key_check;" | tr '\n' ' ')
  start
  db=""
  if [ -z "${CRASH_DATABASE_URL:-}" ] && [ "$sqlite_ok" != "ok " ]; then db="integrity: $sqlite_ok; "; failed=1; fi
  for check in "${checks[@]}"; do
    n=$(sql "${check#*|}")
    if [ "$n" != 0 ]; then db="$db${check%%|*}: $n; "; failed=1; fi
  done
  [ "$(keys_digest)" = "$keys_before" ] || { db="${db}key files changed; "; failed=1; }
  [ "$(curl -fs "$base/jwks.json")" = "$jwks_before" ] || { db="${db}JWKS changed; "; failed=1; }
  check=$(python3 bench/reliability.py crash-check "$base" "$out") || failed=1
  fams=$(python3 -c "import json,sys; print(json.load(open('$out/families.json')).__len__())")
  python3 - "$check" "$round" "$kill_at" "$fams" "${db:-all hold}" <<'PY'
import json, sys
c = json.loads(sys.argv[1])
print(f"{sys.argv[2]:<6} {sys.argv[3]:>8}s {sys.argv[4]:>9} {c['tokens_verified']:>11} {c['tokens_failed']:>9} "
      f"{c['families_alive']:>9} {c['families_lost']:>8}  {sys.argv[5]}")
for l in c["lost"]:
    print("   lost:", l)
PY
  echo "   load: $(cat "$out/load.json")"
done
echo "server log (warnings and errors over all rounds): $(grep -c . "$work/server.log" || true) lines"
grep -v "^$" "$work/server.log" | cut -c1-200 | sort | uniq -c | sort -rn | head -5 || true
exit "$failed"
