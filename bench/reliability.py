#!/usr/bin/env python3
"""Load driver and checker for bench/crash.sh and bench/soak.sh (issue 12). Standard
library only. Clients and users are the ones the two scripts put in their config:
client "app" (first party: code, refresh_token, password), "m2m" (client_credentials),
"rs" (introspect_any), user "bench".

  reliability.py crash-load SECONDS BASE OUT_DIR     # logins, code exchanges, refreshes
  reliability.py crash-check BASE OUT_DIR            # after the restart
  reliability.py soak SECONDS BASE1,BASE2 OUT_DIR    # mixed traffic, report
"""
import base64, hashlib, http.client, json, os, random, re, sys, threading, time
import urllib.parse

SECRET = "bench-client-secret-0123456789abcdef"
USER, PASSWORD = "bench", "benchmark password"
REDIRECT = "http://127.0.0.1/cb"


def basic(client):
    return "Basic " + base64.b64encode(f"{client}:{SECRET}".encode()).decode()


class Http:
    """One keep-alive connection per (thread, server); reconnects after errors."""

    def __init__(self):
        self.conns = {}

    def request(self, base, method, path, body=None, headers=None, timeout=30):
        host = urllib.parse.urlparse(base).netloc
        headers = dict(headers or {})
        if isinstance(body, dict):
            body = urllib.parse.urlencode(body)
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        for attempt in (0, 1):
            conn = self.conns.get(host)
            if conn is None:
                conn = http.client.HTTPConnection(host, timeout=timeout)
                self.conns[host] = conn
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self.conns.pop(host, None)
                return resp.status, resp, data
            except (http.client.HTTPException, OSError) as e:
                conn.close()
                self.conns.pop(host, None)
                # A kept-alive connection the server closed: one retry on a new one.
                if attempt == 1 or isinstance(e, (ConnectionRefusedError, TimeoutError)):
                    raise


def token(h, base, form, client="app"):
    status, _, data = h.request(base, "POST", "/token", form, {"Authorization": basic(client)})
    try:
        return status, json.loads(data)
    except ValueError:
        return status, {"raw": data[:200].decode(errors="replace")}


def password_grant(h, base, scope="openid profile"):
    return token(h, base, {"grant_type": "password", "username": USER, "password": PASSWORD, "scope": scope})


def refresh(h, base, rt):
    return token(h, base, {"grant_type": "refresh_token", "refresh_token": rt})


def login_and_code(h, base):
    """A browser: /authorize, the login form, the redirect with a code; then the exchange."""
    cookies = {}

    def req(method, path, body=None):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
        status, resp, data = h.request(base, method, path, body, headers)
        for header, value in resp.getheaders():
            if header.lower() == "set-cookie":
                k, _, v = value.split(";", 1)[0].partition("=")
                cookies[k.strip()] = v.strip()
        return status, resp, data

    q = urllib.parse.urlencode({"response_type": "code", "client_id": "app", "redirect_uri": REDIRECT,
                                "scope": "openid profile", "state": "s", "nonce": str(random.random())})
    status, resp, _ = req("GET", "/authorize?" + q)
    if status != 303:
        return status, {"step": "authorize"}
    location = resp.getheader("Location")
    if location.startswith("/login"):
        status, _, page = req("GET", location)
        if status != 200:
            return status, {"step": "login page"}
        page = page.decode()
        field = lambda n: re.search(r'name="%s" value="([^"]*)"' % n, page).group(1)
        status, resp, _ = req("POST", "/login", {"username": USER, "password": PASSWORD,
                                                  "csrf_token": field("csrf_token"), "req": field("req")})
        if status != 303:
            return status, {"step": "login"}
        location = resp.getheader("Location")
        # First party: no consent page; the login answers with the redirect to the client.
        while location.startswith("/"):
            status, resp, _ = req("GET", location)
            if status != 303:
                return status, {"step": location}
            location = resp.getheader("Location")
    code = urllib.parse.parse_qs(urllib.parse.urlparse(location).query).get("code", [None])[0]
    if not code:
        return 0, {"step": "no code", "location": location}
    return token(h, base, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT})


# --- JWS verification (RS256, PKCS#1 v1.5) without third-party modules --------------
def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify_rs256(jwt, jwks):
    head, payload, sig = jwt.split(".")
    kid = json.loads(b64d(head)).get("kid")
    key = next((k for k in jwks["keys"] if k["kid"] == kid), None)
    if key is None:
        return False
    n = int.from_bytes(b64d(key["n"]), "big")
    e = int.from_bytes(b64d(key["e"]), "big")
    k = (n.bit_length() + 7) // 8
    em = pow(int.from_bytes(b64d(sig), "big"), e, n).to_bytes(k, "big")
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
    digest = hashlib.sha256(f"{head}.{payload}".encode()).digest()
    expected = b"\x00\x01" + b"\xff" * (k - 3 - len(digest_info) - len(digest)) + b"\x00" + digest_info + digest
    return em == expected


