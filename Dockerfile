# switchyard: build with cargo, run on a slim image as a non-root user.
# The config is mounted at /etc/switchyard (switchyard.yaml, TLS files, token).
FROM rust:1-slim-bookworm AS build
# Fleet mode's etcd client compiles etcd's protos: protoc and the protos of
# libprotobuf-dev (descriptor.proto, struct.proto) are needed to build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --features fleet --bin switchyard

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/switchyard --create-home switchyard
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
USER switchyard
WORKDIR /var/lib/switchyard
ENV SWITCHYARD_CONFIG=/etc/switchyard/switchyard.yaml
VOLUME ["/etc/switchyard"]
EXPOSE 8080 9901
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["run"]
