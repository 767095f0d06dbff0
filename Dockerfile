# syntax=docker/dockerfile:1
# Three images from one build: the injector (distroless, nonroot), mesh-init
# (iptables nft and legacy, ip6tables) and mesh-cni (the CNI plugin and its
# node agent, static). The binaries are built by `make
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

# docker build --target mesh-cni -t mesh-cni .
# The cni capture mode's node agent (chart cni.enabled): `mesh-cni install`
# copies this same static binary into the node's CNI bin folder, where the
# container runtime runs it with the node's own iptables. Root, to write the
# node's root-owned CNI folders; the chart drops every capability.
FROM gcr.io/distroless/static-debian12:nonroot AS mesh-cni
COPY --from=build /src/bin/mesh-cni /usr/local/bin/mesh-cni
USER 0:0
ENTRYPOINT ["/usr/local/bin/mesh-cni"]
CMD ["install"]
