# What the cluster runs and what it costs (sourced by cluster.sh).

# Every process of the cluster: the daemons that name the state dir, and whatever lives in a node's
# namespaces or cgroups (shims, pause containers, pods).
cluster_pids() {
  local i
  {
    procs_of_state
    for i in $(known_nodes); do
      procs_in_ns mnt "$(node_mntns "$i")"
      procs_in_ns net "/run/netns/$(node_netns "$i")"
      procs_in_cgroup_root "$(node_cgroup_root "$i")"
    done
  } | sort -un
}

status() {
  local p rss pss total_rss=0 total_pss=0 count=0
  printf '%8s %8s %8s  %s\n' PID RSS_KiB PSS_KiB COMMAND
  for p in $(cluster_pids); do
    [ -r "/proc/$p/status" ] || continue
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    rss=${rss:-0}; pss=${pss:-0}
    total_rss=$((total_rss + rss)); total_pss=$((total_pss + pss)); count=$((count + 1))
    printf '%8s %8s %8s  %s\n' "$p" "$rss" "$pss" "$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-100)"
  done
  echo "processes: ${count}; RSS total $((total_rss / 1024)) MiB; PSS total $((total_pss / 1024)) MiB"
  if [ -f "${KUBECONFIG_ADMIN}" ]; then
    extract_tools >/dev/null 2>&1 || true
    kc get nodes -o wide 2>/dev/null || echo "apiserver: not answering"
  else
    echo "no cluster state in ${AMC_STATE}"
  fi
}

# A listing of the host state the cluster touches, for a before/after diff (`down` must bring it
# back): processes of its kinds, links, namespaces, routes, host iptables chains, top-level cgroups,
# mounts, the sysctls it changes, the mount points it may create.
host_state() {
  echo "## processes"; ps -eo comm= | grep -E '^(etcd|kube-|kubelet|containerd|runc|pause)' | sort | uniq -c || true
  echo "## links"; ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
  echo "## netns"; ip netns list | awk '{print $1}' | sort
  echo "## routes"; ip route show | sort
  echo "## iptables (host netns)"; echo "KUBE lines: $(iptables-save 2>/dev/null | grep -c KUBE || true)"
  echo "CNI lines: $(iptables-save 2>/dev/null | grep -c CNI- || true)"
  echo "## cgroups (top level)"; find /sys/fs/cgroup/*/ -mindepth 1 -maxdepth 1 -type d 2>/dev/null | sort
  echo "## mounts"; findmnt -rn -o TARGET,FSTYPE | sort
  echo "## sysctls"; for k in "${GLOBAL_SYSCTLS[@]}"; do echo "$k=$(sysctl -n "$k" 2>/dev/null)"; done
  echo "## paths"; for p in "${NODE_BINDS[@]}" /etc/cni /opt/cni /var/lib/cni /opt/containerd /var/lib/containerd /usr/libexec/kubernetes; do
    [ -e "$p" ] && echo "exists $p"; done; true
}
