FROM golang:1.27 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=${VERSION}" -o /out/eimis-hub ./cmd/eimis-hub \
 && mkdir -p /out/var/lib/eimis

# distroless: no shell, no package manager; nonroot is uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/eimis-hub /eimis-hub
COPY --from=build --chown=65532:65532 /out/var/lib/eimis /var/lib/eimis
USER 65532:65532
ENV EIMIS_DATA_DIR=/var/lib/eimis
VOLUME ["/var/lib/eimis"]
# 8008: Client-Server, federation, admin and Bridge Protocol API, /metrics.
EXPOSE 8008
# The probe listens where `serve --listen 0.0.0.0:8008` does.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/eimis-hub", "healthcheck", "--url", "http://127.0.0.1:8008/_eimis/ready"]
ENTRYPOINT ["/eimis-hub"]
CMD ["serve", "--listen", "0.0.0.0:8008"]
