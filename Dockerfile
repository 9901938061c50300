# Huddle in a container: the release binary on a slim Debian image.
#
#   docker build -t huddle .
#   docker run -p 7443:7443/udp -v huddle-certs:/var/lib/huddle huddle
#
# The server listens on UDP 7443 (QUIC) on every interface of the container, writes its
# development CA, certificate and token secret into the volume on first start (keep the volume:
# clients trust its ca.pem, and tokens are minted from its token.secret). A configuration file:
# mount it and append `--config /etc/huddle/huddle.toml` to the command. For production, mount
# real certificates and pass --cert/--key (SECURITY.md).

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# gcc for mimalloc (the binary's allocator) and ring.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev git \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bin huddle && strip target/release/huddle

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/huddle --create-home huddle \
    && mkdir -p /etc/huddle
COPY --from=build /src/target/release/huddle /usr/local/bin/huddle
USER huddle
WORKDIR /var/lib/huddle
VOLUME /var/lib/huddle
ENV HUDDLE_CERTS_DIR=/var/lib/huddle
EXPOSE 7443/udp
ENTRYPOINT ["huddle"]
CMD ["serve", "--listen", "0.0.0.0:7443"]
