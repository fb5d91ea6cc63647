# switchyard: built with cargo (fleet support included), run on a slim
# image as a non-root user. The config is /etc/switchyard/switchyard.yaml
# (contrib/docker/switchyard.yaml; mount your own over it); the state file
# and audit log live on the volume /var/lib/switchyard.
#
#   docker build --build-arg SWITCHYARD_COMMIT=$(git rev-parse --short=12 HEAD) \
#     -t switchyard .
#   docker run -e SWITCHYARD_ADMIN_TOKEN=... -p 8080:8080 -p 9901:9901 \
#     -v switchyard-state:/var/lib/switchyard switchyard
#
# .ci/checks/docker.sh lints this file and runs the build stage's commands
# in a clean copy of the sources.
FROM rust:1-slim-bookworm AS build
# make: the jemalloc allocator's build runs it. protoc and the protos of
# libprotobuf-dev: fleet mode's etcd client compiles etcd's protos.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The build context has no .git (.dockerignore): `switchyard --version`
# names the commit given here, else says `commit unknown`.
ARG SWITCHYARD_COMMIT
COPY Cargo.toml Cargo.lock build.rs ./
# .cargo/config.toml sets how the allocator gives memory back.
COPY .cargo ./.cargo
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --features fleet --bin switchyard \
 && strip target/release/switchyard

FROM debian:bookworm-slim
# curl: the HEALTHCHECK's client. ca-certificates: TLS to upstreams and etcd.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/switchyard --create-home switchyard
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
COPY contrib/docker/switchyard.yaml /etc/switchyard/switchyard.yaml
USER 10001:10001
WORKDIR /var/lib/switchyard
ENV SWITCHYARD_CONFIG=/etc/switchyard/switchyard.yaml
VOLUME ["/var/lib/switchyard"]
# The proxy and the admin API, where contrib/docker/switchyard.yaml binds them.
EXPOSE 8080 9901
# Ready: config loaded, not draining, a pool can serve (503 otherwise).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9901/readyz"]
# SIGTERM drains in-flight requests (drain.timeout, 30s by default) and
# exits 0: give `docker stop` more than that (docker stop -t 40).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["run"]
