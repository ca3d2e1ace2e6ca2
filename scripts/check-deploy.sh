#!/usr/bin/env bash
# Checks the deployment files without a container engine or systemd running (neither does on the
# development machine): `scripts/check-deploy.sh <server binary> <site dir>`.
#   1. the systemd unit passes `systemd-analyze verify` without a single complaint;
#   2. the nginx site (TLS and all) passes `nginx -t`, with a throw-away certificate;
#   3. the Dockerfile has the shape it promises (multi-stage, non-root runtime, health check) and
#      compose.yaml parses, with PostgreSQL healthy before the app;
#   4. the runtime stage's command runs: the binary with the Dockerfile's ENV (paths moved to a
#      temporary directory), its HEALTHCHECK command answers, and SIGTERM stops it gracefully
#      within the unit's TimeoutStopSec;
#   5. JSON logs with secrets in play (scripts/check-logs.py; needs a binary with the `demo`
#      feature, as scripts/test.sh builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
server="${1:?usage: scripts/check-deploy.sh <server binary> <site dir>}"
site="${2:?usage: scripts/check-deploy.sh <server binary> <site dir>}"
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

echo "-- systemd unit"
if command -v systemd-analyze >/dev/null; then
  sed "s|/opt/ai-admin-connect/server|$(realpath "$server")|" deploy/systemd/ai-admin-connect.service \
    >"$work/ai-admin-connect.service"
  complaints="$(systemd-analyze verify "$work/ai-admin-connect.service" 2>&1 || true)"
  if [ -n "$complaints" ]; then
    echo "$complaints" >&2
    exit 1
  fi
  echo "systemd-analyze verify: clean"
else
  echo "systemd-analyze is not installed; the unit is not verified"
fi

echo "-- nginx site"
if command -v nginx >/dev/null; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=connect.example.com \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  mkdir -p "$work/nginx"
  sed -e "s|/etc/letsencrypt/live/connect.example.com/fullchain.pem|$work/cert.pem|" \
      -e "s|/etc/letsencrypt/live/connect.example.com/privkey.pem|$work/key.pem|" \
      -e "s|/etc/nginx/snippets/ai-admin-connect-locations.conf|$PWD/deploy/nginx/ai-admin-connect-locations.conf|" \
      -e "s|/etc/nginx/snippets/ai-admin-connect-log.conf|$PWD/deploy/nginx/ai-admin-connect-log.conf|" \
      -e "s|/var/log/nginx/ai-admin-connect.access.log|$work/nginx/access.log|" \
      -e "s|/var/log/nginx/ai-admin-connect.error.log|$work/nginx/site-error.log|" \
      deploy/nginx/ai-admin-connect.conf >"$work/nginx/site.conf"
  cat >"$work/nginx/nginx.conf" <<CONF
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events {}
http { include $work/nginx/site.conf; }
CONF
  nginx -t -p "$work/nginx" -c "$work/nginx/nginx.conf" -g "error_log stderr;"
  # Run it, on local ports: a link with a token over plain HTTP is sent to HTTPS and logged
  # redacted, and the HTTPS answer carries HSTS (no app behind it: nginx answers 502, which is
  # logged and gets the header all the same).
  read -r http_port https_port < <(python3 -c 'import socket
ports = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ports.append(s.getsockname()[1]); ports.append(s)
print(ports[0], ports[2])')
  sed -i -e "s|listen 80;|listen 127.0.0.1:$http_port;|" -e "s|listen 443 ssl http2;|listen 127.0.0.1:$https_port ssl;|" \
      -e "/listen \[::\]/d" -e "s|server 127.0.0.1:3000;|server 127.0.0.1:9;|" "$work/nginx/site.conf"
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g "error_log $work/nginx/error.log;"
  secret="check-deploy-token-$RANDOM$RANDOM"
  redirect="$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$http_port/marketplace/onboarding?token=$secret")"
  hsts="$(curl -sk -D - -o /dev/null "https://127.0.0.1:$https_port/marketplace/onboarding?token=$secret" | tr -d '\r' | grep -i '^strict-transport-security:' || true)"
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -s stop
  sleep 0.5
  case "$redirect" in
    "301 https://"*) ;;
    *) echo "plain HTTP was not sent to HTTPS: $redirect" >&2; exit 1 ;;
  esac
  [ -n "$hsts" ] || { echo "the HTTPS answer has no Strict-Transport-Security" >&2; exit 1; }
  [ "$(grep -c . "$work/nginx/access.log")" -ge 2 ] || { echo "nginx logged fewer than the two requests" >&2; exit 1; }
  touch "$work/nginx/site-error.log"
  if grep -q "$secret" "$work/nginx/access.log" "$work/nginx/site-error.log"; then
    echo "nginx logged an onboarding token:" >&2
    grep "$secret" "$work/nginx/access.log" "$work/nginx/site-error.log" >&2
    exit 1
  fi
  echo "plain HTTP → HTTPS, HSTS, both requests logged (one a 502) without their token: ok"
