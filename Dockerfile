# The one image every component runs from: the control plane, ztunnel, the waypoint and the CNI
# node agent (charts/*/templates name their entry points as `node dist/<component>/main.js`).
#
#   docker build -t ambient-mesh:0.1.0 .
#
# test/charts/dockerfile.test.ts checks that every COPY source exists and that every command in
# the charts names a file this build produces. Without Docker: cluster/image.sh (docs/install.md).

# ---- build: compile the TypeScript, then drop the dev dependencies ----
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY core core
COPY control-plane control-plane
COPY ztunnel ztunnel
COPY waypoint waypoint
COPY cni-plugin cni-plugin
COPY bpf bpf
COPY cli cli
COPY dashboard dashboard
COPY lab lab
COPY tools tools
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# ---- run ----
FROM node:20-bookworm-slim
# bpftool: the node agent loads, pins and attaches the eBPF programs with it (bpf/loader.ts).
# ldd (libc-bin, already in the base image): the agent copies node and the libraries ldd lists
# into the host's CNI bin dir as the plugin's self-contained payload (cni-plugin/agent/install.ts).
RUN apt-get update \
 && apt-get install -y --no-install-recommends bpftool \
 && rm -rf /var/lib/apt/lists/*
# Every command the components run: node, the bpftool above, and from the base image ldd
# (cni-plugin/agent/install.ts), nsenter and cat (ztunnel-finder.ts), mount (bpf/loader.ts).
# cluster/image.sh builds the same image without Docker; test/cluster/image.test.ts compares this
# list, the COPYs below and the run settings with that script's manifest.
RUN for t in node bpftool ldd nsenter mount cat; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }; done
# The working directory is the project root: the components find bpf/prebuilt beside dist/.
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
# The committed eBPF objects (bpf/prebuilt/*.bpf.o); the loader reads them from ../../bpf/prebuilt
# of dist/bpf/.
COPY --from=build /app/bpf/prebuilt bpf/prebuilt
# Non-root by default; the charts set the user per component (the node agent runs as root).
USER 1337:1337
CMD ["node", "dist/cli/ambientctl.js", "--help"]
