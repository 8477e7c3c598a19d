// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * STRICT peer authentication, attached to a pod's cgroup (ingress) only while the pod requires
 * mTLS: a TCP SYN to the pod is dropped unless it comes from the node's ztunnel (which has checked
 * the peer's identity), from loopback, or from the pod itself. Everything else passes: replies to
 * the pod's own connections, UDP, ICMP, non-first fragments.
 *
 * IPv6: ztunnel is IPv4-only here, so an IPv6 SYN is admitted only from ::1 or the pod itself.
 * The dropped SYN is silent; the client sees a connect timeout, as with a firewall.
 */
#include "common.h"

#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

/* 1 when the TCP header at `off` is a SYN without ACK. */
static __always_inline int amb_is_syn(struct __sk_buff *skb, __u32 off)
{
	__u8 flags;

	if (bpf_skb_load_bytes(skb, off + 13, &flags, 1))
		return 0;
	return (flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

static __always_inline int amb_strict_v4(struct __sk_buff *skb)
{
	const struct amb_config *cfg;
	__u8 iph[20];
	__be32 saddr, daddr;
	__u32 ihl;

	if (bpf_skb_load_bytes(skb, 0, iph, sizeof(iph)))
		return 1;
	if ((iph[0] >> 4) != 4 || iph[9] != IPPROTO_TCP)
		return 1;
	if ((iph[6] & 0x1f) || iph[7])
		return 1; /* not the first fragment: no TCP header */
	ihl = (iph[0] & 0x0f) * 4;
	if (ihl < 20 || !amb_is_syn(skb, ihl))
		return 1;
	__builtin_memcpy(&saddr, &iph[12], 4);
	__builtin_memcpy(&daddr, &iph[16], 4);
	if ((bpf_ntohl(saddr) >> 24) == 127 || saddr == daddr)
		return 1;
	cfg = amb_get_config();
	if (cfg && cfg->ztunnel_ip4 != 0 && saddr == cfg->ztunnel_ip4)
		return 1;
	amb_count(AMB_STAT_STRICT_DROPPED);
	return 0;
}

#define IPV6_HOPOPTS	0
#define IPV6_ROUTING	43
#define IPV6_FRAGMENT	44
#define IPV6_DSTOPTS	60

static __always_inline int amb_strict_v6(struct __sk_buff *skb)
{
	__u8 ip6h[40], ext[4];
	__u32 s[4], d[4];
	__u32 off = 40;
	__u8 next;
	int i;

	if (bpf_skb_load_bytes(skb, 0, ip6h, sizeof(ip6h)))
		return 1;
	next = ip6h[6];
	/* Walk a bounded number of extension headers: a SYN must not hide behind them. */
#pragma unroll
	for (i = 0; i < 4; i++) {
		if (next == IPV6_HOPOPTS || next == IPV6_ROUTING || next == IPV6_DSTOPTS) {
			if (bpf_skb_load_bytes(skb, off, ext, 2))
				return 1;
			next = ext[0];
			off += ((__u32)ext[1] + 1) * 8;
		} else if (next == IPV6_FRAGMENT) {
			if (bpf_skb_load_bytes(skb, off, ext, 4))
				return 1;
			if (((ext[2] << 8) | ext[3]) & 0xfff8)
				return 1; /* not the first fragment */
			next = ext[0];
			off += 8;
		} else {
			break;
		}
	}
	if (next != IPPROTO_TCP || !amb_is_syn(skb, off))
		return 1;
	__builtin_memcpy(s, &ip6h[8], 16);
	__builtin_memcpy(d, &ip6h[24], 16);
	if (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == bpf_htonl(1))
		return 1; /* ::1 */
	if (s[0] == d[0] && s[1] == d[1] && s[2] == d[2] && s[3] == d[3])
		return 1;
	amb_count(AMB_STAT_STRICT_DROPPED);
	return 0;
}

SEC("cgroup_skb/ingress")
int amb_strict_in(struct __sk_buff *skb)
{
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return amb_strict_v4(skb);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return amb_strict_v6(skb);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
