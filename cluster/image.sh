#!/usr/bin/env bash
# The mesh's image without Docker (no container engine here): the root filesystem the Dockerfile's
# run stage describes, assembled from this machine's Node.js 20 and Debian tools, packed as a
# docker-archive tar and imported into the cluster's containerd (docs/real-cluster.md, "The image").
#
#   cluster/image.sh manifest   what goes into the image, one item per line; builds nothing
#   cluster/image.sh build      builds the archive, or reuses the cached one; prints its path last
#   cluster/image.sh import     build, then import into the containerd of every running node
#   cluster/image.sh            import when a cluster is up, build otherwise
#   (cluster/cluster.sh image ... is the same)
#
# The manifest below is the one list both the build and `manifest` read, and
# test/cluster/image.test.ts holds it against the Dockerfile: a path or tool added to one and not
# the other fails that test. Settings: AMC_CACHE (cache dir), AMC_NAME/AMC_NODES (which cluster),
# AMC_IMAGE_REPO (the tag's repository, default localhost/ambient-mesh; the tag is package.json's
# version). Root only for build and import (chroot for the self-check, ctr).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
# shellcheck source=lib/common.sh
. "$HERE/lib/common.sh"

# ---- the manifest: what the Dockerfile's run stage holds ----
# `localhost/` cannot be mistaken for a Docker Hub name; the charts point at it with
# `--set image.hub=localhost` (image.name ambient-mesh, tag = appVersion = package.json's version).
IMAGE_REPO="${AMC_IMAGE_REPO:-localhost/ambient-mesh}"
IMAGE_VERSION="$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).version' "$REPO/package.json")"
IMAGE_TAG="${IMAGE_REPO}:${IMAGE_VERSION}"
APP_DIR=/app
# Under APP_DIR, as the Dockerfile's `COPY --from=build /app/<path>`.
APP_PATHS=(package.json node_modules dist bpf/prebuilt)
# Commands the components run (found in PATH here; copied with the libraries ldd lists and, for a
# script, its interpreter): node (the base image's), bpftool (the apt-get install), and what the
# node agent execs from the base image: ldd (the CNI payload, cni-plugin/agent/install.ts), nsenter
# and cat (ztunnel-finder.ts), mount (bpffs, bpf/loader.ts).
TOOLS=(node bpftool ldd nsenter mount cat)
IMAGE_ENV=(NODE_ENV=production)
IMAGE_USER="1337:1337"
IMAGE_CMD='["node","dist/cli/ambientctl.js","--help"]'
# The node:20 image's PATH.
IMAGE_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

IMAGE_CACHE="${AMC_CACHE}/image"

manifest() {
  local p t e
  echo "image ${IMAGE_TAG}"
  echo "workdir ${APP_DIR}"
  for e in "${IMAGE_ENV[@]}"; do echo "env $e"; done
  echo "user ${IMAGE_USER}"
  echo "cmd ${IMAGE_CMD}"
  for p in "${APP_PATHS[@]}"; do echo "app $p"; done
  for t in "${TOOLS[@]}"; do echo "tool $t"; done
}

# ---- the cache key: everything the archive is made of ----
tool_path() { command -v "$1" 2>/dev/null || die "$1 not found in PATH: install it (bpftool: apt-get install bpftool; node: Node.js 20)"; }

# Host files a tool brings into the image: itself (resolved), its script interpreter, the
# libraries ldd lists and the loader. One path per line.
tool_files() {
  local f="$1" interp
  echo "$f"
  if [ "$(head -c 2 "$f")" = '#!' ]; then
    interp=$(head -1 "$f" | sed 's/^#![[:space:]]*//; s/[[:space:]].*//')
    tool_files "$interp"
    return
  fi
  # "not a dynamic executable" (static) exits 1: nothing more to bring.
  ldd "$f" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*ld-linux[^ ]*\).*/\1/p' || true
}

# The TypeScript the build compiles: every .ts under tsconfig.json's include dirs.
ts_sources() {
  local d
  for d in $(sed -n 's/.*"include": \[\(.*\)\].*/\1/p' "$REPO/tsconfig.json" | tr -d '", ' | tr '[' ' ' | sed 's#/\*\*/\*\.ts# #g'); do
    [ -d "$REPO/$d" ] && find "$REPO/$d" -name '*.ts' -type f
  done | LC_ALL=C sort
}

