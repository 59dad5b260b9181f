# stockd on Debian 12, built from this checkout with Debian's packages only.
#   docker build -t stockd . && docker run -p 7070:7070 -e STOCKD_ADMIN_TOKEN=... stockd
FROM debian:12 AS build
WORKDIR /src
COPY scripts/deps.sh scripts/deps.sh
RUN scripts/deps.sh
COPY . .
RUN scripts/build.sh build

FROM debian:12
RUN apt-get update -q && apt-get install -y -q --no-install-recommends \
      libuv1 librocksdb7.8 libspdlog1.10 libfmt9 libsqlite3-0 libpq5 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/bin/ /usr/local/bin/
VOLUME /var/lib/stockd
EXPOSE 7070 9090
ENTRYPOINT ["stockd", "--listen", "0.0.0.0:7070", "--data-dir", "/var/lib/stockd"]
