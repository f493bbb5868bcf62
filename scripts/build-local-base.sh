#!/usr/bin/env bash
# Build a local Debian bookworm base image with debootstrap + `docker import`, for machines that
# reach Debian's package mirrors but no container registry. The images' Dockerfiles take it as
# their base through a build argument (`make images BASE_IMAGE=ml-pipeline/local-base:bookworm`).
#
#   scripts/build-local-base.sh [TAG]      # default ml-pipeline/local-base:bookworm
#
# It carries what python:3.11-slim-bookworm carries for our purposes (Python 3.11 with venv and
# pip, CA certificates) plus tini. Nothing is kept on disk: the root file system is built in a
# temporary folder (outside the repository, so it never enters a build context) and removed.
# Needs root, debootstrap and a running Docker engine. Skips the work when TAG already exists
# unless FORCE=1.
set -euo pipefail

TAG=${1:-${LOCAL_BASE_IMAGE:-ml-pipeline/local-base:bookworm}}
DOCKER=${DOCKER:-/usr/bin/docker}
SUITE=${SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,python3-pip-whl,python3-setuptools-whl,ca-certificates,tini

if [ "${FORCE:-0}" != 1 ] && "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    echo "local base $TAG exists (FORCE=1 rebuilds it)"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap not found: apt-get install -y debootstrap" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "debootstrap needs root (sudo $0)" >&2; exit 1; }

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/ml-pipeline-rootfs.XXXXXX")
trap 'rm -rf --one-file-system "$rootfs"' EXIT

echo "debootstrap $SUITE (minbase + $PACKAGES) from $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"

# Updates and security fixes come from the same places as in Debian's own images.
cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
# Slim like debian:bookworm-slim: no package caches, lists, docs or man pages.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
# `python` like the official image has it; the Dockerfiles themselves only call python3.
ln -sf python3 "$rootfs/usr/bin/python"

tar --numeric-owner -C "$rootfs" -c . | "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase $SUITE + $PACKAGES" \
    - "$TAG" >/dev/null
echo "built $TAG ($("$DOCKER" image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
