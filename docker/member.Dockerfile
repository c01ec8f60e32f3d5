# The member agent: `fedmember serve` with its config at /etc/fedmember/member.toml.
#
#   docker build -f docker/member.Dockerfile -t binder-federation/member .
#   docker run -p 8586:8586 -v "$PWD/site:/etc/fedmember" binder-federation/member
#
# /etc/fedmember holds what `fedmember init DIR --backend KIND` and `fedmember enroll` wrote:
# member.toml, keys/ and the pinned broker.jwks.json. Enrolling from inside the container needs the
# mount writable:
#   docker run --rm -v "$PWD/site:/etc/fedmember" binder-federation/member \
#       enroll https://binder.example.org --token T --config /etc/fedmember/member.toml
# The image carries the kubernetes backend's client; the local backend's jupyter-server is not
# installed (that backend is for single machines, not containers).

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
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --constraint docker/requirements.lock ".[kubernetes]"

FROM python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
# git: the binderhub and kubernetes backends resolve repo refs. A fixed numeric uid/gid, so
# Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fedmember \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin fedmember \
    && mkdir -p /etc/fedmember/keys /var/lib/fedmember \
    && chown -R 10001:10001 /etc/fedmember /var/lib/fedmember
USER 10001:10001
WORKDIR /etc/fedmember
EXPOSE 8586
# The JWKS answers as soon as the agent serves and needs no backend; /health reflects the
# backend (BinderHub, cluster), which the broker judges from the signed status ads instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8586/.well-known/jwks.json', timeout=4)"]
ENTRYPOINT ["fedmember"]
CMD ["serve", "--config", "/etc/fedmember/member.toml", "--host", "0.0.0.0", "--port", "8586"]
