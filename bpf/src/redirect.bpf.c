// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Pod side, attached to every ambient pod's cgroup.
 *
 * connect4/connect6 send new TCP connections to the node's ztunnel (outbound port) and keep the
 * original destination on the socket (amb_pod_dst). sockops publishes it under (pod IP, source
 * port) once the source port is chosen and before the SYN leaves, which is how ztunnel finds it
 * (see ztunnel.bpf.c). getpeername4/6 give the application back the address it connected to.
 *
 * Only new connections are affected: sockets connected before the pod was enrolled keep going
 * where they were going.
 */
#include "common.h"

/* Connections that must go where they were sent. */
static __always_inline int amb_excluded(const struct amb_config *cfg, __be32 ip, __be16 port)
{
	__u32 host = bpf_ntohl(ip);
	struct amb_cidr_key cidr = { .prefixlen = 32, .ip4 = ip };
	__u16 hport = bpf_ntohs(port);

	if (host == 0 || (host >> 24) == 127 || hport == 0)
		return 1;
	if (ip == cfg->ztunnel_ip4)
		return 1;
	if (bpf_map_lookup_elem(&amb_node_ips, &ip))
		return 1;
	if (bpf_map_lookup_elem(&amb_excl_cidrs, &cidr))
		return 1;
	if (bpf_map_lookup_elem(&amb_excl_ports, &hport))
		return 1;
	return 0;
}

/*
 * Decides for one connect(); returns the config to redirect with, or NULL to leave it alone.
 * A socket that is left alone loses any original destination from an earlier connect() so that
 * sockops and getpeername never act on a stale one.
 */
static __always_inline const struct amb_config *amb_decide(struct bpf_sock_addr *ctx, __be32 ip, __be16 port)
{
	const struct amb_config *cfg;
	struct amb_dst *dst;

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 0;
	cfg = amb_get_config();
	if (!cfg || !(cfg->flags & AMB_F_ENABLED) || cfg->ztunnel_ip4 == 0)
		return 0;
	if (amb_excluded(cfg, ip, port)) {
		bpf_sk_storage_delete(&amb_pod_dst, ctx->sk);
		amb_count(AMB_STAT_BYPASSED);
		return 0;
	}
	dst = bpf_sk_storage_get(&amb_pod_dst, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!dst) {
		/* Without the original destination ztunnel could only drop the connection. */
		amb_count(AMB_STAT_NO_STORAGE);
		return 0;
	}
	dst->ip4 = ip;
	dst->port = port;
	amb_count(AMB_STAT_REDIRECTED);
	return cfg;
}

SEC("cgroup/connect4")
int amb_connect4(struct bpf_sock_addr *ctx)
{
	const struct amb_config *cfg = amb_decide(ctx, ctx->user_ip4, (__be16)ctx->user_port);

	if (cfg) {
		ctx->user_ip4 = cfg->ztunnel_ip4;
		ctx->user_port = bpf_htons(cfg->outbound_port);
	}
	return 1;
}

/* IPv4-mapped destinations on AF_INET6 sockets come here; native IPv6 is not redirected. */
SEC("cgroup/connect6")
int amb_connect6(struct bpf_sock_addr *ctx)
{
	const struct amb_config *cfg;

	if (!amb_is_v4_mapped(ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2])) {
		if (ctx->type == SOCK_STREAM)
			bpf_sk_storage_delete(&amb_pod_dst, ctx->sk);
		return 1;
	}
	cfg = amb_decide(ctx, ctx->user_ip6[3], (__be16)ctx->user_port);
	if (cfg) {
		ctx->user_ip6[3] = cfg->ztunnel_ip4;
		ctx->user_port = bpf_htons(cfg->outbound_port);
	}
	return 1;
}

/* The socket's own address as ztunnel will see it as the peer. */
static __always_inline int amb_local_key(struct bpf_sock_ops *skops, struct amb_peer_key *key)
{
	__u32 family = AMB_CTX_READ(skops->family);

	if (family == AF_INET) {
		key->ip4 = AMB_CTX_READ(skops->local_ip4);
	} else if (family == AF_INET6 &&
		   amb_is_v4_mapped(AMB_CTX_READ(skops->local_ip6[0]), AMB_CTX_READ(skops->local_ip6[1]),
				    AMB_CTX_READ(skops->local_ip6[2]))) {
		key->ip4 = AMB_CTX_READ(skops->local_ip6[3]);
	} else {
		return -1;
	}
	key->port = (__u16)AMB_CTX_READ(skops->local_port);
	key->pad = 0;
	return 0;
}

SEC("sockops")
int amb_pod_sockops(struct bpf_sock_ops *skops)
{
	struct amb_peer_key key = {};
	struct amb_peer_val val = {};
	struct amb_peer_val *old;
	struct amb_dst *dst;
	struct bpf_sock *sk;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		sk = skops->sk;
		if (!sk)
			return 1;
		dst = bpf_sk_storage_get(&amb_pod_dst, sk, 0, 0);
		if (!dst || amb_local_key(skops, &key))
			return 1;
		val.dst = *dst;
		val.cookie = bpf_get_socket_cookie(skops);
		/* Overwrites whatever a previous connection from this port left: that one is gone. */
		bpf_map_update_elem(&amb_peer_dst, &key, &val, BPF_ANY);
		amb_count(AMB_STAT_PEER_RECORDED);
		/* Ask for the close callback, to remove the entry if ztunnel never accepts. */
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != BPF_TCP_CLOSE || amb_local_key(skops, &key))
			return 1;
		old = bpf_map_lookup_elem(&amb_peer_dst, &key);
		/* Only our own entry: a newer connection may already own this (ip, port). */
		if (old && old->cookie == bpf_get_socket_cookie(skops)) {
			bpf_map_delete_elem(&amb_peer_dst, &key);
			amb_count(AMB_STAT_PEER_EXPIRED);
		}
		break;
	}
	return 1;
}

SEC("cgroup/getpeername4")
int amb_getpeer4(struct bpf_sock_addr *ctx)
{
	struct amb_dst *dst = bpf_sk_storage_get(&amb_pod_dst, ctx->sk, 0, 0);

	if (dst) {
		ctx->user_ip4 = dst->ip4;
		ctx->user_port = dst->port;
	}
	return 1;
}

SEC("cgroup/getpeername6")
int amb_getpeer6(struct bpf_sock_addr *ctx)
{
	struct amb_dst *dst = bpf_sk_storage_get(&amb_pod_dst, ctx->sk, 0, 0);

	if (dst) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = dst->ip4;
		ctx->user_port = dst->port;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
