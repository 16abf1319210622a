# Sentinel in a container: a Rust build stage, then a slim Debian runtime that holds the binary and
# nothing else it does not link (libstdc++ for DuckDB's C++, libc).
#
#   docker build -t sentinel .
#   docker run --rm -v "$PWD/sentinel-data:/data" sentinel                  # the gauntlet
#   docker run --rm -v "$PWD/exports:/in:ro" -v "$PWD/sentinel-data:/data" \
#       sentinel recover --input /in                                        # your exports
#   docker run --rm -v "$PWD/sentinel-data:/data" sentinel run --fail-on-halt; echo $?   # 3 on HALT
#
# The work directory is /data (the image sets SENTINEL_WORKDIR=/data, which --workdir defaults
# to); mount a volume there, writable by uid 10001. Exit codes pass through unchanged. The base
# images are build arguments, so the image also builds from a local mirror or base:
#   --build-arg RUST_IMAGE=... --build-arg RUNTIME_IMAGE=...
# `--target prebuilt` wraps a binary built outside (dist/sentinel in the build context) instead
# of compiling: scripts/container-check.sh uses it where no registry is reachable.

ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# The bundled DuckDB is C++: the build needs a C++ compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY queries ./queries
COPY reports ./reports
COPY benches ./benches
RUN cargo build --release --locked --bin sentinel \
 && install -m 0755 target/release/sentinel /usr/local/bin/sentinel

FROM ${RUNTIME_IMAGE} AS runtime-base
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sentinel" \
      org.opencontainers.image.description="Batch engine for a fleet's telemetry after a firmware (OTA) campaign: triage, device states, costed recovery actions, rollout gate and an exec report" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="Sentinel"
RUN groupadd --gid 10001 sentinel \
 && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin sentinel \
 && mkdir -p /data \
 && chown 10001:10001 /data
COPY deploy/cron/sentinel-nightly /usr/local/bin/sentinel-nightly
ENV SENTINEL_WORKDIR=/data
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
ENTRYPOINT ["sentinel"]
CMD ["run"]

FROM runtime-base AS prebuilt
COPY dist/sentinel /usr/local/bin/sentinel

FROM runtime-base AS runtime
COPY --from=build /usr/local/bin/sentinel /usr/local/bin/sentinel
