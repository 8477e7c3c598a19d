# Stopping the cluster and removing what `up` created (sourced by cluster.sh). Works on any state
# `up` can leave, including a failed or partial one: everything is found from names and namespaces,
# not only from what `up` recorded.

# The node indexes that exist in any form: state dirs, network namespaces, cgroup roots.
known_nodes() {
  {
    ls "${AMC_STATE}/nodes" 2>/dev/null | sed -n 's/^node-\([0-9]*\)$/\1/p'
    ip netns list 2>/dev/null | sed -n "s/^${AMC_NAME}-node-\([0-9]*\)\b.*/\1/p"
    ls /sys/fs/cgroup/*/ 2>/dev/null | sed -n "s/^${AMC_NAME}-node-\([0-9]*\)$/\1/p"
  } | sort -un
}

# Processes whose namespace of KIND (mnt, net) is the one behind FILE.
procs_in_ns() {
  local kind="$1" file="$2" ino p
  ino=$(stat -L -c %i "$file" 2>/dev/null) || return 0
  # An nsfs file that is no longer a mount is a plain empty file: it names no namespace.
  [ "$(stat -f -c %T "$file" 2>/dev/null)" = nsfs ] || return 0
  for p in /proc/[0-9]*; do
    [ "$(stat -L -c %i "$p/ns/$kind" 2>/dev/null)" = "$ino" ] && echo "${p#/proc/}"
  done
  return 0
}

# Processes in the cgroups under a node's cgroup root (the pods' containers), any hierarchy.
procs_in_cgroup_root() {
  local root="$1" h
  for h in /sys/fs/cgroup/*/; do
    [ -d "${h%/}${root}" ] && find "${h%/}${root}" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}

# Processes whose command line names the state dir (etcd, the control plane, kubelets, kube-proxies,
# containerds).
procs_of_state() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "${AMC_STATE}/" && echo "${p#/proc/}"
  done
  return 0
}

alive() { local p; for p in "$@"; do [ -d "/proc/$p" ] && echo "$p"; done; return 0; }

