# syntax=docker/dockerfile:1
# A small non-root image: the release binary on distroless (glibc, CA certificates, no shell).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# cmake and clang build aws-lc-rs, the TLS crypto of both the AWS SDK and kube.
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin bucketcors && strip target/release/bucketcors

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/bucketcors /usr/local/bin/bucketcors
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/bucketcors"]
CMD ["run"]
