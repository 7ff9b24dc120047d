#!/usr/bin/env bash
# Docker Engine for @runlane/exec-docker's tests and benchmark: installs Debian's docker.io and
# busybox-static when missing, starts `dockerd --bridge=none --iptables=false` when the engine
# does not answer, and builds the test images with `docker import` (no registry is reachable):
#   runlane-test/busybox:1         busybox-static + a non-root user `runner` (1000:1000), USER runner
#   runlane-test/busybox-nouser:1  the same root filesystem without a USER (the executor's fallback user applies)
#   runlane-test/node:24           the busybox root filesystem + the toolchain's Node 24 binary and its libraries
# and a loopback registry (Debian's docker-registry, 127.0.0.1:5055, no auth; the engine trusts
# 127.0.0.0/8 without TLS) holding 127.0.0.1:5055/runlane-test/busybox:1, so pulls can be tested.
# Idempotent; a second run only asks the engine and the registry whether everything exists. Needs root.
set -euo pipefail
RECIPE=1 # bump when the root filesystem recipe below changes: images are rebuilt
log() { echo "setup.d/10-docker: $*" >&2; }
engine_up() { timeout 5 docker info >/dev/null 2>&1; }

REGISTRY=127.0.0.1:5055
registry_up() { curl -fs -o /dev/null -m 2 "http://$REGISTRY/v2/"; }

if ! command -v dockerd >/dev/null || ! command -v docker-registry >/dev/null || ! dpkg -s busybox-static >/dev/null 2>&1; then
  log "installing docker.io, docker-registry and busybox-static"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-registry busybox-static curl >/dev/null
fi

if ! engine_up; then
  # a dockerd that died leaves its pid file behind and the next one refuses to start
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then rm -f /var/run/docker.pid; fi
  log "starting dockerd (log: /var/log/dockerd-runlane.log)"
  setsid nohup dockerd --bridge=none --iptables=false >>/var/log/dockerd-runlane.log 2>&1 </dev/null &
  for _ in $(seq 1 120); do engine_up && break; sleep 0.5; done
  engine_up || { log "dockerd did not come up; see /var/log/dockerd-runlane.log"; exit 1; }
fi

if ! registry_up; then
  log "starting docker-registry on $REGISTRY (log: /var/log/registry-runlane.log)"
  mkdir -p /var/lib/runlane-registry
  cat >/var/lib/runlane-registry/config.yml <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/runlane-registry/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
YAML
  setsid nohup docker-registry serve /var/lib/runlane-registry/config.yml >>/var/log/registry-runlane.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do registry_up && break; sleep 0.5; done
  registry_up || { log "docker-registry did not come up; see /var/log/registry-runlane.log"; exit 1; }
fi

has_image() { [ "$(docker image inspect -f '{{index .Config.Labels "runlane.recipe"}}' "$1" 2>/dev/null)" = "$RECIPE" ]; }
push_to_registry() {
  if ! curl -fs -o /dev/null -m 5 -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
    "http://$REGISTRY/v2/runlane-test/busybox/manifests/1"; then
    log "pushing $REGISTRY/runlane-test/busybox:1"
    docker tag runlane-test/busybox:1 "$REGISTRY/runlane-test/busybox:1"
    docker push "$REGISTRY/runlane-test/busybox:1" >/dev/null
    docker rmi "$REGISTRY/runlane-test/busybox:1" >/dev/null
  fi
}
if has_image runlane-test/busybox:1 && has_image runlane-test/busybox-nouser:1 && has_image runlane-test/node:24; then
  push_to_registry
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,job,root,home/runner,proc,sys,dev,run}
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
ln -sf ../../bin/env "$root/usr/bin/env"
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
runner:x:1000:1000:runner:/home/runner:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
runner:x:1000:
nogroup:x:65534:
GROUP
chown 1000:1000 "$root/home/runner"

log "importing runlane-test/busybox:1 and runlane-test/busybox-nouser:1"
tar -C "$root" -cf "$work/busybox.tar" .
docker import -c "LABEL runlane.recipe=$RECIPE" -c 'USER runner' -c 'WORKDIR /job' -c 'CMD ["/bin/sh"]' \
  "$work/busybox.tar" runlane-test/busybox:1 >/dev/null
docker import -c "LABEL runlane.recipe=$RECIPE" -c 'CMD ["/bin/sh"]' \
  "$work/busybox.tar" runlane-test/busybox-nouser:1 >/dev/null

node_bin="${RUNLANE_NODE_BIN:-$HOME/.cache/runlane-tools/node_modules/node/bin/node}"
[ -x "$node_bin" ] || node_bin=$(command -v node)
log "importing runlane-test/node:24 from $node_bin ($("$node_bin" --version))"
mkdir -p "$root/usr/local/bin"
cp -L "$node_bin" "$root/usr/local/bin/node"
for lib in $(ldd "$node_bin" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
tar -C "$root" -cf "$work/node.tar" .
docker import -c "LABEL runlane.recipe=$RECIPE" -c 'USER runner' -c 'WORKDIR /job' \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' -c 'CMD ["node"]' \
  "$work/node.tar" runlane-test/node:24 >/dev/null
push_to_registry
log "images ready"
