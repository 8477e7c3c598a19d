// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ztunnel side, attached to the ztunnel's cgroup.
 *
 * When ztunnel's outbound listener completes a handshake, sockops moves the original destination
 * that the pod side published under (pod IP, source port) onto the accepted socket and deletes the
 * published entry: from then on the value belongs to that socket alone, so a later connection
 * reusing the same source port, or LRU eviction, cannot hand this connection someone else's
 * destination. getsockname4/6 then report it as the socket's local address, which Node reads as
 * socket.localAddress/localPort.
 */
#include "common.h"

static __always_inline int amb_remote_key(struct bpf_sock_ops *skops, struct amb_peer_key *key)
{
	__u32 family = AMB_CTX_READ(skops->family);

	if (family == AF_INET) {
		key->ip4 = AMB_CTX_READ(skops->remote_ip4);
	} else if (family == AF_INET6 &&
		   amb_is_v4_mapped(AMB_CTX_READ(skops->remote_ip6[0]), AMB_CTX_READ(skops->remote_ip6[1]),
				    AMB_CTX_READ(skops->remote_ip6[2]))) {
		key->ip4 = AMB_CTX_READ(skops->remote_ip6[3]);
	} else {
		return -1;
	}
	key->port = (__u16)bpf_ntohl(AMB_CTX_READ(skops->remote_port));
	key->pad = 0;
	return 0;
}

SEC("sockops")
int amb_zt_sockops(struct bpf_sock_ops *skops)
{
	const struct amb_config *cfg;
	struct amb_peer_key key = {};
	struct amb_peer_val *val;
	struct amb_dst orig, *dst;
	struct bpf_sock *sk;

	if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	cfg = amb_get_config();
	/* Only the outbound capture port: HBONE (15008) and the rest never carry redirected connections. */
	if (!cfg || cfg->outbound_port == 0 || skops->local_port != cfg->outbound_port)
		return 1;
	if (amb_remote_key(skops, &key))
		return 1;
	val = bpf_map_lookup_elem(&amb_peer_dst, &key);
	if (!val) {
		amb_count(AMB_STAT_PEER_MISSING);
		return 1;
	}
	orig = val->dst;
	bpf_map_delete_elem(&amb_peer_dst, &key);
	sk = skops->sk;
	if (!sk)
		return 1;
	dst = bpf_sk_storage_get(&amb_zt_dst, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!dst) {
		amb_count(AMB_STAT_NO_STORAGE);
		return 1;
	}
	*dst = orig;
	amb_count(AMB_STAT_PEER_MOVED);
	return 1;
}

SEC("cgroup/getsockname4")
int amb_getsock4(struct bpf_sock_addr *ctx)
{
	struct amb_dst *dst = bpf_sk_storage_get(&amb_zt_dst, ctx->sk, 0, 0);

	if (dst) {
		ctx->user_ip4 = dst->ip4;
		ctx->user_port = dst->port;
		amb_count(AMB_STAT_ORIG_DST_SERVED);
	}
	return 1;
}

/* A dual-stack listener (`::`) accepts IPv4 connections on AF_INET6 sockets. */
SEC("cgroup/getsockname6")
int amb_getsock6(struct bpf_sock_addr *ctx)
{
	struct amb_dst *dst = bpf_sk_storage_get(&amb_zt_dst, ctx->sk, 0, 0);

	if (dst) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = dst->ip4;
		ctx->user_port = dst->port;
		amb_count(AMB_STAT_ORIG_DST_SERVED);
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
