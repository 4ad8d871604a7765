# syntax=docker/dockerfile:1
# The `shop` image: one binary that runs any subset of the contexts (docs/DEPLOYMENT.md).
#
#   docker build -t shop .
#
# Build stage: a release build of the `shop` package, exactly as locked. The cache mounts keep
# the crates.io downloads and the target folder between builds (BuildKit), so a change to the
# shop's own code rebuilds only the crates it touches, with no dependency-only layer to keep
# in step with the workspace's member list.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p shop \
    && install -m 0755 target/release/shop /usr/local/bin/shop

# Runtime stage: Debian slim with the CA certificates (TLS to Postgres, NATS and an OTLP
# collector) and BusyBox for the health check. BusyBox's `wget` is one ~1 MiB binary linked
# against libc only; curl would bring libcurl and a dozen libraries with it. The shop itself
# needs nothing else: its defaults, migrations and templates are compiled in.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates busybox \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 shop \
    && useradd --system --uid 10001 --gid shop --home-dir /var/lib/shop --no-create-home shop \
    && install -d -o shop -g shop -m 0750 /var/lib/shop
COPY --from=build /usr/local/bin/shop /usr/local/bin/shop
# Listen on every interface of the container; the data folder (development signing key, the
# file sender's mail, SQLite files when no database URL is set) is the writable one above.
ENV SHOP__SERVER__HOST=0.0.0.0 \
    SHOP__SERVER__PORT=8080 \
    SHOP__INTERNAL__HOST=0.0.0.0 \
    SHOP__INTERNAL__PORT=8090 \
    SHOP__DATA_DIR=/var/lib/shop \
    SHOP__LOG__FORMAT=json
USER 10001:10001
WORKDIR /var/lib/shop
# 8080: the public API, /healthz and /readyz; 8090: the internal listener of a split
# deployment (open only when this process runs fewer than all contexts, or has a token).
EXPOSE 8080 8090
# Liveness, not readiness: a process whose database is down is alive and should not be
# restarted for it (Kubernetes asks /readyz separately).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["shop"]
CMD ["serve"]
