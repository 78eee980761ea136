# syntax=docker/dockerfile:1.7
# Tessera container image: a multi-stage build into a small, non-root runtime image that runs
# with a read-only root filesystem (only /data, the SQLite default, is written).
#   docker build -t tessera .
#   docker run --read-only -p 8080:8080 -e TESSERA__KEYS__MASTER_KEY="$(openssl rand -base64 32)" tessera
# scripts/container-check proves this final stage without a Docker engine.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The registry and target directory are BuildKit cache mounts: a source edit rebuilds only
# Tessera, and a failing build fails the image (no warm-up build whose errors are ignored).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tessera \
    && install -D -m 0755 target/release/tessera /out/tessera \
    && mkdir -p /out/data

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="Tessera" \
      org.opencontainers.image.description="Standalone authentication server: password login, rotating refresh tokens, access JWTs, JWKS and revocation" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/tessera /usr/local/bin/tessera
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /
ENV TESSERA__HTTP__BIND=0.0.0.0:8080 \
    TESSERA__DATABASE__URL=sqlite:///data/tessera.db \
    TESSERA__LOG__FORMAT=json
USER 65532:65532
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/tessera", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tessera"]
CMD ["serve"]
