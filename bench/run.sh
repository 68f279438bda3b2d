#!/usr/bin/env bash
# oxidp benchmark (issue 11): throughput, latency, non-2xx and RSS per endpoint with wrk
# over loopback, and each grant as a fraction of the machine's ceiling (RSA-2048
# signatures per second from `openssl speed`, argon2id verifications per second).
# Reports numbers; asserts nothing. Needs wrk and openssl (apt-get install wrk openssl).
#   bash bench/run.sh                 # 10 s per case
#   DURATION=5 CASES="discovery jwks" bash bench/run.sh
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1/bench bash bench/run.sh   # instead of a temporary SQLite file
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-9391}"
CASES="${CASES:-discovery jwks client_credentials refresh code userinfo introspection password}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
command -v openssl >/dev/null || { echo "openssl is missing: apt-get install openssl"; exit 1; }

# OXIDP_BIN: an oxidp binary to measure instead of building target/release/oxidp.
if [ -z "${OXIDP_BIN:-}" ]; then
  cargo build --release --quiet
  OXIDP_BIN=target/release/oxidp
fi
cargo build --release --quiet --example argon2_rate

work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
secret="bench-client-secret-0123456789abcdef"
base="http://127.0.0.1:$PORT"
cat > "$work/config.toml" <<TOML
[server]
bind = "127.0.0.1:$PORT"
issuer = "$base"
[database]
url = "${BENCH_DATABASE_URL:-sqlite://$work/oxidp.db}"
[keys]
dir = "$work/keys"
[email]
outbox_dir = "$work/outbox"
[log]
level = "warn"
[tokens]
authorization_code_seconds = 600
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
"$OXIDP_BIN" --config "$work/config.toml" serve &
server=$!
for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done

rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$server/status"; }
basic() { printf '%s:%s' "$1" "$secret" | base64 -w0; }
json() { python3 -c "import sys, json; print(json.load(sys.stdin)['$1'])"; }
password_tokens() {
  curl -fs -u "app:$secret" -d grant_type=password -d username=bench \
    -d "password=benchmark password" -d "scope=openid profile" "$base/token"
}

# --- wrk scripts ------------------------------------------------------------------
form_post() { # name body basic-user
  cat > "$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.body = "$2"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $(basic "$3")"
LUA
}
form_post client_credentials "grant_type=client_credentials&scope=api:read" m2m
form_post password "grant_type=password&username=bench&password=benchmark+password&scope=openid" app
access=$(password_tokens | json access_token)
form_post introspection "token=$access" rs
cat > "$work/userinfo.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $access"
LUA

# Refresh: every token is used once; each wrk thread keeps a queue of live tokens, takes
# one per request and puts back the successor from the answer (real rotation, not the
# grace path). 64 tokens, more than the connections, so the queue never runs dry.
: > "$work/refresh_tokens"
for _ in $(seq 64); do password_tokens | json refresh_token >> "$work/refresh_tokens"; done
cat > "$work/refresh.lua" <<LUA
local tokens, queue = {}, {}
for line in io.lines("$work/refresh_tokens") do tokens[#tokens + 1] = line end
local n = 0
function setup(thread) n = n + 1; thread:set("id", n) end
function init(args)
  for i = id, #tokens, 2 do queue[#queue + 1] = tokens[i] end
end
function request()
  local t = table.remove(queue, 1) or "exhausted"
  return wrk.format("POST", "/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic $(basic app)",
  }, "grant_type=refresh_token&refresh_token=" .. t)