# --- crash ------------------------------------------------------------------------------
def crash_load(seconds, base, out):
    """Threads sign in (code flow), exchange codes, use password grants and refresh their
    families; every token received is logged (one JSON line, flushed) before the next
    request, so what the server answered before the kill is on disk."""
    log = open(os.path.join(out, "tokens.jsonl"), "a", buffering=1)
    lock = threading.Lock()
    families = {}  # family -> last refresh token received
    errors = {"connection": 0, "5xx": 0, "other": 0}
    deadline = time.time() + seconds

    def record(fam, body):
        with lock:
            log.write(json.dumps({"family": fam, "id_token": body.get("id_token"),
                                  "access_token": body.get("access_token")}) + "\n")
            families[fam] = body["refresh_token"]

    def worker(n):
        h = Http()
        mine = []
        i = 0
        while time.time() < deadline:
            i += 1
            try:
                if not mine or i % 5 == 0:
                    status, body = login_and_code(h, base) if i % 2 else password_grant(h, base)
                    if status == 200:
                        fam = f"{n}-{i}"
                        mine.append(fam)
                        record(fam, body)
                else:
                    fam = random.choice(mine)
                    status, body = refresh(h, base, families[fam])
                    if status == 200:
                        record(fam, body)
                if status >= 500:
                    errors["5xx"] += 1
                elif status != 200:
                    errors["other"] += 1
            except (OSError, http.client.HTTPException):
                errors["connection"] += 1
                time.sleep(0.05)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(int(os.environ.get("THREADS", "6")))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(os.path.join(out, "families.json"), "w") as f:
        json.dump(families, f)
    print(json.dumps({"families": len(families), "errors": errors}))


def crash_check(base, out):
    h = Http()
    _, _, data = h.request(base, "GET", "/jwks.json")
    jwks = json.loads(data)
    verified = failed = 0
    with open(os.path.join(out, "tokens.jsonl")) as f:
        for line in f:
            entry = json.loads(line)
            for t in (entry["id_token"], entry["access_token"]):
                if t:
                    if verify_rs256(t, jwks):
                        verified += 1
                    else:
                        failed += 1
    with open(os.path.join(out, "families.json")) as f:
        families = json.load(f)
    alive, lost = 0, []
    for fam, rt in families.items():
        # The last token the client got: unused (the kill came first) or used by a
        # rotation whose answer was lost, which the grace window answers again.
        status, body = refresh(h, base, rt)
        if status == 200:
            alive += 1
            # And the family goes on from the new token.
            status, body = refresh(h, base, body["refresh_token"])
            if status != 200:
                lost.append((fam, status, body))
        else:
            lost.append((fam, status, body))
    print(json.dumps({"tokens_verified": verified, "tokens_failed": failed,
                      "families_alive": alive, "families_lost": len(lost), "lost": lost[:5]}))
    return 0 if failed == 0 and not lost else 1


