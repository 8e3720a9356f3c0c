# syntax=docker/dockerfile:1.7
#
# The syncsets image: the one `syncsets` binary on distroless/cc (glibc, libgcc, CA
# certificates; no shell, no package manager).
#
#   docker build -t IMG .          (or: make docker-build IMG=…)
#   docker run -p 7070:7070 -v syncsets:/var/lib/syncsets IMG          # the embedded hub
#   docker run IMG controller --store postgres://… --bus amqp://…      # controllers only
#
# Runs as a non-root user and under any UID whose group is 0 (OpenShift's restricted SCC):
# the only directory it writes, the volume /var/lib/syncsets, belongs to group 0 with the
# owner's rights. The root filesystem can be read-only; the working directory and HOME are
# never written. Health: GET /livez and /readyz over HTTPS on 7070 (anonymous), or over plain
# HTTP on the metrics address of `syncsets controller` (8080 in the manifests).
#
# deploy/test/image-steps.sh runs this file's build and run steps without Docker and reads
# them from here: keep ENTRYPOINT and CMD in exec form, one ENV per line.

ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY src src
# `syncsets bench` compiles in Hive's scale-test set and platform workloads from these.
COPY tests/fixtures/hive tests/fixtures/hive
COPY tests/fixtures/platform tests/fixtures/platform
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin syncsets \
    && install -D -m 0755 target/release/syncsets /out/syncsets \
    && install -d -m 0770 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="syncsets" \
      org.opencontainers.image.description="Keeps fleets of Kubernetes clusters in sync with Hive SyncSets, without a Kubernetes hub" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.k8s.display-name="syncsets" \
      io.openshift.expose-services="7070:https"
COPY --from=build /out/syncsets /usr/local/bin/syncsets
COPY --from=build --chown=65532:0 --chmod=0770 /out/data /var/lib/syncsets
ENV SYNCSETS_DATA_DIR=/var/lib/syncsets/data
ENV SYNCSETS_LISTEN=0.0.0.0:7070
ENV SYNCSETS_LOG_FORMAT=json
WORKDIR /
USER 65532:0
EXPOSE 7070 8080
VOLUME ["/var/lib/syncsets"]
ENTRYPOINT ["/usr/local/bin/syncsets"]
CMD ["serve"]
