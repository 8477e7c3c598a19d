/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The few kernel UAPI definitions the programs use, copied from include/uapi/linux/bpf.h and
 * friends. Why not <linux/bpf.h> or a generated vmlinux.h: the objects are committed and CI
 * rebuilds them byte for byte, and the BTF that clang emits contains every type the programs
 * touch. Depending on the build host's linux-libc-dev (or its running kernel's BTF) would make
 * the objects differ between hosts for no functional reason. These are stable ABI: the context
 * structs only ever grow at the end, so declaring a prefix keeps every field offset exact.
 */
#ifndef AMB_UAPI_H
#define AMB_UAPI_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed int __s32;
typedef signed long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

#define __bpf_md_ptr(type, name) \
	union {                  \
		type name;       \
		__u64 : 64;      \
	} __attribute__((aligned(8)))

struct bpf_sock;

/* Context of cgroup/connect{4,6}, getsockname{4,6}, getpeername{4,6}: the full struct. */
struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4;		/* network byte order; 4-byte write */
	__u32 user_ip6[4];	/* network byte order; 4-byte write */
	__u32 user_port;	/* network byte order in the low 16 bits; 4-byte write */
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 msg_src_ip4;
	__u32 msg_src_ip6[4];
	__bpf_md_ptr(struct bpf_sock *, sk);
};

/* Context of sockops: the prefix up to `sk` (kernel 5.3+). */
struct bpf_sock_ops {
	__u32 op;
	union {
		__u32 args[4];
		__u32 reply;
		__u32 replylong[4];
	};
	__u32 family;
	__u32 remote_ip4;	/* network byte order */
	__u32 local_ip4;	/* network byte order */
	__u32 remote_ip6[4];	/* network byte order */
	__u32 local_ip6[4];	/* network byte order */
	__u32 remote_port;	/* network byte order, in the high 16 bits on little endian: use bpf_ntohl */
	__u32 local_port;	/* host byte order */
	__u32 is_fullsock;
	__u32 snd_cwnd;
	__u32 srtt_us;
	__u32 bpf_sock_ops_cb_flags;
	__u32 state;
	__u32 rtt_min;
	__u32 snd_ssthresh;
	__u32 rcv_nxt;
	__u32 snd_nxt;
	__u32 snd_una;
	__u32 mss_cache;
	__u32 ecn_flags;
	__u32 rate_delivered;
	__u32 rate_interval_us;
	__u32 packets_out;
	__u32 retrans_out;
	__u32 total_retrans;
	__u32 segs_in;
	__u32 data_segs_in;
	__u32 segs_out;
	__u32 data_segs_out;
	__u32 lost_out;
	__u32 sacked_out;
	__u32 sk_txhash;
	__u64 bytes_received;
	__u64 bytes_acked;
	__bpf_md_ptr(struct bpf_sock *, sk);
};

/* Context of cgroup_skb: the prefix up to `protocol`. */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;		/* network byte order */
};

/* enum bpf_map_type */
#define BPF_MAP_TYPE_HASH		1
#define BPF_MAP_TYPE_ARRAY		2
#define BPF_MAP_TYPE_PERCPU_ARRAY	6
#define BPF_MAP_TYPE_LRU_HASH		9
#define BPF_MAP_TYPE_LPM_TRIE		11
#define BPF_MAP_TYPE_SK_STORAGE		24

/* map flags, update flags, sk_storage_get flags */
#define BPF_F_NO_PREALLOC		(1U << 0)
#define BPF_ANY				0
#define BPF_SK_STORAGE_GET_F_CREATE	(1ULL << 0)

/* enum bpf_sock_ops op values, callback flags, TCP states as sockops reports them */
#define BPF_SOCK_OPS_TCP_CONNECT_CB		3
#define BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB	5
#define BPF_SOCK_OPS_STATE_CB			10
#define BPF_SOCK_OPS_STATE_CB_FLAG		(1 << 2)
#define BPF_TCP_CLOSE				7

/* socket and protocol numbers */
#define AF_INET		2
#define AF_INET6	10
#define SOCK_STREAM	1
#define IPPROTO_TCP	6
#define ETH_P_IP	0x0800
#define ETH_P_IPV6	0x86DD

#endif /* AMB_UAPI_H */