else
  echo "nginx is not installed; the site is not tested"
fi

echo "-- Dockerfile and compose.yaml"
python3 - <<'PY'
import re, sys, yaml
lines = [l for l in open("Dockerfile").read().replace("\\\n", " ").splitlines() if l.strip() and not l.lstrip().startswith("#")]
stages = [i for i, l in enumerate(lines) if l.upper().startswith("FROM ")]
problems = []
if len(stages) < 2:
    problems.append("not multi-stage")
runtime = lines[stages[-1]:]
user = [l.split(None, 1)[1].strip() for l in runtime if l.upper().startswith("USER ")]
if not user or user[-1] in ("root", "0"):
    problems.append("the runtime stage runs as root")
if not any(l.upper().startswith("HEALTHCHECK ") and "/marketplace/health" in l for l in runtime):
    problems.append("no HEALTHCHECK on /marketplace/health")
if not any(l.upper().startswith("CMD ") for l in runtime):
    problems.append("no CMD")
if any("cargo" in l for l in runtime):
    problems.append("the runtime stage builds")
compose = yaml.safe_load(open("compose.yaml"))
services = compose.get("services", {})
if set(services) != {"app", "postgres"}:
    problems.append(f"compose services: {sorted(services)}")
else:
    if services["app"].get("depends_on", {}).get("postgres", {}).get("condition") != "service_healthy":
        problems.append("the app does not wait for a healthy PostgreSQL")
    if "healthcheck" not in services["postgres"]:
        problems.append("PostgreSQL has no health check")
    if not str(services["app"]["environment"].get("DATABASE_URL", "")).startswith("postgres://"):
        problems.append("the app is not on PostgreSQL")
    # The proxy the app trusts by default must be the address connections reach it from: the
    # gateway of compose's own network (docker0's 172.17.0.1 is not on it).
    trusted = re.fullmatch(r"\$\{TRUSTED_PROXY:-([0-9.]+)\}", str(services["app"]["environment"].get("TRUSTED_PROXY", "")))
    gateways = [c.get("gateway") for c in compose.get("networks", {}).get("default", {}).get("ipam", {}).get("config", [])]
    if not trusted or trusted.group(1) not in gateways:
        problems.append(f"TRUSTED_PROXY's default is not the compose network's gateway ({gateways})")
if problems:
    sys.exit("Dockerfile/compose.yaml: " + "; ".join(problems))
print("Dockerfile: %d stages, runtime user %s; compose.yaml: %s" % (len(stages), user[-1], ", ".join(sorted(services))))
PY

echo "-- the runtime stage's command, run directly"
data="$work/state"
mkdir -p "$data"
port=3320
# ENV lines of the runtime stage, with its paths and port moved here.
env_args=()
while IFS= read -r line; do
  value="${line#ENV }"
  value="${value//\/var\/lib\/ai-admin-connect/$data}"
  value="${value//\/app\/site/$(realpath "$site")}"
  value="${value//0.0.0.0:3000/127.0.0.1:$port}"
  env_args+=("$value")
done < <(awk '/^FROM /{stage++} stage==2 && /^ENV /' Dockerfile)
health_cmd="$(awk '/^FROM /{stage++} stage==2 && /^  CMD curl/' Dockerfile | sed -e 's/^ *CMD //' -e "s/127.0.0.1:3000/127.0.0.1:$port/")"
env -i PATH="$PATH" HOME="$work" "${env_args[@]}" "$server" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if sh -c "$health_cmd" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
sh -c "$health_cmd" >/dev/null || { cat "$work/server.log" >&2; echo "the health check never passed" >&2; exit 1; }
echo "HEALTHCHECK passed: $health_cmd"
head -c 300 "$work/server.log" | head -n 1 | python3 -c 'import json,sys; json.loads(sys.stdin.readline()); print("LOG_FORMAT=json: the first line is JSON")'
started=$(date +%s)
kill -TERM "$pid"
for _ in $(seq 1 300); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  echo "SIGTERM did not stop the server within 30 s" >&2
  exit 1
fi
wait "$pid" && status=0 || status=$?
pid=""
echo "SIGTERM: stopped in $(( $(date +%s) - started )) s, exit status $status"
[ "$status" -eq 0 ] || { cat "$work/server.log" >&2; exit 1; }

echo "-- JSON logs with secrets in play"
scripts/check-logs.py "$server" "$(realpath "$site")"
