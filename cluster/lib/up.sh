# Starting the cluster (sourced by cluster.sh).
#
# Layout (defaults; AMC_* variables change them):
#   host netns   bridge ${BRIDGE} ${BRIDGE_IP}/24; etcd on 127.0.0.1; kube-apiserver on ${BRIDGE_IP}:6443;
#                controller-manager and scheduler; routes: node i's pod /24 via node i,
#                the service CIDR via node 1 (its kube-proxy DNATs what the host sends to ClusterIPs)
#   node i       netns ${AMC_NAME}-node-i, eth0 ${AMC_NET}.0.(10+i) on the bridge, no default route;
#                its own mount namespace where /etc/cni/net.d, /opt/cni/bin, /var/lib/kubelet,
#                /var/lib/cni, /run/containerd, /var/run/netns, /var/log/pods and /var/log/containers are
#                bind mounts of ${AMC_STATE}/nodes/node-i/*: each node sees the standard paths, as a
#                DaemonSet's hostPath expects, and nothing of one node leaks into another or the host;
#                containerd + kubelet (cgroup root /${AMC_NAME}-node-i) + kube-proxy (iptables);
#                pods on cni0 with ${AMC_POD_NET}.i.0/24 (bridge + host-local + portmap CNI plugins)

# Host-global sysctls the cluster changes: kubelet sets the first six (setupKernelTunables), the
# rest are checked so that `down` can prove they are as before.
GLOBAL_SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables)
# Paths each node sees as its own (bind mounts inside the node's mount namespace).
NODE_BINDS=(/etc/cni/net.d /opt/cni/bin /var/lib/kubelet /var/lib/cni /run/containerd /var/run/netns
  /var/log/pods /var/log/containers /var/run/ambient)

save_sysctls() {
  [ -f "${AMC_STATE}/sysctl.saved" ] && return
  local k
  for k in "${GLOBAL_SYSCTLS[@]}"; do
    echo "$k=$(sysctl -n "$k" 2>/dev/null)"
  done >"${AMC_STATE}/sysctl.saved"
}

