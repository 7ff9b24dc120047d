#!/usr/bin/env bash
# openssl for @runlane/rpc-connect / apps/airunner: the server makes its self-signed fallback
# certificate with the openssl CLI (as the original, when no --cert/--key is given).
# Idempotent; fast when openssl is there.
set -euo pipefail
if ! command -v openssl >/dev/null 2>&1; then
  echo "setup: installing openssl" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssl ca-certificates >/dev/null
fi
openssl version >/dev/null
