# The federation broker: `fedbroker serve` with its config at /etc/fedbroker/broker.toml.
#
#   docker build -f docker/broker.Dockerfile -t binder-federation/broker .
#   docker run -p 8585:8585 -v "$PWD/site:/etc/fedbroker" binder-federation/broker
#
# /etc/fedbroker holds what `fedbroker init DIR` wrote: broker.toml and keys/ (relative paths in
# broker.toml are resolved against it). With the default SQLite registry the mount must be writable;
# with PostgreSQL (db_url = postgresql+asyncpg://...) it can be read-only. The Helm chart mounts the
# config from a ConfigMap and the keys and database URL from Secrets elsewhere (see charts/).

# The base image is pinned by digest (the multi-arch index of python:3.12-slim), so a rebuild gets
# the same OS and Python; bump it deliberately: `docker buildx imagetools inspect python:3.12-slim`.
FROM python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY docker/requirements.lock docker/requirements.lock
COPY specs/fedproto specs/fedproto
COPY broker/fedbroker broker/fedbroker
COPY member-node/fedmember member-node/fedmember
# Dependencies at the versions the test suite ran with (docker/lock.py writes the lock).
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --constraint docker/requirements.lock .

FROM python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 fedbroker \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin fedbroker \
    && mkdir -p /etc/fedbroker \
    && chown 10001:10001 /etc/fedbroker
USER 10001:10001
WORKDIR /etc/fedbroker
EXPOSE 8585
# /versions is cheap and answers while the process serves; /health answers 503 until a member is
# routable, which would mark a fresh broker (no members yet) unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8585/versions', timeout=4)"]
ENTRYPOINT ["fedbroker"]
CMD ["serve", "--config", "/etc/fedbroker/broker.toml", "--host", "0.0.0.0", "--port", "8585"]
