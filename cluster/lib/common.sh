# Shared settings and helpers for the real-cluster scripts (sourced, never run).
# Everything a cluster creates is named from AMC_NAME so that `down` can find and remove it.

# Debian bookworm's `kubernetes` source package is 1.20.5+really1.20.2-*: upstream v1.20.2. The binaries
# are cached under the upstream version (the exact Debian version is recorded beside them).
KUBERNETES_VERSION="v1.20.2"
# Bumped when the way the binaries are built changes, so an old cache is not reused.
BUILD_RECIPE="r1"

AMC_NAME="${AMC_NAME:-amc}"                 # short (<= 6 chars): used in interface and netns names
AMC_NODES="${AMC_NODES:-2}"                 # 1 or 2 nodes
AMC_CACHE="${AMC_CACHE:-/var/cache/ambient-mesh}"
AMC_STATE="${AMC_STATE:-/var/lib/ambient-mesh-cluster/${AMC_NAME}}"
# Addresses: a host bridge for the control plane and the nodes' eth0; per-node pod /24s; services.
AMC_NET="${AMC_NET:-10.88}"                 # first two octets; nodes on ${AMC_NET}.0.0/24
AMC_POD_NET="${AMC_POD_NET:-10.89}"         # node i gets ${AMC_POD_NET}.i.0/24, cluster CIDR /16
AMC_SERVICE_CIDR="${AMC_SERVICE_CIDR:-10.96.0.0/16}"
AMC_ETCD_CLIENT_PORT="${AMC_ETCD_CLIENT_PORT:-23790}"
AMC_ETCD_PEER_PORT="${AMC_ETCD_PEER_PORT:-23800}"
AMC_APISERVER_PORT="${AMC_APISERVER_PORT:-6443}"
AMC_CM_PORT="${AMC_CM_PORT:-10357}"          # controller-manager secure port (127.0.0.1)
AMC_SCHED_PORT="${AMC_SCHED_PORT:-10359}"     # scheduler secure port (127.0.0.1)
AMC_TIMEOUT="${AMC_TIMEOUT:-300}"            # seconds for each wait in `up`

BRIDGE="${AMC_NAME}-br"
BRIDGE_IP="${AMC_NET}.0.1"
CLUSTER_CIDR="${AMC_POD_NET}.0.0/16"
K8S_BIN="${AMC_CACHE}/kubernetes-${KUBERNETES_VERSION#v}-${BUILD_RECIPE}/bin"
PKI="${AMC_STATE}/pki"
LOGS="${AMC_STATE}/logs"
PIDS="${AMC_STATE}/pids"
KUBECONFIG_ADMIN="${AMC_STATE}/admin.kubeconfig"

node_name() { echo "node-$1"; }
node_netns() { echo "${AMC_NAME}-node-$1"; }
node_ip() { echo "${AMC_NET}.0.$((10 + $1))"; }
node_pod_cidr() { echo "${AMC_POD_NET}.$1.0/24"; }
node_dir() { echo "${AMC_STATE}/nodes/node-$1"; }
node_cgroup_root() { echo "/${AMC_NAME}-node-$1"; }
node_veth_host() { echo "${AMC_NAME}-n$1"; }

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
T0="${T0:-$(now_ms)}"
# seconds (one decimal) since a now_ms timestamp
secs_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%d' $((d / 1000)) $(((d % 1000) / 100)); }
log() { printf '[cluster %6ss] %s\n' "$(secs_since "$T0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (it starts a kubelet, containerd and network namespaces)"; }

# poll_until SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.5 s until it succeeds or the deadline
# passes; state-based waiting, never a fixed sleep as synchronisation.
poll_until() {
  local secs="$1" what="$2"; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "timed out after ${secs}s waiting for: ${what}"
      return 1
    fi
    sleep 0.5
  done
}

# kubectl's discovery cache goes to the state dir, not to ~/.kube/cache.
kc() { "${AMC_TOOLS}/kubectl" --kubeconfig "${KUBECONFIG_ADMIN}" --cache-dir "${AMC_STATE}/kube-cache" "$@"; }

# Runs a command inside node i: its network namespace and its mount namespace (where the node's
# standard paths (NODE_BINDS in up.sh: /etc/cni/net.d, /opt/cni/bin, /var/lib/kubelet, ...) are
# bind mounts of its own directories).
node_mntns() { echo "$(node_dir "$1")/ns/mnt"; }
node_exec() { echo nsenter --net="/run/netns/$(node_netns "$1")" --mount="$(node_mntns "$1")" --; }
in_node() {
  local i="$1"; shift
  $(node_exec "$i") "$@"
}

# start_bg NAME LOGFILE COMMAND...: starts a daemon in its own session, records its pid.
start_bg() {
  local name="$1" logf="$2"; shift 2
  mkdir -p "${PIDS}" "$(dirname "$logf")"
  # fds 8 and 9 are the scripts' locks: a daemon must not hold them.
  setsid "$@" </dev/null >>"$logf" 2>&1 8>&- 9>&- &
  echo $! >"${PIDS}/${name}.pid"
}

# docker_archive OUT TAG ROOTFS_DIR CONFIG_JSON_FIELDS [TMP_PARENT]: a one-layer docker-archive tar
# that `ctr images import` accepts (layer tar + config JSON + manifest.json, no registry). The
# layer is reproducible (sorted names, mtime 0, owner 0). The pause, busybox and mesh images.
docker_archive() {
  local out="$1" tag="$2" rootfs="$3" fields="$4" tmp layer_sha cfg cfg_sha
  tmp=$(mktemp -d "${5:-${TMPDIR:-/tmp}}/archive.XXXXXX")
  tar -C "$rootfs" --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 -cf "$tmp/layer.tar" .
  layer_sha=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
  mkdir "$tmp/$layer_sha" && mv "$tmp/layer.tar" "$tmp/$layer_sha/layer.tar"
  cfg="{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{${fields}},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:${layer_sha}\"]}}"
  cfg_sha=$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)
  printf '%s' "$cfg" >"$tmp/${cfg_sha}.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$cfg_sha" "$tag" "$layer_sha" >"$tmp/manifest.json"
  tar -C "$tmp" -cf "$out" manifest.json "${cfg_sha}.json" "$layer_sha"
  rm -rf "$tmp"
}
