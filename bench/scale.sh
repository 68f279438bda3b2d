#!/usr/bin/env bash
# Scale benchmark (issue 11): refresh-token grant and introspection throughput on an empty
# PostgreSQL database against one seeded with 1 million users and 10 million refresh
# tokens (bench/seed.sh). Target: the seeded figure within 20 % of the empty one
# (seeded/empty >= 0.8). Reports numbers; asserts nothing. Needs wrk, openssl, psql.
#
#   bash bench/scale.sh                          # 10 s per case, 2 rounds
#   DURATION=3 USERS=10000 REFRESH_TOKENS=100000 bash bench/scale.sh   # a quick check
#   RESEED=1 bash bench/scale.sh                 # seed again even if already seeded
#
# Databases (PG_URL, default postgres://postgres@127.0.0.1:5432, needs the right to create
# databases): oxidp_bench_empty is dropped and created afresh before each of its rounds;
# oxidp_bench_seeded is created and seeded (USERS, REFRESH_TOKENS) only when it is not
# already seeded with those numbers (seed.sh records them as the database's comment) or
# RESEED is set, since seeding 10 million tokens takes a while. Before the rounds, the
# seeded database is purged as the server would (`oxidp purge`: the expired families
# seed.sh includes) so every round sees the same rows.
#
# Each run is bench/run.sh with CASES="refresh introspection", CEILINGS=0 and
# BENCH_DATABASE_URL, against empty and seeded in turn (empty, seeded, empty, seeded, …
# ROUNDS rounds, default 2), so a shared machine's drift hits both alike. run.sh starts a
# fresh oxidp each time with its own temporary signing key, so the seeded database's
# `signing_keys` rows from earlier runs are deleted first.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
USERS="${USERS:-1000000}"
REFRESH_TOKENS="${REFRESH_TOKENS:-10000000}"
ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10}"
EMPTY_DB="${EMPTY_DB:-oxidp_bench_empty}"
SEEDED_DB="${SEEDED_DB:-oxidp_bench_seeded}"
OXIDP_BIN="${OXIDP_BIN:-target/release/oxidp}"
CASES="refresh introspection"
command -v psql >/dev/null || { echo "psql is missing: apt-get install postgresql-client"; exit 1; }
[ -x "$OXIDP_BIN" ] || { echo "no oxidp binary at $OXIDP_BIN (build it with cargo build --release, or set OXIDP_BIN)"; exit 1; }

admin() { psql "$PG_URL/postgres" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
on() { local db=$1; shift; psql "$PG_URL/$db" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
recreate() { admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- the seeded database ------------------------------------------------------------
comment=$(admin -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$SEEDED_DB'")
if [ -n "${RESEED:-}" ] || [[ $comment != "oxidp bench seed: users=$USERS refresh_tokens=$REFRESH_TOKENS "* ]]; then
  echo "== seeding $SEEDED_DB: $USERS users, $REFRESH_TOKENS refresh tokens"
  recreate "$SEEDED_DB"
  OXIDP_BIN="$OXIDP_BIN" bash bench/seed.sh "$PG_URL/$SEEDED_DB" "$USERS" "$REFRESH_TOKENS"
else
  seeded_at=${comment##*seeded_at=}
  echo "== $SEEDED_DB is already seeded ($USERS users, $REFRESH_TOKENS refresh tokens, $(( ($(date +%s) - seeded_at) / 3600 )) hours ago); RESEED=1 to seed it again"
fi
cat > "$work/purge.toml" <<TOML
[database]
url = "$PG_URL/$SEEDED_DB"
[log]
level = "warn"
TOML
"$OXIDP_BIN" --config "$work/purge.toml" purge
on "$SEEDED_DB" -F ' ' -c "SELECT 'seeded database:', pg_size_pretty(pg_database_size(current_database())) || ';',
  (SELECT reltuples::bigint FROM pg_class WHERE oid = 'users'::regclass), 'users,',
  (SELECT reltuples::bigint FROM pg_class WHERE oid = 'refresh_tokens'::regclass), 'refresh tokens (estimates)'"

# --- interleaved runs ---------------------------------------------------------------
# results: "db round case req/s p50 p99 non2xx"
: > "$work/results"
for round in $(seq "$ROUNDS"); do
  for db in empty seeded; do
    if [ $db = empty ]; then
      name=$EMPTY_DB
      recreate "$name"
    else
      name=$SEEDED_DB
      on "$name" -c "DELETE FROM signing_keys"
    fi
    echo "== round $round/$ROUNDS: $db ($name)"
    CASES="$CASES" CEILINGS=0 PEER=0 DURATION="$DURATION" OXIDP_BIN="$OXIDP_BIN" \
      BENCH_DATABASE_URL="$PG_URL/$name" bash bench/run.sh | tee "$work/out"
    for case in $CASES; do
      line=$(awk -v c="$case" '$1 == c { print $2, $3, $4, $5 }' "$work/out")
      [ -n "$line" ] || { echo "run.sh printed no $case line"; exit 1; }
      echo "$db $round $case $line" >> "$work/results"
    done
  done
done

# --- summary ------------------------------------------------------------------------
echo
echo "scale: $USERS users / $REFRESH_TOKENS refresh tokens vs an empty database; $ROUNDS interleaved rounds of $DURATION s per case"
printf '%-14s %12s %12s %8s %11s %11s %8s  %s\n' case "empty req/s" "seeded req/s" ratio "empty p99" "seeded p99" non2xx "req/s per round (empty/seeded)"
for case in $CASES; do
  awk -v name="$case" '
    function ms(v,  n, u) { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
      return n * (u == "us" ? 0.001 : u == "s" ? 1000 : u == "m" ? 60000 : 1) }
    $3 == name { n[$1]++; r[$1] += $4; p[$1] += ms($6); e += $7
      if ($1 == "empty") rounds = rounds sep sprintf("%.0f", $4); else rounds = rounds "/" sprintf("%.0f", $4); sep = " " }
    END {
      a = r["empty"] / n["empty"]; b = r["seeded"] / n["seeded"]
      ratio = a > 0 ? b / a : 0
      printf "%-14s %12.2f %12.2f %8.2f %9.2fms %9.2fms %8d  %s  (target >= 0.80: %s)\n", name, a, b, ratio,
        p["empty"] / n["empty"], p["seeded"] / n["seeded"], e, rounds, ratio >= 0.8 ? "met" : "missed"
    }' "$work/results"
done
