/**
 * The discovery fan-out: one `Subscriber` per connected proxy, fed from `EncodedState`.
 *
 * Memory per subscriber is bounded by the size of the configuration, never by the number of
 * changes: a subscriber whose stream is not writable (a slow or stuck proxy) accumulates the
 * *keys* that changed, and when its stream drains it gets one delta with their current values.
 * At most one message is buffered per subscriber. A subscriber that stays blocked longer than
 * `slowClientTimeoutMs` is dropped; it reconnects with its version and resumes.
 *
 * A client that reconnects with a version the hub knows (the current one, or one in the bounded
 * history of deltas) gets only what changed since; otherwise it gets a snapshot.
 */
import type { ServerHttp2Stream } from 'node:http2';
import type { Logger } from '../../core/telemetry/log.js';
import { NODE_AGENT_KINDS, RESOURCE_KINDS, type ResourceKind } from '../../core/discovery/wire.js';
import type { EncodedState, GlobalDelta } from './state.js';

/** What a proxy receives. */
export type ProxyKind = 'ztunnel' | 'waypoint';

/**
 * Which resources a view holds. A ztunnel gets every node, workload, service and peer
 * authentication (it routes to and checks mTLS for any destination), but only the
 * authorization policies that apply to workloads on its node (it enforces policy for inbound
 * connections to its own workloads only), and no routes or waypoint policies. A waypoint gets
 * everything but the node-agent kinds.
 *
 * The node agent subscribes with the ztunnel view (the ztunnel identity and its node's token), so
 * that view also carries `NODE_AGENT_KINDS`: pods without an IP yet and the namespaces' dataplane
 * mode, which the agent needs at CNI ADD, before the pod is a workload. ztunnel ignores them. They
 * are not scoped per node: pending pods are few and short-lived, and scoping would cost a per-node
 * view like the policies' for little.
 */
const GLOBAL_KINDS: Record<ProxyKind, readonly ResourceKind[]> = {
  ztunnel: ['nodes', 'workloads', 'services', 'peerAuthentications', 'pendingPods', 'namespaces'],
  waypoint: RESOURCE_KINDS.filter((k) => !NODE_AGENT_KINDS.has(k)),
};
const SCOPED_KIND = 'authorizationPolicies' satisfies ResourceKind;

/** Hub settings. */
export interface HubOptions {
  readonly logger: Logger;
  /** Deltas kept for resuming clients. */
  readonly historySize: number;
  /** A subscriber that cannot be written to for this long is dropped. */
  readonly slowClientTimeoutMs: number;
  /** Called per message written (for metrics). */
  readonly onPush?: (type: 'snapshot' | 'delta' | 'resume' | 'trustBundle', bytes: number) => void;
  /** Called when a subscriber is dropped for being slow. */
  readonly onDrop?: (reason: 'slow') => void;
  /**
   * Snapshots being written at once; further subscribers wait their turn. Bounds memory and CPU
   * when every proxy reconnects together (a control-plane restart). Default 8.
   */
  readonly maxConcurrentSnapshots?: number;
}

/** Enough to keep a fast network busy, few enough that 50 reconnecting proxies do not buffer 50 snapshots. */
export const DEFAULT_MAX_CONCURRENT_SNAPSHOTS = 8;

/** Who subscribes. */
export interface SubscribeRequest {
  readonly proxy: ProxyKind;
  /** The node a ztunnel serves (authenticated by its token). */
  readonly node?: string;
  /** The SPIFFE ID from the client certificate. */
  readonly identity: string;
  readonly peer: string;
  /** The version the client holds (`since`), if any. */
  readonly since?: string;
}

