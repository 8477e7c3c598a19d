/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types and maps shared by every program. Each object declares all of them; the loader pins them
 * once under <pinDir>/maps/<name> and makes every later object reuse the pinned maps, so the
 * programs of all objects see the same maps. Changing a layout here is an incompatible change:
 * a node has to unload before it can load objects with the new layout (the loader says so).
 */
#ifndef AMB_COMMON_H
#define AMB_COMMON_H

#include "uapi.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AMB_F_ENABLED 1 /* amb_config.flags: redirect new connections */

/* Written by the loader; all zero (disabled) until then. */
struct amb_config {
	__be32 ztunnel_ip4;	/* the node's ztunnel address */
	__u16 outbound_port;	/* host order; ztunnel's outbound capture port (15001) */
	__u16 flags;		/* AMB_F_* */
};

/* An original destination. */
struct amb_dst {
	__be32 ip4;
	__be16 port;
	__u16 pad;
};

/* How ztunnel sees a redirected connection's peer: (pod IP, source port). */
struct amb_peer_key {
	__be32 ip4;
	__u16 port;		/* host order */
	__u16 pad;
};

struct amb_peer_val {
	struct amb_dst dst;
	__u64 cookie;		/* socket cookie of the pod's socket that wrote the entry */
};

struct amb_cidr_key {
	__u32 prefixlen;
	__be32 ip4;
};

/* Indexes of amb_stats (per-CPU counters; sum the CPUs). Append only: the loader names them. */
enum amb_stat {
	AMB_STAT_REDIRECTED = 0,	/* connect rewritten to ztunnel */
	AMB_STAT_BYPASSED,		/* connect left alone: loopback, ztunnel, node, excluded cidr or port */
	AMB_STAT_NO_STORAGE,		/* sk_storage allocation failed: connection left alone */
	AMB_STAT_PEER_RECORDED,		/* pod side: original destination published under (pod ip, port) */
	AMB_STAT_PEER_MOVED,		/* ztunnel side: entry moved onto the accepted socket */
	AMB_STAT_PEER_MISSING,		/* ztunnel side: accepted on the outbound port with no entry */
	AMB_STAT_PEER_EXPIRED,		/* pod side: entry removed at close, never accepted */
	AMB_STAT_STRICT_DROPPED,	/* strict: SYN to a pod dropped */
	AMB_STAT_ORIG_DST_SERVED,	/* ztunnel side: getsockname answered with the original destination */
	AMB_STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct amb_config);
} amb_config SEC(".maps");

/* The node's own addresses: connections to them are never redirected (value unused). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __be32);
	__type(value, __u8);
} amb_node_ips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct amb_cidr_key);
	__type(value, __u8);
} amb_excl_cidrs SEC(".maps");

/* Destination ports (host order) that are never redirected. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} amb_excl_ports SEC(".maps");

/* Pod side: a redirected socket's original destination; freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct amb_dst);
} amb_pod_dst SEC(".maps");

/*
 * The hand-over between the two sides. Lives from the pod's TCP_CONNECT_CB (before the SYN) to
 * ztunnel's accept (moved onto the accepted socket) or the pod socket's close, whichever comes
 * first. LRU so that a leak can never fill it; sized for the connections in flight on one node.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct amb_peer_key);
	__type(value, struct amb_peer_val);
} amb_peer_dst SEC(".maps");

/* ztunnel side: an accepted socket's original destination; freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct amb_dst);
} amb_zt_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AMB_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} amb_stats SEC(".maps");

static __always_inline void amb_count(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&amb_stats, &stat);

	if (n)
		*n += 1;
}

static __always_inline const struct amb_config *amb_get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&amb_config, &zero);
}

static __always_inline int amb_is_v4_mapped(__u32 w0, __u32 w1, __u32 w2)
{
	return w0 == 0 && w1 == 0 && w2 == bpf_htonl(0x0000ffff);
}

/*
 * Context fields must be loaded at a constant offset from the unmodified context pointer; clang
 * may otherwise merge two branches' loads into one load from a computed address, which the
 * verifier rejects. Reading through this barrier keeps every load where it is written.
 */
#define AMB_CTX_READ(field) ({ __u32 __v = (field); asm volatile("" : "+r"(__v)); __v; })

#endif /* AMB_COMMON_H */
