#!/usr/bin/env bash
# `make images`: the CPU serving image (rescale:cpu), the training image for the CPU (rescale:train-cpu) and a
# Prometheus image (rescale-prometheus), on a base made from Debian packages, so no image registry is needed.
# Needs root, debootstrap and a Docker engine (started here when none answers: overlay2, else vfs; host network).
# BASE=IMAGE builds on another base instead (e.g. python:3.11.11-slim-bookworm where a registry is reachable).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-rescale-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WHEELS=${WHEELS:-/opt/wheels}  # a folder with torch's CPU wheel, where this machine has one
log() { echo "[images $(date +%T)] $*"; }

docker/start-engine.sh

if [ "$BASE" = rescale-base:bookworm ] && ! docker image inspect "$BASE" >/dev/null 2>&1; then
  log "base image $BASE from Debian $SUITE ($MIRROR)"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  chmod 755 "$root"  # it becomes the image's /: mktemp's 0700 would lock every non-root user out
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$root" "$MIRROR" >/dev/null
  # the machine's CA bundle: package registries may be reached through a proxy that this machine trusts
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  ln -sf python3 "$root/usr/bin/python"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - "$BASE" >/dev/null
fi

torch_cpu="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
if compgen -G "$WHEELS/torch-2.13.0+cpu-*.whl" >/dev/null; then
  # the local wheel, served on loopback to the build (host network)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  python3 -m http.server --bind 127.0.0.1 --directory "$WHEELS" "$port" >/dev/null 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null; rm -rf "${root:-}"' EXIT
  torch_cpu="torch==2.13.0+cpu --find-links http://127.0.0.1:$port/"
fi

build() {  # tag dockerfile [build args...]
  local tag=$1 file=$2 started=$SECONDS
  shift 2
  log "building $tag"
  docker build --network host -q -f "$file" -t "$tag" --build-arg "BASE=$BASE" "$@" . >/dev/null
  log "$tag: $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}') in $((SECONDS - started)) s"
}
build rescale:cpu docker/Dockerfile.cpu --build-arg "TORCH_INSTALL=$torch_cpu"
build rescale:train-cpu docker/Dockerfile.train --build-arg PYTHON_PACKAGES= --build-arg PYTHON=python3 \
  --build-arg "TORCH_INSTALL=$torch_cpu"
build rescale-prometheus:debian docker/Dockerfile.prometheus
# the versions these builds replaced (with vfs every layer is a full copy on disk)
docker image prune -f >/dev/null
