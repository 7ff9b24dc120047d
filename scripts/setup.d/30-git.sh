#!/usr/bin/env bash
# git for @runlane/vcs-git: the adapter runs the git CLI, and its tests serve repositories with
# `git http-backend` (part of Debian's git package). Idempotent; fast when git is there.
set -euo pipefail
if ! command -v git >/dev/null 2>&1 || [ ! -x "$(git --exec-path 2>/dev/null)/git-http-backend" ]; then
  echo "setup: installing git" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends git ca-certificates >/dev/null
fi
git --version >/dev/null