# stop_pids WHAT PID...: SIGTERM, up to 10 s for them to go, then SIGKILL.
stop_pids() {
  local what="$1"; shift
  local pids
  pids=$(alive "$@" | sort -un | grep -vx "$$" | grep -vx "${BASHPID}" || true)
  [ -n "$pids" ] || return 0
  log "down: stopping ${what} ($(echo $pids | wc -w) processes)"
  kill -TERM $pids 2>/dev/null || true
  local deadline=$(( $(date +%s) + 10 ))
  while [ -n "$(alive $pids)" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
  pids=$(alive $pids)
  if [ -n "$pids" ]; then
    kill -KILL $pids 2>/dev/null || true
    deadline=$(( $(date +%s) + 10 ))
    while [ -n "$(alive $pids)" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
  fi
  [ -z "$(alive $pids)" ] || log "down: warning: still alive after SIGKILL: $(alive $pids | tr '\n' ' ')"
}

pid_of() { [ -f "${PIDS}/$1.pid" ] && cat "${PIDS}/$1.pid"; return 0; }

stop_node() {
  local i="$1" n ns mntns root
  n=$(node_name "$i"); ns="/run/netns/$(node_netns "$i")"; mntns=$(node_mntns "$i"); root=$(node_cgroup_root "$i")
  # The kubelet first, so that it restarts nothing; kube-proxy with it.
  stop_pids "kubelet and kube-proxy on ${n}" $(pid_of "kubelet-${n}") $(pid_of "kube-proxy-${n}") \
    $(procs_of_state | while read -r p; do grep -qaE 'kubelet|kube-proxy' "/proc/$p/cmdline" 2>/dev/null && grep -qaF "${n}" "/proc/$p/cmdline" && echo "$p"; done)
  # The pods' processes: everything in the node's cgroups (a pod has its own net and mount namespaces).
  local deadline=$(( $(date +%s) + 20 )) pids
  while pids=$(procs_in_cgroup_root "$root") && [ -n "$pids" ]; do
    kill -KILL $pids 2>/dev/null || true
    [ "$(date +%s)" -lt "$deadline" ] || { log "down: warning: processes left in ${root}: $pids"; break; }
    sleep 0.2
  done
  # containerd, its shims and anything else still in the node's namespaces.
  stop_pids "containerd and shims on ${n}" $(pid_of "containerd-${n}") $(procs_in_ns mnt "$mntns") $(procs_in_ns net "$ns")
}

remove_node() {
  local i="$1" d ns root h
  d=$(node_dir "$i"); ns=$(node_netns "$i"); root=$(node_cgroup_root "$i")
  # The node's mount namespace (and with it the pods' volumes, overlay rootfs and pod netns mounts,
  # which exist only inside it) goes when its last process has gone and its file is unmounted.
  mountpoint -q "$d/ns/mnt" 2>/dev/null && umount "$d/ns/mnt"
  mountpoint -q "$d/ns" 2>/dev/null && umount "$d/ns"
  # The node's network namespace takes cni0, the pods' veths, its routes and KUBE-*/CNI-* chains along.
  ip netns list 2>/dev/null | grep -q "^${ns}\b" && ip netns del "$ns"
  ip link show "$(node_veth_host "$i")" >/dev/null 2>&1 && ip link del "$(node_veth_host "$i")"
  # Cgroups, deepest first, in every hierarchy (v1 controllers and the unified one).
  for h in /sys/fs/cgroup/*/; do
    h=${h%/}
    [ -d "$h$root" ] || continue
    local tries=0
    until find "$h$root" -depth -type d -exec rmdir {} + 2>/dev/null; [ ! -d "$h$root" ]; do
      tries=$((tries + 1))
      [ "$tries" -lt 50 ] || { log "down: warning: cannot remove cgroup $h$root"; break; }
      sleep 0.2
    done
  done
  return 0
}

restore_sysctls() {
  local f="${AMC_STATE}/sysctl.saved" kv k v
  [ -f "$f" ] || return 0
  while IFS= read -r kv; do
    k=${kv%%=*}; v=${kv#*=}
    [ -n "$v" ] || continue
    if [ "$(sysctl -n "$k" 2>/dev/null)" != "$v" ]; then
      log "down: sysctl ${k}: $(sysctl -n "$k") -> ${v}"
      sysctl -qw "${k}=${v}"
    fi
  done <"$f"
}

down() {
  need_root
  local t0 i
  t0=$(now_ms)
  local nodes
  nodes=$(known_nodes)
  for i in $nodes; do stop_node "$i"; done
  stop_pids "cluster DNS" $(pid_of dns-sync) $(pid_of dnsmasq) $(procs_of_state | while read -r p; do grep -qaE 'dns-sync|dnsmasq' "/proc/$p/cmdline" 2>/dev/null && echo "$p"; done)
  stop_pids "control plane" $(pid_of kube-scheduler) $(pid_of kube-controller-manager) $(pid_of kube-apiserver)
  stop_pids "etcd" $(pid_of etcd)
  # Anything else that names the state dir (a daemon whose pid file was never written).
  stop_pids "leftovers" $(procs_of_state)
  for i in $nodes; do remove_node "$i"; done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
  # Routes to the pod and service CIDRs left the host with the bridge. Any mount still under the state
  # dir (none is expected) goes now, before the directory is deleted.
  local m
  { findmnt -rn -o TARGET | grep -F "${AMC_STATE}/" || true; } | sort -r | while read -r m; do
    log "down: unmounting ${m}"
    umount -l "$m" || true
  done
  restore_sysctls
  if [ -f "${AMC_STATE}/created-mountpoints" ]; then
    tac "${AMC_STATE}/created-mountpoints" | while read -r m; do rmdir "$m" 2>/dev/null || true; done
  fi
  if [ -n "${AMC_KEEP_LOGS:-}" ] && [ -d "${LOGS}" ]; then
    mkdir -p "${AMC_KEEP_LOGS}" && cp -a "${LOGS}/." "${AMC_KEEP_LOGS}/"
    log "down: logs copied to ${AMC_KEEP_LOGS}"
  fi
  if findmnt -rn -o TARGET | grep -qF "${AMC_STATE}/"; then
    die "mounts remain under ${AMC_STATE}: not deleting it"
  fi
  rm -rf "${AMC_STATE}"
  rmdir "$(dirname "${AMC_STATE}")" 2>/dev/null || true
  log "down: done in $(secs_since "$t0")s"
}
