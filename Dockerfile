# smss as a container init (like tini): a FROM scratch image holding the three static binaries.
#
#   podman build -t smss .                      # builds from source in a rust image (needs network)
#   podman run --rm smss /some/static/program   # smss runs it as PID 1: reaps, forwards signals,
#                                               # exits with its status (code, or 128+signal)
# Use it as the base of your own image: FROM smss, COPY your program, CMD ["/your/program"].
#
# Offline, from binaries already built by scripts/build-static.sh (what the tier-4 tests do):
#   scripts/build-static.sh && podman build --target local -t smss:local .

# ---- build: static binaries (crt-static applies to --target builds only) -----------------------
FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/build-static.sh --locked \
 && mkdir /out \
 && cp target/static/smss target/static/smss-session target/static/smctl /out/

# ---- local: the same image from host-built binaries, no network, no rust image ------------------
FROM scratch AS local
COPY target/static/smss target/static/smss-session target/static/smctl /
ENTRYPOINT ["/smss", "--"]

# ---- the image users get (default target: last stage) -------------------------------------------
FROM scratch AS image
COPY --from=build /out/smss /out/smss-session /out/smctl /
ENTRYPOINT ["/smss", "--"]
