# The SFU and its browser client in one image.
#
#   docker build -t sfu .        (or: podman build --format docker -t sfu .)
#   docker run -p 3000:3000 -p 40000:40000/udp -e SFU_ANNOUNCED_IP=<your IP> sfu
#
# Configuration: /etc/sfu/config.toml when one is mounted there, else the
# baked-in docker/config.toml (single-port mode: HTTP on 3000/tcp, all media on
# 40000/udp, announced_ip "auto"). SFU_* variables override either file:
# SFU_ANNOUNCED_IP, SFU_LISTEN_IP, SFU_HTTP_PORT, SFU_UDP_PORT, SFU_TLS_CERT,
# SFU_TLS_KEY; SFU_CONFIG names another config file.
#
# Plain Dockerfile syntax (no COPY --link, no heredocs) so that BuildKit, the
# classic builder and Podman/Buildah all build it.

# ---------------------------------------------------------------- browser bundle
FROM node:20-bookworm-slim AS client
WORKDIR /src/client
COPY client/package.json client/package-lock.json ./
# npm also trusts the system CA bundle when the image has one (a build behind a
# TLS-inspecting proxy); otherwise Node's own CA store is used.
RUN if [ -f /etc/ssl/certs/ca-certificates.crt ]; then \
        export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt; \
    fi \
    && npm ci --no-audit --no-fund --loglevel=error
COPY client/ ./
RUN npm run build

# ---------------------------------------------------------------- Python
FROM debian:bookworm-slim AS python
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sfu \
    && useradd --system --uid 10001 --gid sfu --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin sfu \
    && mkdir -p /etc/sfu

# The dependency list alone, out of pyproject.toml: the layer that installs
# them below is rebuilt only when this list changes.
FROM python AS requirements
COPY pyproject.toml /tmp/
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt

# ---------------------------------------------------------------- C extension
# sfu.media._native (the forwarding path in C, see sfu/media/native/module.c),
# compiled here so that the runtime image carries no compiler.
FROM python AS native
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev python3-dev \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
COPY sfu/media/_sockaddr.h /build/
COPY sfu/media/native/ /build/native/
RUN cd /build && gcc -O2 -shared -fPIC -Wall $(python3-config --includes) native/module.c \
        -o "_native$(python3-config --extension-suffix)"

# ---------------------------------------------------------------- runtime
FROM python
ARG PIP_NO_CACHE_DIR=1
ARG PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# pip, like npm above, also trusts the system CA bundle when there is one.
COPY --from=requirements /tmp/requirements.txt /tmp/
RUN if [ -f /etc/ssl/certs/ca-certificates.crt ]; then \
        export PIP_CERT=/etc/ssl/certs/ca-certificates.crt; \
    fi \
    && python3 -m venv /opt/sfu \
    && /opt/sfu/bin/pip install --quiet -r /tmp/requirements.txt "setuptools>=77" \
    && rm /tmp/requirements.txt

# The packages, installed in place from this source tree in /app, so that
# sfu/server.py finds the browser bundle where it looks in a checkout:
# /app/client/dist, next to /app/sfu. The benchmark (sfu_bench, for `sfu bench`)
# comes along as it always has; the server never imports it, and its optional
# C counter is not built here (it counts in Python).
COPY pyproject.toml README.md config.example.toml ./
COPY sfu/ sfu/
COPY sfu_bench/ sfu_bench/
COPY docker/ docker/
COPY --from=client /src/client/dist/ client/dist/
COPY --from=native /build/_native.*.so sfu/media/
RUN /opt/sfu/bin/pip install --quiet --no-deps --no-build-isolation --editable /app \
    && /opt/sfu/bin/python -c "import sfu.media._native" \
    && /opt/sfu/bin/python -m compileall -q /app/sfu /app/sfu_bench \
    && chmod 0755 /app/docker/entrypoint.sh /app/docker/healthcheck.py

ENV PATH=/opt/sfu/bin:$PATH \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 3000/tcp 40000/udp
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/opt/sfu/bin/python", "/app/docker/healthcheck.py"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/docker/entrypoint.sh"]
