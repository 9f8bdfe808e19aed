# syntax=docker/dockerfile:1
#
# The production server: wxpay-host built WITHOUT the `sandbox` feature, so the image holds no
# simulator and no test key. The image serves the public listener on 8080; the back office and
# /metrics stay on the admin listener (WXPAY_ADMIN_LISTEN, default 127.0.0.1:8081), which is
# deliberately not exposed. See "Deployment" in README.md and deploy/.
#
#   docker build -t wxpay-host .
#   docker run -d --name wxpay --env-file /etc/wxpay/wxpay.env -v wxpay-data:/var/lib/wxpay \
#     -v /etc/wxpay/apiclient_key.pem:/run/secrets/apiclient_key.pem:ro \
#     -p 127.0.0.1:8080:8080 wxpay-host
#
# with, in that env file (deploy/wxpay.env.example), WXPAY_LISTEN unset (the image sets it),
# WXPAY_MERCHANT_KEY_FILE=/run/secrets/apiclient_key.pem (readable by uid 10001), and
# WXPAY_TRUSTED_PROXIES=<the bridge gateway, e.g. 172.17.0.1> for a proxy on the host.

# Builder and runtime share one Debian release, so the binary's glibc is the runtime's.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# aws-lc-sys compiles AWS-LC with the image's C compiler (gcc). On x86_64 and aarch64 Linux it
# uses pre-generated bindings: no CMake, clang, bindgen, Go or NASM needed.
# .dockerignore admits only the workspace manifests and the member crates.
COPY . .
# The target directory is a cache mount (it is not in any layer), so the binary is copied out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release -p wxpay-host --no-default-features --locked \
    && install -D -m 0755 target/release/wxpay-host /out/wxpay-host

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: the upstream client (reqwest + rustls) verifies api.mch.weixin.qq.com and
# api.weixin.qq.com against the system trust store. Nothing else is installed: no compiler, no
# curl. Versions are not pinned: the release's security updates should be taken on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 wxpay \
    && useradd --system --uid 10001 --gid wxpay --home-dir /var/lib/wxpay --no-create-home \
       --shell /usr/sbin/nologin wxpay \
    && install -d -o wxpay -g wxpay -m 0700 /var/lib/wxpay
# The binary is all there is: the SQLite and PostgreSQL migrations are embedded in it
# (sqlx::migrate!), and the configuration comes from WXPAY_* variables at run time.
COPY --from=builder /out/wxpay-host /usr/local/bin/wxpay-host

# Public listener on all interfaces of the container; the SQLite database on the volume.
# WXPAY_ADMIN_LISTEN keeps its default, 127.0.0.1:8081 (loopback of the container): to reach
# the back office, set it to 0.0.0.0:8081 and publish it on the host's loopback only
# (-p 127.0.0.1:8081:8081), never on a public interface.
ENV WXPAY_LISTEN=0.0.0.0:8080 \
    WXPAY_DATABASE_URL=sqlite:///var/lib/wxpay/wxpay.db
VOLUME ["/var/lib/wxpay"]
WORKDIR /var/lib/wxpay
EXPOSE 8080
USER 10001:10001

# Liveness through bash's /dev/tcp (bash, head and grep are part of every Debian image): no
# extra tool. /healthz, not /readyz: a host without platform keys yet is alive, not ready.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${WXPAY_LISTEN##*:} && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# SIGTERM (Docker's default stop signal) makes the host finish in-flight requests and stop.
STOPSIGNAL SIGTERM
ENTRYPOINT ["wxpay-host", "serve"]
