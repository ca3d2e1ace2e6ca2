# syntax=docker/dockerfile:1
# AI Admin Connect: the release build with cargo leptos, then a slim runtime with the binary and
# the site only, run as a non-root user, with a health check. No container engine runs on the
# machine this was written on: scripts/check-deploy.sh checks this file's shape and runs the
# runtime stage's command (its ENV, its CMD, its HEALTHCHECK) directly against the built binary.

FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-unknown-unknown \
 && rustup component add rust-src \
 && apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The tools first (cargo-leptos, wasm-bindgen, and wasm-opt/sass from npm — never from GitHub),
# cached as long as the setup script and the npm lockfile do not change.
COPY scripts/setup.sh scripts/setup.sh
COPY package.json package-lock.json ./
RUN scripts/setup.sh
COPY . .
RUN PATH="/src/node_modules/.bin:$PATH" scripts/build-site.sh \
 && strip target/release/server

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/ai-admin-connect --shell /usr/sbin/nologin ai-admin \
 && install -d -o ai-admin -g ai-admin -m 0700 /var/lib/ai-admin-connect
WORKDIR /app
COPY --from=build /src/target/release/server /app/server
COPY --from=build /src/target/site /app/site
ENV LEPTOS_SITE_ADDR=0.0.0.0:3000
ENV LEPTOS_SITE_ROOT=/app/site
ENV LEPTOS_OUTPUT_NAME=ai-admin-connect
ENV LEPTOS_ENV=PROD
ENV DATA_DIR=/var/lib/ai-admin-connect
ENV DATABASE_URL=sqlite:///var/lib/ai-admin-connect/ai-admin.db?mode=rwc
ENV LOG_FORMAT=json
VOLUME ["/var/lib/ai-admin-connect"]
USER ai-admin
EXPOSE 3000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:3000/marketplace/health || exit 1
CMD ["/app/server"]
