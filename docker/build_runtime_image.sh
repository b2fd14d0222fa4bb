#!/usr/bin/env bash
# Build the job runtime image locally with podman, without any image registry.
#
# The image is the equivalent of docker/runtime.Dockerfile, built in three cached steps:
#   1. a Debian bookworm rootfs from the Debian package mirror (debootstrap --variant=minbase) with
#      python3.11, python3-venv and ca-certificates and a non-root user ``runtime`` (uid/gid 1000),
#      imported with ``podman import``;
#   2. /opt/venv with the project's ``runtime`` extra from PyPI, pinned to the versions in uv.lock,
#      plus $EXTRA_PACKAGES (``podman run`` + ``podman commit``);
#   3. the package itself (a wheel built from this checkout, installed with --no-deps), with
#      USER 1000, WORKDIR, ENV, ENTRYPOINT and CMD set on commit.
# No Airflow is installed. Each step is keyed by a hash of what it is built from; the rootfs and the
# dependency image are also kept as tarballs in $CACHE_DIR (default ~/.cache/airflow-ai-provider),
# so a fresh podman store rebuilds only the small last step.
#
# Usage: docker/build_runtime_image.sh            # prints the image reference on the last line
#   IMAGE_NAME=my-runtime EXTRA_PACKAGES="xgboost==2.1.1" docker/build_runtime_image.sh
#   RUNTIME_SOURCE=/path/to/checkout docker/build_runtime_image.sh   # build from another checkout
# Needs root (debootstrap), podman (scripts/install_podman.sh) and uv.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="${RUNTIME_SOURCE:-$PWD}"

IMAGE_NAME="${IMAGE_NAME:-airflow-ai-provider-runtime}"
EXTRA_PACKAGES="${EXTRA_PACKAGES:-}"
CACHE_DIR="${CACHE_DIR:-$HOME/.cache/airflow-ai-provider}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_PACKAGES="python3,python3-venv,ca-certificates"
RUNTIME_ENV=(
    "PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    "VIRTUAL_ENV=/opt/venv"
    "HOME=/home/runtime"
    "PYTHONUNBUFFERED=1"
    "PYTHONDONTWRITEBYTECODE=1"
    "MPLCONFIGDIR=/tmp/matplotlib"
    "LANG=C.UTF-8"
)

log() { echo "build_runtime_image: $*" >&2; }
die() { log "$*"; exit 1; }
key_of() { sha256sum | cut -c1-16; }
has_image() { podman image exists "$1"; }

