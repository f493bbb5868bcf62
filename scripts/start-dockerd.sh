#!/usr/bin/env bash
# Start Debian's Docker engine in the background when it is not already answering, and wait until
# it does. For machines without systemd (CI containers, this sandbox); where systemd runs Docker,
# this does nothing because the daemon already answers.
#
#   scripts/start-dockerd.sh            # log in ${DOCKERD_LOG:-/tmp/dockerd.log}
#
# Uses /usr/bin/docker (Debian's docker.io client): it speaks BuildKit to the engine, which the
# images need for build secrets and cache mounts.
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
LOG=${DOCKERD_LOG:-/tmp/dockerd.log}

if "$DOCKER" info >/dev/null 2>&1; then
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "dockerd not found: apt-get install -y docker.io" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "dockerd is not running and starting it needs root (sudo $0)" >&2
    exit 1
fi

nohup dockerd >"$LOG" 2>&1 &
for _ in $(seq 1 60); do
    if "$DOCKER" info >/dev/null 2>&1; then
        exit 0
    fi
    sleep 1
done
echo "dockerd did not answer within 60 s; last lines of $LOG:" >&2
tail -n 20 "$LOG" >&2
exit 1
