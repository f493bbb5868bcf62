#!/usr/bin/env bash
# Build one of the project's images from images/<name>/Dockerfile with the repository root as the
# build context. The Makefile's `images` / `image-<name>` targets call it; every knob is an
# environment variable (the Makefile passes its variables of the same names):
#
#   scripts/build-image.sh pipeline|airflow|mlflow
#
#   IMAGE_REPO      ml-pipeline                  image names are $IMAGE_REPO/<name>:$IMAGE_TAG
#   IMAGE_TAG       latest (latest-cuda for TORCH_VARIANT=cuda)
#   BASE_IMAGE      (the Dockerfile's digest-pinned python:3.11-slim-bookworm) or a local base,
#                   e.g. ml-pipeline/local-base:bookworm from scripts/build-local-base.sh
#   TORCH_VARIANT   cpu | cuda                   pipeline image only
#   TORCH_INDEX_URL extra pip index for torch; default: none when a CPU wheel was staged in
#                   images/pipeline/wheels/, else https://download.pytorch.org/whl/cpu (cpu)
#   CA_BUNDLE       CA bundle handed to pip as a build secret (default: the system bundle);
#                   CA_BUNDLE=none passes none
#   GIT_COMMIT      default: `git rev-parse HEAD`, with -dirty when the image's inputs have changes
#   DOCKER          /usr/bin/docker (a client that speaks BuildKit to the engine)
#   BUILD_ARGS      extra `docker build` arguments
#
# The CPU pipeline image needs torch's `+cpu` wheel. When images/pipeline/wheels/ holds none,
# this script asks the host's pip for it (`pip download`, so a local wheel folder, a mirror or a
# proxy configured for pip serves it); failing that, the build takes it from TORCH_INDEX_URL.
set -euo pipefail

name=${1:?usage: $0 pipeline|airflow|mlflow}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dockerfile=images/$name/Dockerfile
[ -f "$dockerfile" ] || { echo "no $dockerfile" >&2; exit 2; }

DOCKER=${DOCKER:-/usr/bin/docker}
IMAGE_REPO=${IMAGE_REPO:-ml-pipeline}
TORCH_VARIANT=${TORCH_VARIANT:-cpu}
if [ "$name" = pipeline ] && [ "$TORCH_VARIANT" = cuda ]; then
    IMAGE_TAG=${IMAGE_TAG:-latest-cuda}
else
    IMAGE_TAG=${IMAGE_TAG:-latest}
fi
image=$IMAGE_REPO/$name:$IMAGE_TAG
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

args=(--file "$dockerfile" --tag "$image")
[ -n "${BASE_IMAGE:-}" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
if [ "$CA_BUNDLE" != none ] && [ -s "$CA_BUNDLE" ]; then
    args+=(--secret "id=ca,src=$CA_BUNDLE")
fi

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)
if [ -z "${GIT_COMMIT:-}" ]; then
    if GIT_COMMIT=$(git rev-parse --verify --quiet HEAD 2>/dev/null); then
        if [ -n "$(git status --porcelain -- pyproject.toml README.md pipeline dags "images/$name" images/constraints.txt 2>/dev/null)" ]; then
            GIT_COMMIT=$GIT_COMMIT-dirty
        fi
    else
        GIT_COMMIT=unknown
    fi
fi
created=$(git log -1 --format=%cI 2>/dev/null || true)

args+=(--build-arg "GIT_COMMIT=$GIT_COMMIT" --build-arg "VERSION=$version" --build-arg "CREATED=$created")

if [ "$name" = pipeline ]; then
    torch_version=$(sed -n 's/.*"torch==\([^";]*\)".*/\1/p' pyproject.toml | head -n 1)
    args+=(--build-arg "TORCH_VARIANT=$TORCH_VARIANT" --build-arg "TORCH_VERSION=$torch_version")
    if [ "$TORCH_VARIANT" = cpu ]; then
        wheels=images/pipeline/wheels
        if ! compgen -G "$wheels/torch-$torch_version+cpu-*.whl" >/dev/null; then
            echo "fetching torch==$torch_version+cpu with the host's pip into $wheels/"
            "${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: \
                --python-version 3.11 --platform manylinux_2_28_x86_64 \
                --dest "$wheels" "torch==$torch_version+cpu" 2>/dev/null \
                || echo "  (the host's pip has no CPU wheel; the build will use the CPU index)"
        fi
        if compgen -G "$wheels/torch-$torch_version+cpu-*.whl" >/dev/null; then
            TORCH_INDEX_URL=${TORCH_INDEX_URL-}
        fi
    fi
    [ -n "${TORCH_INDEX_URL+set}" ] && args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
fi

# shellcheck disable=SC2206  # BUILD_ARGS is split on purpose
[ -n "${BUILD_ARGS:-}" ] && args+=($BUILD_ARGS)

echo "building $image (commit $GIT_COMMIT${BASE_IMAGE:+, base $BASE_IMAGE})"
start=$(date +%s)
DOCKER_BUILDKIT=1 "$DOCKER" build "${args[@]}" .
size=$("$DOCKER" image inspect --format '{{.Size}}' "$image")
echo "built $image in $(($(date +%s) - start)) s: $((size / 1000000)) MB"