command -v podman >/dev/null || die "podman not found: run scripts/install_podman.sh (and export CONTAINERS_CONF)"
UV="${UV:-$(command -v uv || echo "$REPO/.tools/bin/uv")}"
[ -x "$UV" ] || die "uv not found: run scripts/bootstrap.sh or set UV=/path/to/uv"
mkdir -p "$CACHE_DIR"
WORK="$(mktemp -d)"
CONTAINER=""
cleanup() {
    [ -n "$CONTAINER" ] && podman rm -f "$CONTAINER" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# ------------------------------------------------------------------ 1. base rootfs
BASE_KEY="$(printf 'bookworm minbase %s uid1000 v1' "$BASE_PACKAGES" | key_of)"
BASE_IMAGE="localhost/$IMAGE_NAME-base:$BASE_KEY"
BASE_TAR="$CACHE_DIR/rootfs-bookworm-$BASE_KEY.tar"
if ! has_image "$BASE_IMAGE"; then
    if [ ! -s "$BASE_TAR" ]; then
        command -v debootstrap >/dev/null || die "debootstrap not found: run scripts/install_podman.sh"
        [ "$(id -u)" = 0 ] || die "debootstrap needs root"
        log "debootstrap bookworm ($BASE_PACKAGES) from $DEBIAN_MIRROR"
        ROOTFS="$WORK/rootfs"
        debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$ROOTFS" "$DEBIAN_MIRROR" \
            >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
        echo "runtime:x:1000:1000:job runtime:/home/runtime:/usr/sbin/nologin" >>"$ROOTFS/etc/passwd"
        echo "runtime:x:1000:" >>"$ROOTFS/etc/group"
        echo "runtime:!:19000::::::" >>"$ROOTFS/etc/shadow"
        mkdir -p "$ROOTFS/home/runtime" "$ROOTFS/airflow/xcom"
        chown 1000:1000 "$ROOTFS/home/runtime" "$ROOTFS/airflow/xcom"
        rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
            "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*
        tar -C "$ROOTFS" --numeric-owner -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
        rm -rf "$ROOTFS"
    fi
    log "import $BASE_IMAGE"
    podman import --change 'CMD ["/bin/bash"]' "$BASE_TAR" "$BASE_IMAGE" >/dev/null
fi

# ------------------------------------------------------------------ 2. dependencies
"$UV" export --frozen --no-hashes --no-dev --extra runtime --no-emit-project --no-header \
    --project "$REPO" -o "$WORK/constraints.txt" >/dev/null 2>&1 || die "uv export failed (is uv.lock current?)"
python3 - "$REPO/pyproject.toml" >"$WORK/requirements.txt" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as handle:
    print("\n".join(tomllib.load(handle)["project"]["optional-dependencies"]["runtime"]))
PY
for package in $EXTRA_PACKAGES; do echo "$package" >>"$WORK/requirements.txt"; done
DEPS_KEY="$(cat <(echo "$BASE_KEY") "$WORK/constraints.txt" "$WORK/requirements.txt" | key_of)"
DEPS_IMAGE="localhost/$IMAGE_NAME-deps:$DEPS_KEY"
DEPS_TAR="$CACHE_DIR/runtime-deps-$DEPS_KEY.tar"
if ! has_image "$DEPS_IMAGE"; then
    if [ -s "$DEPS_TAR" ]; then
        log "load $DEPS_IMAGE from $DEPS_TAR"
        podman load -q -i "$DEPS_TAR" >/dev/null
    else
        log "install the runtime dependencies into /opt/venv"
        # The host's package index settings, CA bundle (TLS-intercepting proxies) and proxies apply.
        pip_env=()
        for variable in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_DEFAULT_TIMEOUT \
            HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
            [ -n "${!variable:-}" ] && pip_env+=(-e "$variable")
        done
        ca_bundle="${PIP_CERT:-${SSL_CERT_FILE:-}}"
        if [ -n "$ca_bundle" ] && [ -f "$ca_bundle" ]; then
            cp "$ca_bundle" "$WORK/ca-bundle.crt"
            pip_env+=(-e PIP_CERT=/build/ca-bundle.crt)
        fi
        CONTAINER="ai-runtime-build-$$"
        podman run --name "$CONTAINER" --network host -v "$WORK:/build:ro" "${pip_env[@]}" \
            "$BASE_IMAGE" /bin/sh -ec '
            python3 -m venv /opt/venv
            /opt/venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check \
                -c /build/constraints.txt -r /build/requirements.txt
            find /opt/venv -name "tests" -path "*/site-packages/*/tests" -prune -exec rm -rf {} +
            rm -rf /root/.cache' >&2
        podman commit -q "$CONTAINER" "$DEPS_IMAGE" >/dev/null
        podman rm -f "$CONTAINER" >/dev/null
        CONTAINER=""
        podman save -q -o "$DEPS_TAR.tmp" "$DEPS_IMAGE" && mv "$DEPS_TAR.tmp" "$DEPS_TAR"
        # Keep one dependency tarball: the current one.
        find "$CACHE_DIR" -name 'runtime-deps-*.tar' ! -name "runtime-deps-$DEPS_KEY.tar" -delete
    fi
fi

# ------------------------------------------------------------------ 3. the package
SRC_KEY="$(
    cd "$REPO"
    { echo "$DEPS_KEY"; printf '%s\n' "${RUNTIME_ENV[@]}"; cat pyproject.toml
      find airflow_ai_provider -name '*.py' | LC_ALL=C sort | xargs cat; } | key_of
)"
# The package version, from its one source (hatch reads the same line).
VERSION="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/airflow_ai_provider/__init__.py")"
IMAGE="localhost/$IMAGE_NAME:$SRC_KEY"
if ! has_image "$IMAGE"; then
    log "build the package wheel and install it into $IMAGE"
    "$UV" build --wheel --quiet --project "$REPO" --out-dir "$WORK/dist" >&2
    CONTAINER="ai-runtime-build-$$"
    podman run --name "$CONTAINER" --network none -v "$WORK/dist:/dist:ro" "$DEPS_IMAGE" /bin/sh -ec '
        /opt/venv/bin/pip install --quiet --no-cache-dir --no-deps --disable-pip-version-check /dist/*.whl
        /opt/venv/bin/python -c "import airflow_ai_provider.runtime.__main__"' >&2
    changes=(--change "USER=1000:1000" --change "WORKDIR=/home/runtime"
        --change 'ENTRYPOINT ["python", "-m", "airflow_ai_provider.runtime"]' --change 'CMD ["--help"]'
        --change "LABEL org.opencontainers.image.title=$IMAGE_NAME"
        --change "LABEL org.opencontainers.image.version=$VERSION")
    for variable in "${RUNTIME_ENV[@]}"; do changes+=(--change "ENV $variable"); done
    podman commit -q "${changes[@]}" "$CONTAINER" "$IMAGE" >/dev/null
    podman rm -f "$CONTAINER" >/dev/null
    CONTAINER=""
fi
podman tag "$IMAGE" "localhost/$IMAGE_NAME:$VERSION"
# Drop the images earlier checkouts built (tagged with their source hash).
podman images --format '{{.Repository}}:{{.Tag}}' "localhost/$IMAGE_NAME" |
    grep -E ":[0-9a-f]{16}$" | grep -vx "$IMAGE" | xargs -r podman rmi -f >/dev/null 2>&1 || true
log "image $IMAGE (also localhost/$IMAGE_NAME:$VERSION), $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes"
echo "$IMAGE"
