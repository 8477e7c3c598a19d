/** Ports operators know from Istio; see ARCHITECTURE.md. */
export const PORTS = {
  outbound: 15001,
  inboundPlaintext: 15006,
  hbone: 15008,
  socks5: 15080,
  admin: 15000,
  metrics: 15020,
  readiness: 15021,
  controlPlane: 15012,
} as const;

/** Per-stream HTTP/2 flow-control window: one stream can keep 4 MiB in flight (a fast LAN's BDP). */
export const STREAM_WINDOW = 4 * 1024 * 1024;
/** Per-connection window: several fast streams can share one connection without starving. */
export const CONNECTION_WINDOW = 16 * 1024 * 1024;
/** Streams multiplexed on one pooled connection before another connection is opened. */
export const MAX_STREAMS_PER_CONNECTION = 100;
/** Pooled connections with no stream for this long are closed. */
export const POOL_IDLE_TIMEOUT_MS = 5 * 60 * 1000;
/** Largest header block accepted on a CONNECT; CONNECT headers are small, anything bigger is abuse. */
export const MAX_HEADER_LIST_SIZE = 16 * 1024;
/**
 * HTTP/2 frames up to 64 KiB minus a header: fewer frames and fewer JS↔C++ crossings per byte than
 * the 16 KiB default; TLS records stay 16 KiB regardless.
 */
export const MAX_FRAME_SIZE = 64 * 1024 - 9;
/**
 * nghttp2 memory cap per session, in MiB (Node's unit). Node's default of 10 would trip
 * ENHANCE_YOUR_CALM with 16 MiB windows in flight.
 */
export const MAX_SESSION_MEMORY_MB = 64;
