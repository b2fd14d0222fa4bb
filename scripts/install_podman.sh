#!/usr/bin/env bash
# Install podman (Debian package) and debootstrap, and write the containers.conf podman needs on
# machines like our CI runners: the runc runtime and explicit ulimits (crun and the inherited
# ulimits fail there). Prints the containers.conf path; export it as CONTAINERS_CONF.
#
#   CONTAINERS_CONF="$(bash scripts/install_podman.sh)"
set -euo pipefail

CONF_DIR="${AI_PROVIDER_PODMAN_CONF_DIR:-$HOME/.config/airflow-ai-provider}"
CONF="$CONF_DIR/containers.conf"

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /usr/libexec/podman/catatonit ] || command -v catatonit >/dev/null 2>&1 || missing+=(catatonit)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install_podman.sh: need root to install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends \
        podman runc catatonit debootstrap uidmap slirp4netns fuse-overlayfs ca-certificates >&2
fi

mkdir -p "$CONF_DIR"
cat >"$CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
CONF
echo "$CONF"
