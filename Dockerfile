# Multi-stage build: the release binary on a small, non-root runtime image without a shell.
#   docker build -t portcullis .
#   docker run -p 8080:8080 portcullis          # the quick start: sign-in pages and demo app
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY examples ./examples
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin portcullis \
    && rm -rf src
COPY src ./src
COPY migrations ./migrations
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin portcullis

# distroless/cc: glibc and CA certificates, no shell, no package manager; `nonroot` is uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
# The default SQLite file lands here; mount a volume (or use PostgreSQL) to keep it.
WORKDIR /home/nonroot
# Inside a container, listen on every interface; the admin listener (health, readiness,
# metrics) stays on loopback unless the config moves it (Kubernetes probes need 0.0.0.0:9090).
ENV PORTCULLIS_SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080 9090
USER nonroot
# Configure with a mounted file (--config /etc/portcullis/portcullis.toml, or PORTCULLIS_CONFIG)
# and PORTCULLIS_* variables; secrets as *_file keys pointing at mounted files.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s \
    CMD ["/usr/local/bin/portcullis", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/portcullis"]