# --- soak -------------------------------------------------------------------------------
BAD = [
    ("POST", "/token", {"grant_type": "client_credentials"}, {"Authorization": "Basic " + base64.b64encode(b"m2m:wrong").decode()}),
    ("POST", "/token", {"grant_type": "refresh_token", "refresh_token": "garbage"}, None),
    ("POST", "/token", {"grant_type": "magic"}, None),
    ("POST", "/token", "grant_type=pass\xff\x00&&&==", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("POST", "/token", '{"grant_type":"password"}', {"Content-Type": "application/json"}),
    ("GET", "/userinfo", None, {"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."}),
    ("GET", "/authorize?client_id=nobody&redirect_uri=x", None, None),
    ("POST", "/introspect", {"token": "x"}, None),
    ("GET", "/api/v1/admin/users", None, {"Authorization": "Bearer x"}),
    ("POST", "/login", {"username": "x", "password": "y"}, None),
    ("DELETE", "/jwks.json", None, None),
]


def soak(seconds, bases, out):
    lock = threading.Lock()
    records = []  # (t, kind, status, ms)
    families = []  # [token, lock, lost]
    lost = []
    dup_checks = {"runs": 0, "forked": 0}
    start = time.time()
    deadline = start + seconds

    def rec(kind, status, ms):
        with lock:
            records.append((time.time() - start, kind, status, ms))

    def timed(kind, f, *a):
        t = time.time()
        try:
            status, body = f(*a)
        except (OSError, http.client.HTTPException):
            status, body = 0, {}
        rec(kind, status, (time.time() - t) * 1000)
        return status, body

    def new_family(h):
        base = random.choice(bases)
        kind, f = random.choice([("login+code", login_and_code), ("password", password_grant)])
        status, body = timed(kind, f, h, base)
        if status == 200:
            with lock:
                families.append({"token": body["refresh_token"], "lock": threading.Lock(), "lost": False})
        return body.get("access_token")

    def do_refresh(h, fam, duplicates):
        if not fam["lock"].acquire(blocking=False):
            return None
        try:
            if fam["lost"]:
                return None
            rt = fam["token"]
            if duplicates:
                # The same token at once on both instances (a browser's tabs, next-auth):
                # every answer is 200 with the identical successor (DESIGN.md "Refresh races").
                results = [None] * 3
                def one(k):
                    results[k] = timed("refresh (dup)", refresh, Http(), bases[k % len(bases)], rt)
                ts = [threading.Thread(target=one, args=(k,)) for k in range(3)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                with lock:
                    dup_checks["runs"] += 1
                new = {b.get("refresh_token") for s, b in results if s == 200}
                if any(s != 200 for s, _ in results) or len(new) != 1:
                    with lock:
                        dup_checks["forked"] += 1
                        lost.append(("dup", [(s, b.get("error")) for s, b in results]))
                    fam["lost"] = any(s != 200 for s, _ in results) and not new
                    if new:
                        fam["token"] = sorted(t for t in new if t)[0]
                    return None
                fam["token"] = new.pop()
                return results[0][1].get("access_token")
            status, body = timed("refresh", refresh, h, random.choice(bases), rt)
            if status == 200:
                fam["token"] = body["refresh_token"]
                return body.get("access_token")
            if status == 400:
                fam["lost"] = True
                with lock:
                    lost.append(("refresh", status, body.get("error"), body.get("error_description")))
            return None
        finally:
            fam["lock"].release()

    def worker(n):
        h = Http()
        access = None
        while time.time() < deadline:
            r = random.random()
            base = random.choice(bases)
            if r < 0.10:
                m, p, b, hd = random.choice(BAD)
                t = time.time()
                try:
                    status, _, _ = h.request(base, m, p, b, hd)
                except (OSError, http.client.HTTPException):
                    status = 0
                rec("bad", status, (time.time() - t) * 1000)
            elif r < 0.16 or not families or access is None:
                access = new_family(h) or access
            elif r < 0.46:
                with lock:
                    fam = random.choice(families)
                access = do_refresh(h, fam, duplicates=random.random() < 0.1) or access
            elif r < 0.66:
                timed("client_credentials", token, h, base, {"grant_type": "client_credentials", "scope": "api:read"}, "m2m")
            elif r < 0.83:
                def userinfo():
                    s, _, d = h.request(base, "GET", "/userinfo", None, {"Authorization": "Bearer " + access})
                    return s, {}
                timed("userinfo", userinfo)
            else:
                timed("introspection", token_introspect, h, base, access)

    def token_introspect(h, base, access):
        s, _, d = h.request(base, "POST", "/introspect", {"token": access}, {"Authorization": basic("rs")})
        return s, json.loads(d) if s == 200 else {}

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(int(os.environ.get("THREADS", "8")))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Every family not deliberately broken must still refresh at the end.
    h = Http()
    final_lost = 0
    for fam in families:
        if fam["lost"]:
            continue
        status, _ = refresh(h, random.choice(bases), fam["token"])
        if status != 200:
            final_lost += 1
    statuses = {}
    for _, kind, status, _ in records:
        statuses.setdefault(kind, {}).setdefault(status, 0)
        statuses[kind][status] += 1
    five = sum(1 for r in records if r[2] >= 500)
    dropped = sum(1 for r in records if r[2] == 0)
    print(f"requests: {len(records)} in {seconds} s ({len(records) / seconds:.0f}/s); 5xx: {five}; "
          f"no answer: {dropped}")
    print(f"refresh families: {len(families)}; lost during the run: {sum(f['lost'] for f in families)}; "
          f"failing at the end: {final_lost}; concurrent-duplicate runs: {dup_checks['runs']}, "
          f"of which not identical/200: {dup_checks['forked']}")
    for item in lost[:5]:
        print("  lost:", item)
    print("status by kind:")
    for kind in sorted(statuses):
        print(f"  {kind:20} " + " ".join(f"{s}:{n}" for s, n in sorted(statuses[kind].items())))
    print("minute  requests  p50 ms  p99 ms  max ms  5xx   (good requests only; bad ones are 10 %)")
    by_minute = {}
    for t, kind, status, ms in records:
        by_minute.setdefault(int(t // 60), []).append((kind, status, ms))
    for minute in sorted(by_minute):
        rows = by_minute[minute]
        lat = sorted(ms for kind, _, ms in rows if kind != "bad")
        pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0
        print(f"{minute:6d} {len(rows):9d} {pct(0.5):7.1f} {pct(0.99):7.1f} {lat[-1] if lat else 0:7.1f} "
              f"{sum(1 for _, s, _ in rows if s >= 500):4d}")
    return 0 if five == 0 and dropped == 0 and final_lost == 0 and not lost else 1


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "crash-load":
        crash_load(float(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif mode == "crash-check":
        sys.exit(crash_check(sys.argv[2], sys.argv[3]))
    elif mode == "soak":
        sys.exit(soak(int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]))
    else:
        sys.exit(__doc__)
