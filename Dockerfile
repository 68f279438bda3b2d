# oxidp container image: build in the Rust image, run in slim Debian as a non-root user.
#   docker build -t oxidp .
#   docker run -p 9000:9000 -e OXIDP_SERVER__BIND=0.0.0.0:9000 \
#     -e OXIDP_SERVER__ISSUER=https://id.example.com -e OXIDP_DATABASE__URL=postgres://… \
#     -v oxidp-keys:/var/lib/oxidp/keys oxidp
# See docs/operations.md.

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
COPY assets ./assets
RUN cargo build --release --locked --bin oxidp

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/oxidp --create-home oxidp \
    && install -d -o oxidp -g oxidp -m 0700 /var/lib/oxidp/keys /var/lib/oxidp/data
COPY --from=build /src/target/release/oxidp /usr/local/bin/oxidp
USER 10001:10001
WORKDIR /var/lib/oxidp
# Defaults for a container: listen on every interface; keys and SQLite under the volume.
ENV OXIDP_SERVER__BIND=0.0.0.0:9000 \
    OXIDP_KEYS__DIR=/var/lib/oxidp/keys \
    OXIDP_DATABASE__URL=sqlite:///var/lib/oxidp/data/oxidp.db \
    OXIDP_EMAIL__OUTBOX_DIR=/var/lib/oxidp/data/outbox
VOLUME ["/var/lib/oxidp"]
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/oxidp"]
CMD ["serve"]
