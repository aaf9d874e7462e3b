# syntax=docker/dockerfile:1
#
# tokengate images, built from the workspace:
#
#   docker build -t tokengate .                      control plane + demo upstream + filter wasm
#   docker build --target filter -o out .            just tokengate_filter.wasm, into ./out/
#
# The runtime image holds both binaries (`tokengate`, the default command, and
# `demo-upstream`) and the filter at /usr/local/share/tokengate/tokengate_filter.wasm, so
# docker-compose.yml runs the control plane, the demo upstream and the one-shot job that
# hands the filter to Envoy from one image.

FROM rust:1-bookworm AS builder
RUN rustup target add wasm32-wasip1
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the build directory between builds; the
# artifacts are copied out because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tokengate-control-plane -p tokengate-demo-upstream \
 && cargo build --release --locked --target wasm32-wasip1 -p tokengate-filter \
 && mkdir -p /out \
 && cp target/release/tokengate target/release/demo-upstream \
       target/wasm32-wasip1/release/tokengate_filter.wasm /out/

# Only the filter: `docker build --target filter -o out .` writes it to ./out/.
FROM scratch AS filter
COPY --from=builder /out/tokengate_filter.wasm /tokengate_filter.wasm

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/tokengate --create-home tokengate
COPY --from=builder /out/tokengate /out/demo-upstream /usr/local/bin/
COPY --from=builder /out/tokengate_filter.wasm /usr/local/share/tokengate/tokengate_filter.wasm
USER tokengate
WORKDIR /var/lib/tokengate
# Listen on all interfaces inside the container; SQLite in the home directory unless
# DATABASE_URL names PostgreSQL (docker-compose.yml does).
ENV TOKENGATE_LISTEN=0.0.0.0:8080 \
    DATABASE_URL=sqlite:///var/lib/tokengate/tokengate.db
EXPOSE 8080
CMD ["tokengate"]
