#!/usr/bin/env bash
# Sandbox tools for @runlane/exec-hyperlight: bubblewrap (the sandbox) and socat (bridges the
# sandbox's loopback to the runner's MCP proxy socket). Idempotent; fast when both are there.
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v socat >/dev/null 2>&1 || need+=(socat)
# The sandbox tests talk HTTP from inside with curl.
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bwrap --version >/dev/null
