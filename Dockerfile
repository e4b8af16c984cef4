# syntax=docker/dockerfile:1
# gitfaas container image (needs BuildKit, the default builder of Docker >= 23).
#   docker build -t registry.example.com/gitfaas:0.1.0 .
#   docker run --rm -p 5000:5000 --user "$(id -u)" -e GITFAAS_DATA_DIR=/tmp/gitfaas-data \
#     -v ~/.kube/config:/kube/config:ro registry.example.com/gitfaas:0.1.0 \
#     serve --kubeconfig /kube/config --auth kubernetes --git-url https://...
# (--user: a kubeconfig is usually readable by its owner only; the image's
# own user is 65532, whose home holds the store by default.)
#
# Runtime: distroless cc (glibc, libgcc, libssl3 for git2's https transport,
# CA certificates, the nonroot user 65532, no shell, no package manager).
# zlib is linked statically (LIBZ_SYS_STATIC) and libssh2-sys bundles its own
# libssh2, so the binary needs no library the image lacks.
#
# ssh remotes: mount a known_hosts file at /etc/gitfaas/known_hosts and set
# GITFAAS_KNOWN_HOSTS=/etc/gitfaas/known_hosts (the Helm chart in
# deploy/gitfaas does that from git.knownHosts); the private key likewise,
# with GITFAAS_SSH_KEY. The root filesystem may be read-only: gitfaas writes
# only its git cache (--cache-dir, GITFAAS_CACHE_DIR; default $TMPDIR =
# /tmp) and its embedded store (--data-dir, GITFAAS_DATA_DIR; default
# /home/nonroot/.local/state/gitfaas): mount writable volumes there (the
# chart mounts emptyDirs at /tmp, /var/cache/gitfaas and /var/lib/gitfaas).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
# nodejs and npm: build.rs builds the web console (console/) with the
# esbuild and TypeScript of console/package-lock.json (npm ci, from the npm
# registry); the image itself carries no Node.js, only the bundle compiled
# into the binary.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev ca-certificates nodejs npm \
    && rm -rf /var/lib/apt/lists/*
ENV LIBZ_SYS_STATIC=1 \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
WORKDIR /src
COPY . .
# The registry and target dir are cache mounts: a rebuild after a change of
# src/ recompiles only gitfaas. The binary is copied out of the cache mount;
# its line tables (backtraces) are kept, compressed (125 MB -> 47 MB).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/gitfaas /gitfaas \
    && objcopy --compress-debug-sections=zlib /gitfaas \
    && /gitfaas --version

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="gitfaas" \
      org.opencontainers.image.description="Push Kubernetes manifests to git; run them with an HTTP call" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /gitfaas /gitfaas
# distroless' nonroot user, numeric so that Kubernetes' runAsNonRoot can
# verify it (a user name cannot be checked without the image's /etc/passwd).
USER 65532:65532
ENV TMPDIR=/tmp
EXPOSE 5000
ENTRYPOINT ["/gitfaas"]
CMD ["serve"]
