# syntax=docker/dockerfile:1
# A small non-root image FROM scratch: the release binary, the loader and shared libraries it
# needs, and the CA certificates, all from Debian bookworm's packages (scripts/image.sh rootfs).
# `make image` builds the same last stage with podman, from a root file system made here.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# cmake and clang build aws-lc-rs, the TLS crypto of both the AWS SDK and kube.
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# A member of the workspace (the tests' support): cargo reads it to resolve Cargo.lock.
COPY tests/support ./tests/support
COPY scripts/image.sh ./scripts/image.sh
RUN cargo build --release --locked --bin bucketcors && \
    scripts/image.sh rootfs target/release/bucketcors /rootfs

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/bucketcors/bucketcors
COPY --from=build /rootfs/ /
LABEL org.opencontainers.image.title="bucketcors" \
      org.opencontainers.image.description="Kubernetes operator that keeps the CORS configuration of S3 buckets equal to BucketCors resources" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/bucketcors"]
CMD ["run"]
