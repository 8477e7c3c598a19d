# The cluster's DNS for Services (sourced by cluster.sh). Debian packages no CoreDNS: dnsmasq
# (Debian's dnsmasq-base) answers on ${BRIDGE_IP}:53 from a hosts directory it watches (inotify), and
# a kubectl watch rewrites that directory's one file whenever a Service changes. Every kubelet's
# clusterDNS points at it, so pods (and hostNetwork pods with ClusterFirstWithHostNet) resolve
# <service>.<namespace>.svc.cluster.local, and the short forms through their search path, as with
# CoreDNS. Only ClusterIP Services; headless ones and pod records are not served.

DNS_DIR() { echo "${AMC_STATE}/dns"; }

start_dns() {
  local dir
  dir=$(DNS_DIR)
  mkdir -p "$dir/hosts"
  : >"$dir/hosts/services"
  # --local: names under cluster.local that are not Services get NXDOMAIN at once; nothing is
  # forwarded anywhere (--no-resolv, no servers: the machine has no outside DNS to offer pods).
  start_bg dnsmasq "${LOGS}/dnsmasq.log" dnsmasq --keep-in-foreground --log-facility=- \
    --conf-file=/dev/null --no-resolv --no-hosts --no-poll --bind-interfaces \
    --listen-address="${BRIDGE_IP}" --except-interface=lo --port=53 --user=root \
    --pid-file="$dir/dnsmasq.pid" --local=/cluster.local/ --domain-needed \
    --hostsdir="$dir/hosts" --local-ttl=1 --cache-size=0
  start_bg dns-sync "${LOGS}/dns-sync.log" bash "${HERE}/lib/dns-sync.sh" "${AMC_TOOLS}/kubectl" \
    "${KUBECONFIG_ADMIN}" "$dir/hosts/services" "$dir"
  local ip
  ip=$(kc get service kubernetes -o jsonpath='{.spec.clusterIP}')
  poll_until "$AMC_TIMEOUT" "DNS: kubernetes.default.svc.cluster.local" dns_answers kubernetes.default.svc.cluster.local "$ip"
}

# dns_answers NAME IP: the cluster DNS resolves NAME to IP.
dns_answers() {
  busybox nslookup "$1" "${BRIDGE_IP}" 2>/dev/null | grep -A3 '^Name:' | grep -qw "$2"
}
