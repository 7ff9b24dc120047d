#!/usr/bin/env bash
# Headless Chromium for apps/automn-runner's operator-page browser test: Debian's `chromium`
# package (driven by playwright-core with executablePath=/usr/bin/chromium; no browser download).
# python3 is already on the machine (python scripts). PowerShell is not packaged by Debian and
# the only other source is Microsoft's feed (not reachable here): the PowerShell tests skip when
# `pwsh` is missing. Idempotent: a second run only checks that /usr/bin/chromium exists. Needs root.
set -euo pipefail
log() { echo "setup.d/30-chromium: $*" >&2; }
if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
/usr/bin/chromium --version >/dev/null 2>&1 || { log "chromium is installed but does not start"; exit 1; }
