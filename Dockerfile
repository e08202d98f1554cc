# sqlite-replicate in a container: a static-enough binary on distroless (glibc and
# libgcc only; no shell, no package manager). Meant as a sidecar beside an application
# container that shares the database's volume: see deploy/docker/compose.yml.
#
#   docker build -t sqlite-replicate .
#   docker run --rm -v data:/data -v $PWD/sqlite-replicate.yml:/etc/sqlite-replicate.yml:ro \
#     -p 9090:9090 sqlite-replicate
#
# The default command replicates with /etc/sqlite-replicate.yml; any other command runs
# instead (`restore -if-db-not-exists -if-replica-exists /data/app.db` before the
# application starts, `status`, `verify`...).

FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sqlite-replicate \
    && strip --strip-unneeded target/release/sqlite-replicate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/sqlite-replicate /usr/bin/sqlite-replicate
COPY deploy/debian/sqlite-replicate.yml /etc/sqlite-replicate.yml
# The application's user must be able to read what we write beside its database (and we
# its files): run both as the same uid, distroless's nonroot 65532 here (`user:` in
# compose, `runAsUser` in Kubernetes).
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/bin/sqlite-replicate"]
CMD ["replicate", "-config", "/etc/sqlite-replicate.yml"]
