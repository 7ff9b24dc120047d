# shellcheck shell=bash
# Source this file: makes Node 24 and pnpm 10 available first on PATH, on a machine that
# only has an older Node. Tools live outside the repo, in RUNLANE_TOOLS (default
# ~/.cache/runlane-tools). Idempotent: a second run only checks versions.
#   source scripts/toolchain.sh
RUNLANE_TOOLS="${RUNLANE_TOOLS:-$HOME/.cache/runlane-tools}"
RUNLANE_NODE_VERSION="${RUNLANE_NODE_VERSION:-24}"
RUNLANE_PNPM_VERSION="${RUNLANE_PNPM_VERSION:-10.34.8}"
_rl_bin="$RUNLANE_TOOLS/node_modules/node/bin"
if [ ! -x "$_rl_bin/node" ] || ! "$_rl_bin/node" --version 2>/dev/null | grep -q "^v${RUNLANE_NODE_VERSION}\."; then
  echo "toolchain: installing node@${RUNLANE_NODE_VERSION} into $RUNLANE_TOOLS" >&2
  mkdir -p "$RUNLANE_TOOLS"
  npm i --no-audit --no-fund --loglevel=error --prefix "$RUNLANE_TOOLS" "node@${RUNLANE_NODE_VERSION}" >&2 || return 1 2>/dev/null || exit 1
fi
case ":$PATH:" in
  *":$_rl_bin:"*) ;;
  *) export PATH="$_rl_bin:$PATH" ;;
esac
if [ ! -x "$_rl_bin/pnpm" ] || [ "$("$_rl_bin/pnpm" --version 2>/dev/null)" != "$RUNLANE_PNPM_VERSION" ]; then
  echo "toolchain: installing pnpm@${RUNLANE_PNPM_VERSION}" >&2
  npm i -g --no-audit --no-fund --loglevel=error "pnpm@${RUNLANE_PNPM_VERSION}" >&2 || return 1 2>/dev/null || exit 1
fi
hash -r 2>/dev/null || true
unset _rl_bin
