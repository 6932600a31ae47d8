# Multi-stage build: the release binary on a small, non-root runtime image without a shell.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin portcullis

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
# The default SQLite file lands here; mount a volume (or use PostgreSQL) to keep it.
WORKDIR /home/nonroot
EXPOSE 8080 9090
USER nonroot
# Configure with a mounted file (--config /etc/portcullis/portcullis.toml) or PORTCULLIS_* env;
# inside a container listen on 0.0.0.0, e.g. -e PORTCULLIS_SERVER__LISTEN=0.0.0.0:8080.
ENTRYPOINT ["/usr/local/bin/portcullis"]
