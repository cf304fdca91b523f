#!/usr/bin/env bash
# A Docker engine that answers: the running one, or dockerd started here (root, vfs storage, no default bridge:
# builds and the tests' containers use the host network or compose networks). Exit 1 with one line where none can.
set -uo pipefail
docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null; then
  echo "no Docker engine answers and none can be started here (needs root and dockerd: apt-get install docker.io)"
  exit 1
fi
dockerd --storage-driver=vfs --iptables=false --bridge=none >/tmp/dockerd.log 2>&1 &
for _ in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done
echo "dockerd did not answer within 60 s: $(tail -n 1 /tmp/dockerd.log)"
exit 1
