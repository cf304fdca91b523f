#!/usr/bin/env bash
# A Docker engine that answers: the running one, or dockerd started here (root, no default bridge: builds and the
# tests' containers use the host network or compose networks). Storage: overlay2 where the kernel mounts overlays
# on this filesystem (layers shared: an image's layers and every container's root are not copied), else vfs
# (every layer and container root a full copy). Exit 1 with one line where no engine can be started.
set -uo pipefail
docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null; then
  echo "no Docker engine answers and none can be started here (needs root and dockerd: apt-get install docker.io)"
  exit 1
fi
for driver in overlay2 vfs; do
  dockerd --storage-driver="$driver" --iptables=false --bridge=none >"/tmp/dockerd-$driver.log" 2>&1 &
  daemon=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && exit 0
    kill -0 "$daemon" 2>/dev/null || break  # it exited: this driver does not work here
    sleep 1
  done
  kill "$daemon" 2>/dev/null
  wait "$daemon" 2>/dev/null
done
echo "dockerd did not answer within 60 s with overlay2 or vfs: $(tail -n 1 /tmp/dockerd-vfs.log)"
exit 1
