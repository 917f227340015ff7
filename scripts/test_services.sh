#!/usr/bin/env bash
# Make sure the services the default test suite talks to are up, and the browser is installed.
# PostgreSQL runs on these machines before CI; (re)start it if it stopped. moto's S3 server and
# the Streamlit app are started by the tests themselves on free loopback ports.
set -uo pipefail
if command -v pg_isready >/dev/null 2>&1; then
  if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    echo "test_services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || \
      echo "test_services: could not start PostgreSQL; postgres-marked tests will skip with a reason"
  fi
fi
# Redis for the gateway's shared rate-limit test; (re)start it if it stopped.
if command -v redis-server >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "test_services: starting Redis"
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save "" --appendonly no >/dev/null || \
    echo "test_services: could not start Redis; the Redis rate-limit test will skip with a reason"
fi
# Debian's chromium for the real-browser test (Playwright drives it; no downloaded browser).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "test_services: installing Debian chromium for the browser test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
    echo "test_services: chromium install failed; browser-marked tests will skip with a reason"
fi
# Debian's dcmtk: real DICOM peers (echoscu, storescu) for the DICOM receiver tests.
if ! command -v storescu >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "test_services: installing Debian dcmtk for the DICOM receiver tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk >/dev/null) || \
    echo "test_services: dcmtk install failed; the storescu tests will skip with a reason"
fi
exit 0