/** One subscriber, as the debug endpoint lists it. */
export interface SubscriberInfo {
  readonly id: number;
  readonly proxy: ProxyKind;
  readonly node?: string;
  readonly identity: string;
  readonly peer: string;
  readonly connectedAt: string;
  /** The version of the last message written to it. */
  readonly version?: string;
  readonly seq: number;
  /** Whether it is up to date with the hub. */
  readonly synced: boolean;
  /** Its stream is full: it is not reading as fast as changes come. */
  readonly blocked: boolean;
  readonly pendingKeys: number;
  readonly snapshots: number;
  readonly deltas: number;
  readonly bytesSent: number;
}

interface TrustBundle {
  readonly roots: readonly string[];
  readonly signer: string;
}

const J = JSON.stringify;

class Subscriber {
  readonly connectedAt = new Date();
  /** Version the client holds once everything written so far is read. */
  version: string | undefined;
  seq = 0;
  needSnapshot = true;
  /** Exactly one global delta behind: its cached fragments can be sent as they are. */
  fast: GlobalDelta | undefined;
  /** Otherwise: keys changed since `version`, per kind. */
  readonly pending = new Map<ResourceKind, Set<string>>();
  /** The scoped kind as the client holds it (key → json); undefined: unknown, send it whole. */
  scopedSent: Map<string, string> | undefined;
  bundleDirty = true;
  /** Answer `resume` at the first flush (the client's version is current). */
  resumeDue = false;
  blockedSince: number | undefined;
  /** Holds one of the hub's snapshot slots until its snapshot has drained. */
  snapshotSlot = false;
  queuedForSnapshot = false;
  snapshots = 0;
  deltas = 0;
  bytesSent = 0;
  closed = false;

  constructor(
    readonly id: number,
    readonly req: SubscribeRequest,
    readonly stream: ServerHttp2Stream,
  ) {}

  get pendingKeys(): number {
    let n = 0;
    for (const s of this.pending.values()) n += s.size;
    return n;
  }

  addPending(delta: GlobalDelta): void {
    for (const [kind, keys] of delta.changed) {
      let set = this.pending.get(kind);
      if (!set) this.pending.set(kind, (set = new Set()));
      for (const k of keys) set.add(k);
    }
  }
}

/**
 * @example
 * const hub = new DiscoveryHub(state, { logger, historySize: 100, slowClientTimeoutMs: 30_000 });
 * hub.subscribe(stream, { proxy: 'ztunnel', node: 'node-a', identity, peer, since });
 * hub.publish(state.update(config));
 */
export class DiscoveryHub {
  readonly #state: EncodedState;
  readonly #opts: HubOptions;
  readonly #subs = new Set<Subscriber>();
  readonly #history: GlobalDelta[] = [];
  // Cached per delta and kind: the joined upsert JSON and removed keys of a global delta.
  readonly #fragments = new WeakMap<GlobalDelta, Map<ResourceKind, { upserts: string; removes: string }>>();
  #bundle: TrustBundle | undefined;
  #nextId = 1;
  #snapshotSlots = 0;
  readonly #snapshotQueue: Subscriber[] = [];
  readonly #timer: NodeJS.Timeout;

  constructor(state: EncodedState, opts: HubOptions) {
    this.#state = state;
    this.#opts = opts;
    this.#timer = setInterval(() => this.#dropSlow(), Math.max(100, Math.min(1000, opts.slowClientTimeoutMs / 4)));
    this.#timer.unref();
  }

  get size(): number {
    return this.#subs.size;
  }