cache_key() {
  local t
  {
    sha256sum "$HERE/image.sh"
    node --version
    for t in "${TOOLS[@]}"; do tool_files "$(tool_path "$t")" | LC_ALL=C sort -u | xargs -r sha256sum; done
    (cd "$REPO" && sha256sum package.json package-lock.json tsconfig.json bpf/prebuilt/*)
    ts_sources | xargs -r sha256sum | sed "s#  $REPO/#  #"
  } | sha256sum | cut -c1-16
}

# ---- the build ----
# copy_host_file ROOT PATH: the file's content at the same path in ROOT (symlinks followed; the
# rootfs has Debian's merged-/usr links, so /lib/... lands in usr/lib/...).
copy_host_file() {
  local root="$1" f="$2"
  mkdir -p "$root$(dirname "$f")"
  cp -L --preserve=mode "$f" "$root$f"
}

stage_app_path() {
  local root="$1" work="$2" p="$3" app="$1${APP_DIR}"
  case "$p" in
    package.json) cp "$REPO/package.json" "$app/package.json" ;;
    node_modules)
      # Production dependencies into a copy of the manifest and lock: the checkout's node_modules
      # is never touched (the Dockerfile: npm ci, then npm prune --omit=dev).
      mkdir -p "$work/npm"
      cp "$REPO/package.json" "$REPO/package-lock.json" "$work/npm/"
      (cd "$work/npm" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1) ||
        { tail -20 "$work/npm.log" >&2; die "npm ci --omit=dev failed: is the npm registry reachable?"; }
      mv "$work/npm/node_modules" "$app/node_modules"
      ;;
    dist)
      # Compiled from the working tree into the rootfs (the checkout's dist/ may hold stale output).
      [ -x "$REPO/node_modules/.bin/tsc" ] || die "no $REPO/node_modules/.bin/tsc: run npm ci in the checkout first"
      "$REPO/node_modules/.bin/tsc" -p "$REPO/tsconfig.json" --outDir "$app/dist" >"$work/tsc.log" 2>&1 ||
        { tail -20 "$work/tsc.log" >&2; die "tsc failed: the working tree does not compile (npx tsc -p tsconfig.json)"; }
      ;;
    bpf/prebuilt) mkdir -p "$app/bpf" && cp -r "$REPO/bpf/prebuilt" "$app/bpf/prebuilt" ;;
    *) die "no recipe for the app path '$p' in stage_app_path (cluster/image.sh): add one" ;;
  esac
}

make_rootfs() {
  local root="$1" work="$2" d t f p
  mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib" "$root/usr/lib64" "$root/etc" "$root/tmp" \
    "$root/proc" "$root/sys" "$root/dev" "$root/run" "$root/var/tmp" "$root/usr/local/bin" "$root${APP_DIR}"
  chmod 1777 "$root/tmp" "$root/var/tmp"
  for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
  for t in "${TOOLS[@]}"; do
    for f in $(tool_files "$(tool_path "$t")"); do copy_host_file "$root" "$f"; done
  done
  # Root and the charts' 1337 (the Dockerfile's USER); glibc's files/dns lookups (built into libc).
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nmesh:x:1337:1337:ambient mesh:/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nmesh:x:1337:\nnogroup:x:65534:\n' >"$root/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
  for p in "${APP_PATHS[@]}"; do stage_app_path "$root" "$work" "$p"; done
}

# The rootfs runs what the image runs: every tool starts, ldd finds every library of node, and the
# image's command works. A missing library or recipe fails here, not in a pod.
check_rootfs() {
  local root="$1" out
  in_root() { env -i PATH="$IMAGE_PATH" NODE_ENV=production chroot "$root" "$@"; }
  in_root node -e 'process.exit(process.version.startsWith("v20.") ? 0 : 1)' || die "node in the rootfs does not start or is not Node 20"
  in_root bpftool version >/dev/null || die "bpftool in the rootfs does not run"
  out=$(in_root ldd /usr/bin/node) || die "ldd in the rootfs does not run"
  if grep -q 'not found' <<<"$out"; then die "ldd in the rootfs misses libraries of node: $out"; fi
  in_root nsenter --version >/dev/null || die "nsenter in the rootfs does not run"
  in_root mount --version >/dev/null || die "mount in the rootfs does not run"
  in_root cat /etc/passwd >/dev/null || die "cat in the rootfs does not run"
  in_root node "${APP_DIR}/dist/cli/ambientctl.js" --help >/dev/null || die "node dist/cli/ambientctl.js --help fails in the rootfs"
  local p
  for p in "${APP_PATHS[@]}"; do [ -e "$root${APP_DIR}/$p" ] || die "the rootfs has no ${APP_DIR}/$p"; done
}

# pack ROOT OUT: a one-layer docker-archive (`ctr images import` reads it; no registry). The
# config carries the Dockerfile's run settings.
pack() {
  local root="$1" out="$2" env_json e
  env_json="\"PATH=${IMAGE_PATH}\""
  for e in "${IMAGE_ENV[@]}"; do env_json+=",\"$e\""; done
  docker_archive "$out" "$IMAGE_TAG" "$root" \
    "\"Env\":[${env_json}],\"WorkingDir\":\"${APP_DIR}\",\"User\":\"${IMAGE_USER}\",\"Cmd\":${IMAGE_CMD}" "$IMAGE_CACHE"
}

build() {
  need_root
  mkdir -p "$IMAGE_CACHE"
  # One build at a time per cache; the lock is fd 7 (cluster.sh uses 8 and 9).
  exec 7>"${IMAGE_CACHE}/build.lock"
  flock -w 1800 7 || die "another cluster/image.sh build holds ${IMAGE_CACHE}/build.lock"
  local t0 key out work
  t0=$(now_ms)
  key=$(cache_key)
  out="${IMAGE_CACHE}/ambient-mesh-${IMAGE_VERSION}-${key}.tar"
  if [ -f "$out" ]; then
    log "image ${IMAGE_TAG}: cached (${out}, $(du -m "$out" | cut -f1) MiB; key over node, tools, package-lock, sources)"
  else
    work=$(mktemp -d /var/tmp/amc-image.XXXXXX)
    # The work dir (rootfs, npm tree) goes however the build ends.
    trap "rm -rf '${work}'" EXIT
    log "image ${IMAGE_TAG}: building (node $(node --version), npm ci --omit=dev, tsc) in ${work}"
    make_rootfs "$work/rootfs" "$work"
    check_rootfs "$work/rootfs"
    pack "$work/rootfs" "$out.partial"
    mv "$out.partial" "$out"
    rm -rf "$work"
    trap - EXIT
    # Older archives of this image are superseded: the cache holds one per version.
    find "$IMAGE_CACHE" -maxdepth 1 -name "ambient-mesh-${IMAGE_VERSION}-*.tar" ! -path "$out" -delete
    log "image ${IMAGE_TAG}: built in $(secs_since "$t0")s, rootfs $(tar -tvf "$out" --wildcards '*/layer.tar' | awk '{print int($3/1048576)}') MiB, archive ${out}"
  fi
  exec 7>&-
  IMAGE_ARCHIVE="$out"
}

# Nodes of cluster AMC_NAME whose containerd answers.
running_nodes() {
  local i
  for i in $(seq 1 "${AMC_NODES}"); do
    [ -e "/run/netns/$(node_netns "$i")" ] && [ -e "$(node_mntns "$i")" ] || continue
    in_node "$i" ctr --address /run/containerd/containerd.sock version >/dev/null 2>&1 && echo "$i"
  done
}

import() {
  local nodes i
  nodes=$(running_nodes)
  [ -n "$nodes" ] || die "no node of cluster ${AMC_NAME} runs (cluster/up first; cluster/cluster.sh status)"
  build
  for i in $nodes; do
    in_node "$i" ctr --address /run/containerd/containerd.sock -n k8s.io images import "$IMAGE_ARCHIVE" >/dev/null ||
      die "importing ${IMAGE_ARCHIVE} into $(node_name "$i")'s containerd failed"
    log "image ${IMAGE_TAG}: imported into $(node_name "$i")"
  done
}

case "${1:-}" in
  manifest) manifest ;;
  build) build; echo "$IMAGE_ARCHIVE" ;;
  import) import; echo "$IMAGE_ARCHIVE" ;;
  "")
    if [ -n "$(running_nodes 2>/dev/null)" ]; then import; else build; log "no cluster ${AMC_NAME} is up: built, not imported"; fi
    echo "$IMAGE_ARCHIVE"
    ;;
  *) echo "usage: $0 [manifest|build|import]" >&2; exit 2 ;;
esac
