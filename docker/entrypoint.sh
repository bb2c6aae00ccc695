#!/bin/sh
# The image's entrypoint. Runs the SFU with the first of:
#   $SFU_CONFIG                 if set
#   /etc/sfu/config.toml        if mounted
#   /app/docker/config.toml     the baked-in default (docker/config.toml)
# SFU_* environment variables override the file (see sfu/config/loading.py).
#
#   docker run ... sfu                        the server
#   docker run ... sfu --log-level debug      the server, with options of `sfu`
#   docker run ... sfu sfu certs --host x     any other command
set -eu

if [ -n "${SFU_CONFIG:-}" ]; then
    config=$SFU_CONFIG
elif [ -f /etc/sfu/config.toml ]; then
    config=/etc/sfu/config.toml
else
    config=/app/docker/config.toml
fi

case "${1:-}" in
    "" | -*) exec /opt/sfu/bin/sfu --config "$config" "$@" ;;
    run) shift; exec /opt/sfu/bin/sfu run --config "$config" "$@" ;;
    *) exec "$@" ;;
esac
