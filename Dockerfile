# syntax=docker/dockerfile:1
# Two images from one build: the injector (distroless, nonroot) and mesh-init
# (iptables nft and legacy, ip6tables). The binaries are built by `make
# build`, the same command CI and developers run, so what is tested is what
# ships.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN make build VERSION=${VERSION}

# docker build --target injector -t sidecar-injector .
FROM gcr.io/distroless/static-debian12:nonroot AS injector
COPY --from=build /src/bin/injector /usr/local/bin/injector
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/injector"]
CMD ["serve"]

# docker build --target mesh-init -t mesh-init .
# Debian's iptables package ships both backends: iptables-nft(-restore) and
# iptables-legacy(-restore), and the ip6tables variants of each.
FROM debian:bookworm-slim AS mesh-init
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/* \
 && iptables-nft --version && iptables-legacy --version \
 && ip6tables-nft --version && ip6tables-legacy --version
COPY --from=build /src/bin/mesh-init /usr/local/bin/mesh-init
ENTRYPOINT ["/usr/local/bin/mesh-init"]
