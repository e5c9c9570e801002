# Builds and runs the switchyard server as a non-root user.
#   docker build -t switchyard .
#   docker run -p 8080:8080 -v $PWD/switchyard.toml:/etc/switchyard.toml:ro switchyard
# The config must listen on 0.0.0.0 inside the container (SWITCHYARD_LISTEN_WS below).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin switchyard

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home switchyard
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
USER switchyard
ENV SWITCHYARD_LISTEN_WS=0.0.0.0:8080
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchyard"]
CMD ["serve", "--config", "/etc/switchyard.toml"]