setup_host_network() {
  ip link add "$BRIDGE" type bridge
  ip addr add "${BRIDGE_IP}/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

setup_node_network() {
  local i="$1" ns veth j
  ns=$(node_netns "$i"); veth=$(node_veth_host "$i")
  ip netns add "$ns"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  ip link set "$veth" master "$BRIDGE" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(node_ip "$i")/24" dev eth0
  ip -n "$ns" link set eth0 up
  # Pods of the other nodes straight over the bridge; ClusterIPs are DNATed by this node's kube-proxy
  # (the route only gives locally sent packets a way out). No default route: nothing leaves the machine.
  for ((j = 1; j <= AMC_NODES; j++)); do
    [ "$j" = "$i" ] || ip -n "$ns" route add "$(node_pod_cidr "$j")" via "$(node_ip "$j")"
  done
  ip -n "$ns" route add "$AMC_SERVICE_CIDR" dev eth0
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  ip route add "$(node_pod_cidr "$i")" via "$(node_ip "$i")"
  [ "$i" = 1 ] && ip route add "$AMC_SERVICE_CIDR" via "$(node_ip 1)"
  return 0
}

start_etcd() {
  mkdir -p "${AMC_STATE}/etcd" && chmod 0700 "${AMC_STATE}/etcd"
  start_bg etcd "${LOGS}/etcd.log" etcd --name "${AMC_NAME}" --data-dir "${AMC_STATE}/etcd" \
    --listen-client-urls "http://127.0.0.1:${AMC_ETCD_CLIENT_PORT}" \
    --advertise-client-urls "http://127.0.0.1:${AMC_ETCD_CLIENT_PORT}" \
    --listen-peer-urls "http://127.0.0.1:${AMC_ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${AMC_ETCD_PEER_PORT}" \
    --initial-cluster "${AMC_NAME}=http://127.0.0.1:${AMC_ETCD_PEER_PORT}" \
    --quota-backend-bytes 1073741824
  poll_until "$AMC_TIMEOUT" "etcd health" curl -sf "http://127.0.0.1:${AMC_ETCD_CLIENT_PORT}/health"
}

start_control_plane() {
  local sa_issuer="https://kubernetes.default.svc.cluster.local"
  start_bg kube-apiserver "${LOGS}/kube-apiserver.log" "${K8S_BIN}/kube-apiserver" \
    --advertise-address="${BRIDGE_IP}" --bind-address="${BRIDGE_IP}" --secure-port="${AMC_APISERVER_PORT}" \
    --insecure-port=0 \
    --etcd-servers="http://127.0.0.1:${AMC_ETCD_CLIENT_PORT}" \
    --service-cluster-ip-range="${AMC_SERVICE_CIDR}" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --client-ca-file="${PKI}/ca.crt" \
    --tls-cert-file="${PKI}/apiserver.crt" --tls-private-key-file="${PKI}/apiserver.key" \
    --kubelet-client-certificate="${PKI}/apiserver-kubelet-client.crt" \
    --kubelet-client-key="${PKI}/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="${PKI}/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-key-file="${PKI}/sa.pub" --service-account-signing-key-file="${PKI}/sa.key" \
    --service-account-issuer="${sa_issuer}" --api-audiences="${sa_issuer},istio-ca" \
    --profiling=false --v=1
  poll_until "$AMC_TIMEOUT" "kube-apiserver /readyz" kc get --raw /readyz
  start_bg kube-controller-manager "${LOGS}/kube-controller-manager.log" "${K8S_BIN}/kube-controller-manager" \
    --kubeconfig="${AMC_STATE}/controller-manager.kubeconfig" \
    --authentication-kubeconfig="${AMC_STATE}/controller-manager.kubeconfig" \
    --authorization-kubeconfig="${AMC_STATE}/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="${AMC_CM_PORT}" --port=0 --leader-elect=false \
    --cluster-signing-cert-file="${PKI}/ca.crt" --cluster-signing-key-file="${PKI}/ca.key" \
    --root-ca-file="${PKI}/ca.crt" --service-account-private-key-file="${PKI}/sa.key" \
    --use-service-account-credentials=true \
    --flex-volume-plugin-dir="${AMC_STATE}/flexvolume" \
    --cluster-cidr="${CLUSTER_CIDR}" --service-cluster-ip-range="${AMC_SERVICE_CIDR}" \
    --profiling=false --v=1
  start_bg kube-scheduler "${LOGS}/kube-scheduler.log" "${K8S_BIN}/kube-scheduler" \
    --kubeconfig="${AMC_STATE}/scheduler.kubeconfig" \
    --authentication-kubeconfig="${AMC_STATE}/scheduler.kubeconfig" \
    --authorization-kubeconfig="${AMC_STATE}/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="${AMC_SCHED_PORT}" --port=0 --leader-elect=false \
    --profiling=false --v=1
}

# The node's cgroup root, in every mounted hierarchy (the v1 controllers and the unified one, which
# runc joins too): kubelet refuses a --cgroup-root that does not exist.
make_node_cgroups() {
  local root="$1" h
  for h in /sys/fs/cgroup/*/; do
    h=${h%/}
    mountpoint -q "$h" || continue
    mkdir -p "$h$root"
    if [ -f "$h/cpuset.cpus" ]; then
      cat "$h/cpuset.cpus" >"$h$root/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h$root/cpuset.mems"
    fi
  done
}

# mkdir -p that records each directory it creates (outermost first), for `down` to remove.
mkdir_recorded() {
  local missing=() p="$1"
  while [ ! -d "$p" ]; do missing=("$p" "${missing[@]}"); p=$(dirname "$p"); done
  for p in "${missing[@]}"; do
    mkdir "$p"
    echo "$p" >>"${AMC_STATE}/created-mountpoints"
  done
}

setup_node_mounts() {
  local i="$1" d p
  d=$(node_dir "$i")
  mkdir -p "$d/ns" "$d/root" "$d/containerd" "$d/volume-plugins"
  for p in "${NODE_BINDS[@]}"; do
    mkdir -p "$d/root$p"
    # The mount points must exist on the host; the ones made here are removed by `down`.
    mkdir_recorded "$(readlink -f "$p" 2>/dev/null || echo "$p")"
  done
  cp -a /usr/lib/cni/. "$d/root/opt/cni/bin/"
  # A persistent mount namespace lives as a bind mount of /proc/PID/ns/mnt, which must sit on a
  # private mount: $d/ns is bind-mounted on itself and made private.
  mount --bind "$d/ns" "$d/ns"
  mount --make-private "$d/ns"
  touch "$d/ns/mnt"
  local binds=""
  for p in "${NODE_BINDS[@]}"; do binds+="mount --bind '$d/root$p' '$p' && "; done
  # Each node has its own bpffs (a new mount of bpf is a new instance: the nodes' pins never meet,
  # and they all go with the node's mount namespace), shared so that a pod's Bidirectional
  # mount of /sys/fs/bpf (the node agent's) is accepted by the kubelet and sees the node's pins.
  # The host's bpffs is unmounted first (here only: the namespace is a slave): the kubelet checks the
  # first mount it finds at /sys/fs/bpf, and a shared one stacked on a private one fails that check.
  binds+="{ umount /sys/fs/bpf 2>/dev/null || true; } && mount -t bpf bpf /sys/fs/bpf && mount --make-shared /sys/fs/bpf && "
  unshare --mount="$(node_mntns "$i")" --propagation slave -- sh -ec "${binds} true"
}

write_node_configs() {
  local i="$1" d n ip
  d=$(node_dir "$i"); n=$(node_name "$i"); ip=$(node_ip "$i")
  local subnet gw
  subnet=$(node_pod_cidr "$i"); gw="${subnet%.0/24}.1"
  cat >"$d/root/etc/cni/net.d/10-${AMC_NAME}.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "${AMC_NAME}-pods",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "${subnet}", "gateway": "${gw}" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
  # containerd: everything under the node's directory; the standard socket path is the node's own
  # (/run/containerd is a bind mount in the node's mount namespace).
  cat >"$d/containerd.toml" <<EOF
version = 2
root = "$d/containerd/root"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  # This VM's root lacks CAP_SYS_RESOURCE: runc cannot lower the pause container's oom_score_adj
  # (-998) and every sandbox would fail with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
EOF
  cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${ip}
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
cgroupDriver: cgroupfs
cgroupRoot: $(node_cgroup_root "$i")
failSwapOn: false
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: ${PKI}/ca.crt }
authorization:
  mode: Webhook
tlsCertFile: ${PKI}/kubelet-${n}-serving.crt
tlsPrivateKeyFile: ${PKI}/kubelet-${n}-serving.key
clusterDomain: cluster.local
# The cluster's DNS for Services (cluster/lib/dns.sh) on the host's end of the bridge.
clusterDNS: [${BRIDGE_IP}]
resolvConf: /etc/resolv.conf
# The images cannot be pulled again (no registry): never garbage-collect them, never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: { memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%" }
EOF
  cat >"$d/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: ${AMC_STATE}/kube-proxy.kubeconfig }
mode: iptables
clusterCIDR: ${CLUSTER_CIDR}
hostnameOverride: ${n}
bindAddress: ${ip}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# nf_conntrack_max is host-global (read-only in a child netns): leave it alone.
conntrack: { maxPerCore: 0, min: 0 }
EOF
}

start_node() {
  local i="$1" d n
  d=$(node_dir "$i"); n=$(node_name "$i")
  make_node_cgroups "$(node_cgroup_root "$i")"
  start_bg "containerd-${n}" "${LOGS}/containerd-${n}.log" $(node_exec "$i") containerd --config "$d/containerd.toml"
  poll_until "$AMC_TIMEOUT" "containerd on ${n}" in_node "$i" ctr --address /run/containerd/containerd.sock version
  local img
  for img in "${IMAGES}/pause.tar" "${IMAGES}/busybox.tar"; do
    in_node "$i" ctr --address /run/containerd/containerd.sock -n k8s.io images import "$img" >/dev/null
  done
  start_bg "kubelet-${n}" "${LOGS}/kubelet-${n}.log" $(node_exec "$i") "${K8S_BIN}/kubelet" \
    --config="$d/kubelet.yaml" --kubeconfig="${AMC_STATE}/kubelet-${n}.kubeconfig" \
    --container-runtime=remote --container-runtime-endpoint=unix:///run/containerd/containerd.sock \
    --hostname-override="$n" --node-ip="$(node_ip "$i")" --volume-plugin-dir="$d/volume-plugins" --v=1
  start_bg "kube-proxy-${n}" "${LOGS}/kube-proxy-${n}.log" $(node_exec "$i") "${K8S_BIN}/kube-proxy" \
    --config="$d/kube-proxy.yaml" --v=1
}

node_ready() {
  [ "$(kc get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
pod_running() {
  [ "$(kc get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null)" = Running ]
}

# A busybox pod on each node, serving its /etc (so /hostname answers with the pod's name), and a
# Service in front of node 1's. Checked: every pod reaches every pod IP (across nodes over the
# bridge), every pod reaches the Service's ClusterIP (kube-proxy), the host reaches both. The probes
# are deleted afterwards.
probe_pods() {
  local i n
  for ((i = 1; i <= AMC_NODES; i++)); do
    n=$(node_name "$i")
    kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: { name: amc-probe-${n}, namespace: default, labels: { app: amc-probe, node: ${n} } }
spec:
  nodeName: ${n}
  terminationGracePeriodSeconds: 0
  containers:
  - name: httpd
    image: ${BUSYBOX_IMAGE}
    imagePullPolicy: Never
    command: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
EOF
  done
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: { name: amc-probe, namespace: default, labels: { app: amc-probe } }
spec:
  selector: { app: amc-probe, node: $(node_name 1) }
  ports: [{ port: 80, targetPort: 8080 }]
EOF
  for ((i = 1; i <= AMC_NODES; i++)); do
    n=$(node_name "$i")
    poll_until "$AMC_TIMEOUT" "pod amc-probe-${n} Running" pod_running "amc-probe-${n}" ||
      { kc describe pod "amc-probe-${n}" | tail -20 >&2; return 1; }
  done
  local ips=() ip svc want
  want="amc-probe-$(node_name 1)"
  for ((i = 1; i <= AMC_NODES; i++)); do
    ips+=("$(kc get pod "amc-probe-$(node_name "$i")" -o jsonpath='{.status.podIP}')")
  done
  svc=$(kc get service amc-probe -o jsonpath='{.spec.clusterIP}')
  # kube-proxy programs the Service once it has seen the endpoint: poll, do not assume.
  poll_until 60 "Service ${svc} from the host" probe_service_from_host "$svc" "$want" ||
    die "the host cannot reach Service amc-probe at ${svc}"
  for ((i = 1; i <= AMC_NODES; i++)); do
    n=$(node_name "$i")
    for ip in "${ips[@]}"; do
      kc exec "amc-probe-${n}" -- ping -c 1 -W 2 "$ip" >/dev/null || die "pod on ${n} cannot reach pod IP ${ip}"
    done
    poll_until 60 "Service ${svc} from ${n}" probe_service_from_pod "amc-probe-${n}" "$svc" "$want" ||
      die "pod on ${n} cannot reach Service amc-probe at ${svc}"
    # By name: the pod's resolv.conf (kubelet's clusterDNS, search path) and the cluster DNS.
    poll_until 60 "Service amc-probe by name from ${n}" probe_service_from_pod "amc-probe-${n}" amc-probe "$want" ||
      die "pod on ${n} cannot reach Service amc-probe by name (cluster DNS at ${BRIDGE_IP}: ${LOGS}/dnsmasq.log)"
  done
  for ip in "${ips[@]}"; do
    busybox ping -c 1 -W 2 "$ip" >/dev/null || die "the host cannot reach pod IP ${ip}"
  done
  log "probe pods: ${ips[*]} reach each other; Service ${svc} (and amc-probe by name) answers every node's pod and the host"
  kc delete service amc-probe >/dev/null
  kc delete pod -l app=amc-probe --wait=true --timeout=60s >/dev/null
}
probe_service_from_host() { [ "$(curl -sf -m 2 "http://$1/hostname")" = "$2" ]; }
# busybox's wget segfaults: HTTP by hand over nc.
probe_service_from_pod() {
  kc exec "$1" -- sh -c "printf 'GET /hostname HTTP/1.0\r\n\r\n' | nc -w 2 $2 80" | grep -qx "$3"
}

up_failed() {
  local f
  for f in "${LOGS}"/*.log; do
    [ -s "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 8 "$f" | cut -c1-300 >&2
  done
  log "up failed: the state is kept in ${AMC_STATE}; run cluster/down to remove everything"
}

up() {
  need_root
  prepare
  if [ -d "${AMC_STATE}" ] || ip link show "$BRIDGE" >/dev/null 2>&1 || [ -n "$(known_nodes)" ]; then
    log "a cluster named ${AMC_NAME} (or what is left of one) exists: taking it down first"
    down
  fi
  local t_start
  t_start=$(now_ms)
  mkdir -p "${AMC_STATE}" "${LOGS}" "${PIDS}"
  # On failure: the end of every log, and the way back. The state stays for inspection.
  trap 'rc=$?; [ "$rc" = 0 ] || up_failed; exit "$rc"' EXIT
  save_sysctls
  make_pki
  setup_host_network
  local i
  for ((i = 1; i <= AMC_NODES; i++)); do setup_node_network "$i"; done
  start_etcd
  start_control_plane
  start_dns
  log "control plane and DNS: up ($(secs_since "$t_start")s)"
  # The default service account must exist before any pod can be created.
  local t_nodes
  t_nodes=$(now_ms)
  for ((i = 1; i <= AMC_NODES; i++)); do
    setup_node_mounts "$i"
    write_node_configs "$i"
    start_node "$i"
  done
  for ((i = 1; i <= AMC_NODES; i++)); do
    local n
    n=$(node_name "$i")
    poll_until "$AMC_TIMEOUT" "node ${n} registered" kc get node "$n" ||
      { tail -20 "${LOGS}/kubelet-${n}.log" >&2; return 1; }
    # Deterministic pod CIDRs (the node IPAM controller would hand them out in registration order).
    kc patch node "$n" --type merge -p "{\"spec\":{\"podCIDR\":\"$(node_pod_cidr "$i")\",\"podCIDRs\":[\"$(node_pod_cidr "$i")\"]}}" >/dev/null
  done
  for ((i = 1; i <= AMC_NODES; i++)); do
    poll_until "$AMC_TIMEOUT" "node $(node_name "$i") Ready" node_ready "$(node_name "$i")" ||
      { tail -20 "${LOGS}/kubelet-$(node_name "$i").log" >&2; return 1; }
  done
  log "nodes: ${AMC_NODES} Ready ($(secs_since "$t_nodes")s after the first containerd started)"
  poll_until "$AMC_TIMEOUT" "service account default/default" kc get serviceaccount default
  probe_pods
  trap - EXIT
  log "cluster up in $(secs_since "$t_start")s (total $(secs_since "$T0")s)"
  echo "KUBECONFIG=${KUBECONFIG_ADMIN}"
}
