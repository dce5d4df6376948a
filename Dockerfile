FROM golang:1.27 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/eimis-hub ./cmd/eimis-hub

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/eimis-hub /eimis-hub
ENTRYPOINT ["/eimis-hub"]
