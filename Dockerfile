# stockd on Debian 12, built from this checkout with Debian's packages only.
#
#   docker build -t stockd .
#   mkdir -p secrets && for t in admin-token outbox-token client-token; do
#     (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > secrets/$t); done
#   sudo chown 10001 secrets/*   # the image's stockd user reads them; nobody else needs to
#   docker run -p 7070:7070 -p 9090:9090 -v "$PWD/secrets:/run/secrets:ro" \
#     -v stockd-data:/var/lib/stockd stockd
#
# Tokens are files (README "Secrets"), never -e values: every process that can inspect the
# container sees its environment. Listening beyond loopback, stockd requires the buyers' token
# (client-token) too. Add flags after the image name (docker run ... stockd --user-holds-max 5).
# The sidecar is in the image as well: run it as its own container with
#   --entrypoint stockd-outbox ... --server HOST:7070 --sql postgresql://...
# and STOCKD_OUTBOX_TOKEN_FILE pointing at the outbox token.
FROM debian:12 AS build
WORKDIR /src
COPY scripts/deps.sh scripts/deps.sh
RUN scripts/deps.sh
COPY . .
RUN STOCKD_TARGETS="stockd stockd-outbox stockctl" scripts/build.sh build

FROM debian:12
RUN apt-get update -q && apt-get install -y -q --no-install-recommends \
      libuv1 librocksdb7.8 libspdlog1.10 libfmt9 libsqlite3-0 libpq5 libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/stockd --shell /usr/sbin/nologin stockd \
    && install -d -o stockd -g stockd -m 700 /var/lib/stockd
COPY --from=build /src/build/bin/stockd /src/build/bin/stockd-outbox /src/build/bin/stockctl \
     /usr/local/bin/
USER stockd
VOLUME /var/lib/stockd
ENV STOCKD_ADMIN_TOKEN_FILE=/run/secrets/admin-token \
    STOCKD_OUTBOX_TOKEN_FILE=/run/secrets/outbox-token \
    STOCKD_CLIENT_TOKEN_FILE=/run/secrets/client-token \
    STOCKD_METRICS_LISTEN=0.0.0.0:9090
EXPOSE 7070 9090
# SIGTERM: a graceful stop (docker stop's default 10 s matches --shutdown-timeout-ms; give
# docker stop -t 30 for headroom). Exit codes: README "Exit codes".
STOPSIGNAL SIGTERM
ENTRYPOINT ["stockd", "--listen", "0.0.0.0:7070", "--data-dir", "/var/lib/stockd"]
