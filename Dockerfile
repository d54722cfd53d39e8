# syntax=docker/dockerfile:1
# strangler: the STOMP sidecar proxy (see README.md). Small, non-root, pinned.
#
#   docker build -t strangler:0.1.0 .
#   docker build --build-arg EXTRAS=fast,capture -t strangler:0.1.0-capture .   # + run --capture
#   docker build --build-arg GIT=true -t strangler:0.1.0-git .   # + git, for `rollout --git`
#   docker run --rm -v "$PWD/deploy/compose:/etc/strangler:ro" -p 127.0.0.1:61613:61613 \
#       -p 127.0.0.1:9090:9090 strangler:0.1.0
#
# routes.yaml is expected at /etc/strangler/routes.yaml, mounted read-only. Mount the
# *folder*, not the file: the proxy watches the folder, and a single-file bind mount (or a
# Kubernetes subPath) pins the old inode, so an edit replaced by rename is never seen.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
# The extras shipped: `fast` (uvloop) always; add `capture` (mitmproxy, for `run --capture`
# and `replay`/`plan` of flow files: 41 more packages, about 100 MB) when this image captures.
# Each choice has its lock, requirements/EXTRAS.txt (`,` -> `-`), written by scripts/lock.sh.
ARG EXTRAS=fast
# `true` adds git to the runtime image: the rollout controller's (`strangler rollout --git`,
# deploy/kubernetes/rollout) commits and pushes the routes file. The sidecar needs none.
ARG GIT=false

# --- build: the strangler wheel plus the locked wheels of all its dependencies --------------
FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# gcc and the Python headers build the compiled frame pump (Cython, setup.py); the slim
# image has its Python's headers but no compiler. Only this stage gets them.
RUN missing=""; \
    command -v gcc >/dev/null 2>&1 || missing="gcc libc6-dev"; \
    python -c 'import os, sys, sysconfig; \
        sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        || missing="$missing python3-dev"; \
    if [ -n "$missing" ]; then \
        apt-get update && apt-get install -y --no-install-recommends $missing \
        && rm -rf /var/lib/apt/lists/*; \
    fi
# Only what the wheels need (.dockerignore keeps the rest of the tree out of the context).
COPY pyproject.toml setup.py README.md ./
COPY requirements ./requirements
COPY strangler ./strangler
# Every dependency exactly as locked, each file checked against the lock's hashes: two
# builds of one commit ship the same packages. Then strangler's own wheel, without deps.
RUN lock="requirements/$(echo "${EXTRAS}" | tr , -).txt" \
 && { test -f "$lock" || { echo "no lock $lock for EXTRAS=${EXTRAS}" >&2; exit 1; }; } \
 && pip wheel --wheel-dir /wheels --require-hashes --no-deps -r "$lock" \
 && pip wheel --wheel-dir /wheels --no-deps .

# --- runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG EXTRAS
ARG GIT
LABEL org.opencontainers.image.title="strangler" \
      org.opencontainers.image.description="STOMP sidecar proxy moving producers from ActiveMQ to Amazon MQ" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed, numeric uid/gid so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 strangler \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin strangler \
 && mkdir -p /etc/strangler
RUN if [ "${GIT}" = true ]; then \
        apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# Installed from the build stage's wheels through a bind mount: no wheel files, no compiler
# and no pip cache end up in a layer; --no-index: nothing but the locked wheels can be used.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "strangler[${EXTRAS}]" \
 && strangler --version | grep -F "(frame pump: compiled)"

USER 10001:10001
WORKDIR /
# 61613: STOMP for the producer (inside a pod the sidecar listens on loopback only);
# 9090: admin HTTP (/healthz /readyz /metrics /routes /status).
EXPOSE 61613 9090

# No curl in slim: the standard library does the probe. urlopen raises on a 503.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=2)"]

# SIGTERM: stop accepting, wait --shutdown-grace for in-flight receipts, exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["strangler"]
CMD ["run", "--routes", "/etc/strangler/routes.yaml", "--listen", "0.0.0.0:61613", "--admin", "0.0.0.0:9090"]
