#!/usr/bin/env python3
"""JSON logs, checked on the real binary with secrets in play (scripts/check-deploy.sh runs it).

`scripts/check-logs.py <server binary> <site dir>`: starts the binary (built with the `demo`
feature) with LOG_FORMAT=json, the YClients sandbox and the WhatsApp simulator; walks a salon
through the real flow — YClients' redirect with signed user data, the onboarding page, a QR scan on
the simulated phone, the activation callback that hands YClients a fresh API key, an entity
webhook at its secret URL — then stops it with SIGTERM and reads every line it logged:
  - every line is one JSON object;
  - the requests are there with their id and path, and a line written inside a request carries
    that request's id and the salon's id among its spans;
  - no secret appears anywhere: the partner token, the JWT secret, the onboarding token, the API
    key, the webhook URL's secret, the signed user data.
"""
import json, os, re, signal, subprocess, sys, tempfile, time, urllib.error, urllib.request

server, site = sys.argv[1], sys.argv[2]
work = tempfile.mkdtemp(prefix="ai-admin-logs-")
app_port, sandbox_port, salon = 3340, 3341, 4242
app, sandbox = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{sandbox_port}"
partner_token = "sandbox-log-check-partner-token-" + os.urandom(6).hex()
jwt_secret = "log-check-jwt-secret-" + os.urandom(12).hex()
env = {
    "PATH": os.environ.get("PATH", ""), "HOME": work, "LOG_FORMAT": "json", "RUST_LOG": "info",
    "LEPTOS_SITE_ADDR": f"127.0.0.1:{app_port}", "LEPTOS_SITE_ROOT": site, "LEPTOS_ENV": "PROD",
    "LEPTOS_OUTPUT_NAME": "ai-admin-connect", "BASE_URL": app, "DATA_DIR": work,
    "DATABASE_URL": f"sqlite://{work}/app.db?mode=rwc", "YCLIENTS_SANDBOX": "true",
    "YCLIENTS_SANDBOX_ADDR": f"127.0.0.1:{sandbox_port}", "YCLIENTS_PARTNER_TOKEN": partner_token,
    "YCLIENTS_APPLICATION_ID": "1001", "JWT_SECRET": jwt_secret, "WHATSAPP_BACKEND": "simulator",
}
log_path = os.path.join(work, "server.log")
process = subprocess.Popen([server], env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(NoRedirect)


def call(url, data=None, headers=None, method=None):
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()
    except urllib.error.URLError:
        return 0, {}, ""


def until(what, check, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    sys.exit(f"check-logs: timed out waiting for {what}; log in {log_path}")


try:
    until("the app", lambda: call(f"{app}/marketplace/health")[0] == 200)
    _, headers, _ = call(f"{sandbox}/connect?ids={salon}")
    redirect = headers["location"]
    user_data = re.search(r"user_data=([^&]+)", redirect).group(1)
    status, headers, _ = call(redirect)
    assert status == 303, f"the redirect answered {status}"
    token = re.search(r"token=([^&]+)", headers["location"]).group(1)
    _, _, page = call(f"{app}/marketplace/onboarding?token={token}")
    qr = until("a QR code", lambda: re.search(r'data-qr-text="([^"]+)"', call(f"{app}/marketplace/onboarding?token={token}")[2]))
    reference = re.search(r"ref=([0-9a-f]+)", qr.group(1).replace("&amp;", "&")).group(1)
    status, _, _ = call(f"{app}/dev/phone/scan", data=f"reference={reference}&phone=79990009900".encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, f"the scan answered {status}"
    def active():
        s, _, body = call(f"{app}/marketplace/api/status/company_{salon}", headers={"Authorization": f"Bearer {token}"})
        return s == 200 and json.loads(body)["activation"]["state"] == "active"
    until("the activation", active)
    callbacks = json.loads(call(f"{sandbox}/sandbox/callbacks")[2])
    confirmed = [c for c in callbacks if c["body"]["salon_id"] == salon and c["answered"] == 201][-1]
    api_key, webhook_url = confirmed["body"]["api_key"], confirmed["body"]["webhook_urls"][0]
    webhook_secret = webhook_url.rstrip("/").rsplit("/", 1)[1]
    event = json.dumps({"company_id": salon, "resource": "record", "resource_id": 7, "status": "create", "data": {"id": 7}})
    status, _, _ = call(webhook_url, data=event.encode(), headers={"Content-Type": "application/json"})
    assert status == 200, f"the webhook answered {status}"
finally:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)

lines = open(log_path).read().splitlines()
objects = []
for number, line in enumerate(lines, 1):
    try:
        objects.append(json.loads(line))
    except json.JSONDecodeError:
        sys.exit(f"check-logs: line {number} is not JSON: {line[:200]}")
text = "\n".join(lines)
secrets = {"the partner token": partner_token, "the JWT secret": jwt_secret, "the onboarding token": token,
           "the API key": api_key, "the webhook secret": webhook_secret, "the signed user data": user_data[:40]}
leaked = [name for name, value in secrets.items() if value and value in text]
if leaked:
    sys.exit(f"check-logs: the log contains {', '.join(leaked)} (log in {log_path})")
requests = [o for o in objects if o.get("message") == "finished processing request"]
if not requests:
    sys.exit("check-logs: no request was logged")
def spans(o):
    return o.get("spans") or []
with_id = [o for o in requests if any(s.get("name") == "request" and s.get("request_id", "-") != "-" for s in spans(o))]
if len(with_id) != len(requests):
    sys.exit("check-logs: a request was logged without its id")
inside = [o for o in objects if o.get("message") != "finished processing request"
          and any(s.get("name") == "request" for s in spans(o))
          and (str(o.get("salon_id")) == str(salon) or any(str(s.get("salon_id")) == str(salon) for s in spans(o)))]
if not inside:
    sys.exit("check-logs: no line written inside a request carries both the request id and the salon id")
routes = {s.get("route") for o in requests for s in spans(o) if s.get("name") == "request"}
for route in ("/auth/yclients/redirect", "/webhook/yclients/events/{salon_id}/{secret}", "/marketplace/onboarding"):
    if route not in routes:
        sys.exit(f"check-logs: no request logged for {route}; routes seen: {sorted(routes)}")
print(f"check-logs: {len(objects)} JSON lines, {len(requests)} requests with their ids, "
      f"{len(inside)} lines with a request id and salon {salon}; none of {len(secrets)} secrets")
