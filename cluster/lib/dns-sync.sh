#!/usr/bin/env bash
# dns-sync.sh KUBECTL KUBECONFIG FILE TMPDIR: keeps FILE (a hosts file in the directory dnsmasq
# watches) equal to the cluster's ClusterIP Services, rewritten on every Service event: written in
# TMPDIR (same filesystem, outside the watched directory: dnsmasq reads every file that appears
# there, and flushes a name again when a file holding it goes) and renamed over FILE. Runs until
# killed (cluster/down); a watch the API server ends is started again. Errors go to stderr.
set -uo pipefail
KUBECTL="$1" KCFG="$2" FILE="$3" TMP="$4/services.new"
sync_services() {
  "$KUBECTL" --kubeconfig "$KCFG" get services -A -o \
    jsonpath='{range .items[*]}{.spec.clusterIP} {.metadata.name}.{.metadata.namespace}.svc.cluster.local{"\n"}{end}' |
    grep -v -e '^None ' -e '^ ' >"$TMP"
  # A failed list keeps the last good file.
  [ "${PIPESTATUS[0]}" = 0 ] && mv -f "$TMP" "$FILE"
  return 0
}
while true; do
  sync_services
  # Each event line (or the watch ending) triggers a full rewrite: simpler than applying deltas, and
  # a few hundred Services cost one list.
  "$KUBECTL" --kubeconfig "$KCFG" get services -A --watch-only -o name |
    while read -r _; do sync_services; done
done