end
function response(status, headers, body)
  local t = body:match('"refresh_token":"([^"]+)"')
  if t then queue[#queue + 1] = t end
end
LUA

# Code exchange: codes made beforehand through /authorize with a signed-in session (a
# first-party client: no consent), each redeemed once.
make_codes() {
  python3 - "$base" "$1" "$work/codes" <<'PY'
import http.cookiejar, re, sys, urllib.parse, urllib.request
base, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
jar = http.cookiejar.CookieJar()
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k): return None
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
def get(url):
    try: return opener.open(url)
    except urllib.error.HTTPError as e: return e
auth = base + "/authorize?" + urllib.parse.urlencode({"response_type": "code", "client_id": "app",
    "redirect_uri": "http://127.0.0.1/cb", "scope": "openid profile"})
login = get(auth).headers["Location"]
page = get(base + login).read().decode()
field = lambda n: re.search(r'name="%s" value="([^"]*)"' % n, page).group(1)
form = urllib.parse.urlencode({"username": "bench", "password": "benchmark password",
    "csrf_token": field("csrf_token"), "req": field("req")}).encode()
try: opener.open(base + "/login", form)
except urllib.error.HTTPError: pass
with open(out, "w") as f:
    for _ in range(count):
        loc = get(auth).headers["Location"]
        f.write(urllib.parse.parse_qs(urllib.parse.urlparse(loc).query)["code"][0] + "\n")
PY
}
cat > "$work/code.lua" <<LUA
local codes = {}
for line in io.lines("$work/codes") do codes[#codes + 1] = line end
local n, i, step = 0, 0, 2
function setup(thread) n = n + 1; thread:set("id", n) end
function init(args) i = id end
function request()
  local c = codes[i] or "exhausted"
  i = i + step
  return wrk.format("POST", "/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic $(basic app)",
  }, "grant_type=authorization_code&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&code=" .. c)
end
LUA

# --- ceilings ---------------------------------------------------------------------
cores=$(nproc)
rsa=$(openssl speed -multi "$cores" -seconds "$DURATION" rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {print $6}' | tail -1)
argon2=$(target/release/examples/argon2_rate "$DURATION" | awk '{print $2}')
echo "machine: $cores cores; RSA-2048 ceiling $rsa signatures/s; argon2id ceiling $argon2 verifications/s"
echo "idle RSS: $(rss) MiB"
printf '%-20s %10s %9s %9s %8s %9s %s\n' case "req/s" p50 p99 non2xx "RSS MiB" "fraction of ceiling"

rps() { echo "$1" | awk '/Requests\/sec/ {print $2}'; }
p50() { echo "$1" | awk '/ 50%/ {print $2}'; }
p99() { echo "$1" | awk '/ 99%/ {print $2}'; }
non2xx() { echo "$1" | awk '/Non-2xx/ { n = $5 } END { print n + 0 }'; }
for case in $CASES; do
  case $case in
    discovery) out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$base/.well-known/openid-configuration"); per="" ;;
    jwks) out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$base/jwks.json"); per="" ;;
    client_credentials) out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/$case.lua" "$base/token"); per="rsa 1" ;;
    refresh) out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/refresh.lua" "$base/token"); per="rsa 2" ;;
    code)
      # Enough codes for the run at 2,500 exchanges/s (the first run used 1,676/s); a
      # run that outpaces them shows up as non-2xx.
      make_codes $((DURATION * 2500))
      out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/code.lua" "$base/token"); per="rsa 2" ;;
    userinfo) out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/userinfo.lua" "$base/userinfo"); per="" ;;
    introspection) out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/introspection.lua" "$base/introspect"); per="" ;;
    password) out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/password.lua" "$base/token"); per="argon2 1" ;;
    *) echo "unknown case $case"; continue ;;
  esac
  r=$(rps "$out")
  fraction="-"
  case $per in
    "rsa "*) fraction=$(awk -v r="$r" -v c="$rsa" -v k="${per#rsa }" 'BEGIN { printf "%.2f of RSA (%s signature(s) each)", r * k / c, k }') ;;
    "argon2 "*) fraction=$(awk -v r="$r" -v c="$argon2" 'BEGIN { printf "%.2f of argon2", r / c }') ;;
  esac
  printf '%-20s %10s %9s %9s %8s %9s %s\n' "$case" "$r" "$(p50 "$out")" "$(p99 "$out")" "$(non2xx "$out")" "$(rss)" "$fraction"
done
