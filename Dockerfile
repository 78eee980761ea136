# Tessera container image: a multi-stage build into a small, non-root runtime image.
#   docker build -t tessera .
#   docker run -p 8080:8080 -e TESSERA__KEYS__MASTER_KEY="$(openssl rand -base64 32)" tessera

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild the world.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && mkdir -p migrations/postgres migrations/sqlite config && touch config/default.toml \
    && cargo build --release --locked || true
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked \
    && install -D -m 0755 target/release/tessera /out/tessera \
    && mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
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