  /** Subscribers, for `/debug/connections`. */
  list(): SubscriberInfo[] {
    return [...this.#subs].map((s) => ({
      id: s.id,
      proxy: s.req.proxy,
      ...(s.req.node !== undefined ? { node: s.req.node } : {}),
      identity: s.req.identity,
      peer: s.req.peer,
      connectedAt: s.connectedAt.toISOString(),
      ...(s.version !== undefined ? { version: s.version } : {}),
      seq: s.seq,
      synced: !s.needSnapshot && !s.fast && s.pending.size === 0 && s.version === this.#state.version,
      blocked: s.blockedSince !== undefined,
      pendingKeys: s.pendingKeys,
      snapshots: s.snapshots,
      deltas: s.deltas,
      bytesSent: s.bytesSent,
    }));
  }

  /** Sets the trust bundle sent to every subscriber (before anything else, and on change). */
  setTrustBundle(bundle: TrustBundle): void {
    if (this.#bundle && this.#bundle.signer === bundle.signer && J(this.#bundle.roots) === J(bundle.roots)) return;
    this.#bundle = bundle;
    for (const s of this.#subs) {
      s.bundleDirty = true;
      this.#flush(s);
    }
  }

  /**
   * Attaches a proxy's response stream (the caller has answered 200 already). Works out whether
   * it can resume from `since`, and writes its first messages.
   */
  subscribe(stream: ServerHttp2Stream, req: SubscribeRequest): void {
    const s = new Subscriber(this.#nextId++, req, stream);
    this.#subs.add(s);
    const log = this.#opts.logger.child({ subscriber: s.id, proxy: req.proxy, node: req.node, identity: req.identity, peer: req.peer });
    const cleanup = () => {
      this.#releaseSnapshotSlot(s);
      if (s.closed) return;
      s.closed = true;
      this.#subs.delete(s);
      log.info({ version: s.version, bytes_sent: s.bytesSent }, 'proxy disconnected');
    };
    stream.on('close', cleanup);
    stream.on('error', (err) => log.debug({ err }, 'discovery stream error'));
    stream.on('drain', () => {
      s.blockedSince = undefined;
      this.#releaseSnapshotSlot(s);
      this.#flush(s);
    });
    const mode = this.#resumeFrom(s, req.since);
    log.info({ since: req.since, mode, version: this.#state.version }, 'proxy connected');
    this.#flush(s);
  }

  /** Sends a change to every subscriber (or queues its keys for blocked ones). */
  publish(delta: GlobalDelta | undefined): void {
    if (!delta) return;
    this.#history.push(delta);
    while (this.#history.length > this.#opts.historySize) this.#history.shift();
    for (const s of this.#subs) {
      if (s.needSnapshot) continue; // the snapshot will hold it
      if (!s.fast && s.pending.size === 0 && s.version === delta.from) {
        s.fast = delta;
      } else {
        if (s.fast) {
          s.addPending(s.fast);
          s.fast = undefined;
        }
        s.addPending(delta);
      }
      this.#flush(s);
    }
  }

  /** Ends every stream (the control plane is stopping); clients reconnect and resume. */
  close(): void {
    clearInterval(this.#timer);
    for (const s of this.#subs) s.stream.close();
    this.#subs.clear();
  }

  // ---- internals ----------------------------------------------------------------------------

  /** Decides how a new subscriber starts; returns 'resume', 'delta' or 'snapshot' (for the log). */
  #resumeFrom(s: Subscriber, since: string | undefined): string {
    if (since === undefined) return 'snapshot';
    if (since === this.#state.version) {
      s.needSnapshot = false;
      s.version = since;
      s.seq = this.#state.seq;
      // Its view of the scoped kind is a function of the version and its node: the current one.
      s.scopedSent = this.#scopedNow(s);
      s.resumeDue = true;
      return 'resume';
    }
    let i = -1;
    for (let j = this.#history.length - 1; j >= 0; j--) {
      if (this.#history[j]!.from === since) {
        i = j;
        break;
      }
    }
    if (i === -1) return 'snapshot';
    s.needSnapshot = false;
    s.version = since;
    for (let j = i; j < this.#history.length; j++) s.addPending(this.#history[j]!);
    // A delta bigger than half the state costs more than a snapshot to apply.
    if (s.pendingKeys > this.#state.size / 2) {
      s.pending.clear();
      s.needSnapshot = true;
      return 'snapshot';
    }
    s.scopedSent = undefined;
    return 'delta';
  }

  #scopedNow(s: Subscriber): Map<string, string> {
    const entries = this.#state.entries(SCOPED_KIND);
    const out = new Map<string, string>();
    if (s.req.proxy === 'waypoint') return out;
    for (const key of this.#state.policiesForNode(s.req.node ?? '')) {
      const e = entries.get(key);
      if (e) out.set(key, e.json);
    }
    return out;
  }

  #write(s: Subscriber, chunks: string | readonly (string | Buffer)[], type: 'snapshot' | 'delta' | 'resume' | 'trustBundle'): void {
    if (s.closed || s.stream.destroyed) return;
    let ok = true;
    let bytes = 0;
    for (const c of typeof chunks === 'string' ? [chunks] : chunks) {
      // Buffers are queued by reference: a shared snapshot body is not copied per subscriber.
      ok = s.stream.write(c);
      bytes += typeof c === 'string' ? Buffer.byteLength(c) : c.length;
    }
    s.bytesSent += bytes;
    if (type === 'snapshot') s.snapshots++;
    if (type === 'delta') s.deltas++;
    this.#opts.onPush?.(type, bytes);
    if (!ok && s.blockedSince === undefined) s.blockedSince = Date.now();
  }

  #flush(s: Subscriber): void {
    if (s.closed || s.blockedSince !== undefined || !this.#state.loaded) return;
    if (s.bundleDirty && this.#bundle) {
      s.bundleDirty = false;
      this.#write(s, `${J({ type: 'trustBundle', roots: this.#bundle.roots, signer: this.#bundle.signer })}\n`, 'trustBundle');
    }
    if (s.needSnapshot) {
      if (this.#snapshotSlots >= (this.#opts.maxConcurrentSnapshots ?? DEFAULT_MAX_CONCURRENT_SNAPSHOTS)) {
        if (!s.queuedForSnapshot) {
          s.queuedForSnapshot = true;
          this.#snapshotQueue.push(s);
        }
        return;
      }
      this.#snapshotSlots++;
      s.snapshotSlot = true;
      this.#snapshot(s);
      if (s.blockedSince === undefined) this.#releaseSnapshotSlot(s);
      return;
    }
    if (s.resumeDue) {
      s.resumeDue = false;
      this.#write(s, `{"type":"resume","version":${J(s.version ?? '')},"seq":${s.seq}}\n`, 'resume');
      if (s.blockedSince !== undefined) return;
    }
    if (s.version === this.#state.version && !s.fast && s.pending.size === 0) return;
    this.#delta(s);
  }

  #releaseSnapshotSlot(s: Subscriber): void {
    if (!s.snapshotSlot) return;
    s.snapshotSlot = false;
    this.#snapshotSlots--;
    const max = this.#opts.maxConcurrentSnapshots ?? DEFAULT_MAX_CONCURRENT_SNAPSHOTS;
    while (this.#snapshotQueue.length > 0 && this.#snapshotSlots < max) {
      const next = this.#snapshotQueue.shift()!;
      next.queuedForSnapshot = false;
      if (!next.closed) this.#flush(next);
    }
  }

  #snapshot(s: Subscriber): void {
    const st = this.#state;
    const body = st.snapshotBody(GLOBAL_KINDS[s.req.proxy]);
    let scoped: Map<string, string> | undefined;
    let tail = '}}\n';
    if (s.req.proxy === 'ztunnel') {
      scoped = this.#scopedNow(s);
      tail = `,${J(SCOPED_KIND)}:[${[...scoped.values()].join(',')}]}}\n`;
    }
    const head = `{"type":"snapshot","version":${J(st.version)},"seq":${st.seq},"rootNamespace":${J(st.rootNamespace)},"resources":{`;
    s.needSnapshot = false;
    s.fast = undefined;
    s.pending.clear();
    s.scopedSent = scoped;
    s.version = st.version;
    s.seq = st.seq;
    this.#write(s, [head, body, tail], 'snapshot');
  }

  #fragmentsOf(delta: GlobalDelta): Map<ResourceKind, { upserts: string; removes: string }> {
    let f = this.#fragments.get(delta);
    if (!f) {
      f = this.#buildFragments(delta.changed);
      this.#fragments.set(delta, f);
    }
    return f;
  }

  /** Upsert JSON and removed keys per kind for `changed`, from the current state. */
  #buildFragments(changed: ReadonlyMap<ResourceKind, ReadonlySet<string>>): Map<ResourceKind, { upserts: string; removes: string }> {
    const out = new Map<ResourceKind, { upserts: string; removes: string }>();
    for (const [kind, keys] of changed) {
      const entries = this.#state.entries(kind);
      const ups: string[] = [];
      const rms: string[] = [];
      for (const k of keys) {
        const e = entries.get(k);
        if (e) ups.push(e.json);
        else rms.push(J(k));
      }
      out.set(kind, { upserts: ups.join(','), removes: rms.join(',') });
    }
    return out;
  }

  #delta(s: Subscriber): void {
    const st = this.#state;
    // A fast-path fragment is only valid while the delta it was built for is the latest one.
    const latest = this.#history[this.#history.length - 1];
    let frags: Map<ResourceKind, { upserts: string; removes: string }>;
    if (s.fast && s.fast === latest) {
      frags = this.#fragmentsOf(s.fast);
    } else {
      if (s.fast) s.addPending(s.fast);
      frags = this.#buildFragments(s.pending);
    }
    const ups: string[] = [];
    const rms: string[] = [];
    for (const kind of GLOBAL_KINDS[s.req.proxy]) {
      const f = frags.get(kind);
      if (!f) continue;
      if (f.upserts) ups.push(`${J(kind)}:[${f.upserts}]`);
      if (f.removes) rms.push(`${J(kind)}:[${f.removes}]`);
    }
    let replace = '';
    if (s.req.proxy === 'ztunnel') {
      const now = this.#scopedNow(s);
      const sent = s.scopedSent;
      const u: string[] = [];
      const r: string[] = [];
      if (!sent) {
        for (const json of now.values()) u.push(json);
        replace = `,"replace":[${J(SCOPED_KIND)}]`;
      } else {
        for (const [k, json] of now) if (sent.get(k) !== json) u.push(json);
        for (const k of sent.keys()) if (!now.has(k)) r.push(J(k));
      }
      if (u.length > 0) ups.push(`${J(SCOPED_KIND)}:[${u.join(',')}]`);
      if (r.length > 0) rms.push(`${J(SCOPED_KIND)}:[${r.join(',')}]`);
      s.scopedSent = now;
    }
    const line = `{"type":"delta","from":${J(s.version ?? '')},"version":${J(st.version)},"seq":${st.seq},"upserts":{${ups.join(',')}},"removes":{${rms.join(',')}}${replace}}\n`;
    s.fast = undefined;
    s.pending.clear();
    s.version = st.version;
    s.seq = st.seq;
    this.#write(s, line, 'delta');
  }

  #dropSlow(): void {
    const now = Date.now();
    for (const s of this.#subs) {
      if (s.blockedSince === undefined || now - s.blockedSince < this.#opts.slowClientTimeoutMs) continue;
      this.#opts.logger.warn(
        { subscriber: s.id, node: s.req.node, identity: s.req.identity, peer: s.req.peer, blocked_ms: now - s.blockedSince, pending_keys: s.pendingKeys },
        'dropping a proxy that stopped reading its discovery stream; it will resync when it reconnects',
      );
      this.#opts.onDrop?.('slow');
      this.#releaseSnapshotSlot(s);
      s.closed = true;
      this.#subs.delete(s);
      // RST_STREAM frees the stream's buffered data now, whatever the peer does.
      s.stream.close(0x8 /* CANCEL */);
    }
  }
}
