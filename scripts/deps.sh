#!/usr/bin/env bash
# Installs the Debian 12 packages that building, testing and `make run` need, only when missing.
# Idempotent: a second run installs nothing. apt-get as root, sudo otherwise.
set -euo pipefail
PACKAGES=(
  build-essential pkg-config curl ca-certificates
  libmicrohttpd-dev libsodium-dev libjansson-dev libsqlite3-dev libinih-dev
  libcurl4-openssl-dev libcmocka-dev
  libhiredis-dev libpq-dev # the Redis session store and the PostgreSQL user store
  libdw-dev                # the heap profiler (src/mem/heap.c): file:line of frames from DWARF
  libcbor-dev libssl-dev   # passkeys (src/auth/webauthn.c): CBOR of WebAuthn, ES256 signatures
  redis-server redis-tools postgresql # real servers the store tests and the scale-out test start
  redis-sentinel # tests/integration/test_failover.c: three sentinels fail a master over
  prometheus # for promtool: tests check /metrics output and the shipped alert rules with it
  wrk        # test_durable.c: a reload under steady load drops no request; make bench-flood;
             # make bench-engine (the gatehouse load engine against wrk -t1)
  nginx      # tests/integration/test_nginx.c: the shipped deploy/nginx/gatehouse.conf in front
  chromium   # tests/integration/test_browser.c: headless Chromium driven by playwright-core
  python3-aiosmtpd # tests/support/smtp_sink.py: the real SMTP server of test_email (email, #19)
  # the leak gate (make test, docs/CONTRIBUTING.md): libFuzzer and the sanitizer runtimes come
  # with clang 14 and libclang-rt-14-dev on Debian 12; lint uses clang-format and cppcheck
  clang libclang-rt-14-dev clang-format cppcheck valgrind
  liboath-dev libqrencode-dev # second factors (#18): TOTP's HMAC-SHA-1, the enrolment QR code
  oathtool                    # tests compute authenticator codes with a real implementation
  # OpenID Connect (#21): real relying parties of gatehouse's provider. test_oidc_rp.c starts
  # Apache httpd with mod_auth_openidc (tests/support/apache.c) and runs the authlib client
  # tests/oidc/authlib_client.py with Debian's python3
  apache2 libapache2-mod-auth-openidc python3-authlib python3-requests
)
missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
# node and npm run playwright-core: Debian's packages unless some node is there already (a
# nodejs from elsewhere ships its own npm, which Debian's npm package would conflict with).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
# playwright-core for the browser test, from the npm registry at the version package-lock.json pins
# (it drives Debian's chromium; it downloads no browser of its own).
browser_deps() {
  local dir
  dir="$(dirname "$0")/../tests/browser"
  # installed already at the version package.json pins (a checkout that moved the pin reinstalls)
  local want have="" installed="$dir/node_modules/playwright-core/package.json"
  want=$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' "$dir/package.json")
  if [ -f "$installed" ]; then
    have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$installed" | head -1)
  fi
  if [ -n "$want" ] && [ "$have" = "$want" ]; then
    return 0
  fi
  echo "deps: npm ci in tests/browser" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}
if [ ${#missing[@]} -ne 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi
browser_deps
