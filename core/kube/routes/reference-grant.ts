/**
 * Gateway API `ReferenceGrant` specs (`gateway.networking.k8s.io/v1beta1`, `v1`) → the model's
 * grants (`core/model/reference-grant.ts`, where the rule that uses them lives).
 *
 * The upstream schema (checked before this, `core/kube/schema.ts`, or `specProblems` for the file
 * and the wire) types the fields and gives `group` and `kind` their patterns; the checks here
 * hold whatever reached them (a converter is a parser boundary: issue 19): every value has the
 * syntax of what it names (a group is empty or a DNS subdomain, a kind an upstream Kind, a
 * namespace a DNS-1123 label, a name a DNS-1123 subdomain), so no control, bidi or zero-width
 * character gets into a grant; the lists have upstream's bounds (1 to 16 entries); unknown keys
 * are refused.
 */
import { describe, field, keyPath, list, mapping, quote, type Problems } from '../../validation/check.js';
import type { ReferenceGrant, ReferenceGrantFrom, ReferenceGrantTo } from '../../model/reference-grant.js';
import { LABEL_RE, SUBDOMAIN_RE } from '../names.js';

const SPEC_KEYS = ['from', 'to'];
const FROM_KEYS = ['group', 'kind', 'namespace'];
const TO_KEYS = ['group', 'kind', 'name'];
/** Upstream's `maxItems` of `spec.from` and `spec.to`. */
export const REFERENCE_GRANT_MAX_ENTRIES = 16;
// Gateway API's Group (empty: the core group) and Kind patterns.
const GROUP_RE = /^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const KIND_RE = /^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/;

/** Converts ReferenceGrant specs, recording problems in `p` under each entry's path. */
export class ReferenceGrantConverter {
  constructor(readonly p: Problems) {}

  /**
   * Converts a ReferenceGrant spec; undefined (with problems) when any field is wrong: a grant is
   * taken whole or not at all, never widened or narrowed by a dropped entry.
   *
   * @example
   * new ReferenceGrantConverter(p).referenceGrant('allow-apps', 'backends', {
   *   from: [{group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'apps'}],
   *   to: [{group: '', kind: 'Service', name: 'web'}],
   * }, 'spec');
   */
  referenceGrant(name: string, namespace: string, spec: Record<string, unknown>, path: string): ReferenceGrant | undefined {
    const before = this.p.size;
    mapping(this.p, path, spec, SPEC_KEYS, 'a mapping {from, to}');
    const from = this.entries(spec, path, 'from', FROM_KEYS, (m, q): ReferenceGrantFrom | undefined => {
      const group = this.group(m, q);
      const kind = this.kind(m, q);
      const ns = field(this.p, q, m, 'namespace', (x, r) => this.checked(x, r, 'a namespace (DNS-1123 label)', (s) => LABEL_RE.test(s)), {
        required: true,
        expected: 'the namespace whose objects may refer to this one',
      });
      return group === undefined || kind === undefined || ns === undefined ? undefined : { group, kind, namespace: ns };
    });
    const to = this.entries(spec, path, 'to', TO_KEYS, (m, q): ReferenceGrantTo | undefined => {
      const group = this.group(m, q);
      const kind = this.kind(m, q);
      const n = field(this.p, q, m, 'name', (x, r) => this.checked(x, r, 'an object name (DNS-1123 subdomain)', (s) => SUBDOMAIN_RE.test(s)));
      if (group === undefined || kind === undefined) return undefined;
      return { group, kind, ...(n !== undefined ? { name: n } : {}) };
    });
    if (this.p.size > before || !from || !to) return undefined;
    return { kind: 'ReferenceGrant', name, namespace, from, to };
  }

  private entries<T>(
    spec: Record<string, unknown>,
    path: string,
    key: 'from' | 'to',
    keys: readonly string[],
    item: (m: Record<string, unknown>, path: string) => T | undefined,
  ): T[] | undefined {
    return field(
      this.p,
      path,
      spec,
      key,
      (x, q) => {
        if (Array.isArray(x) && x.length > REFERENCE_GRANT_MAX_ENTRIES) {
          this.p.add(q, `has ${x.length} entries; at most ${REFERENCE_GRANT_MAX_ENTRIES} (Gateway API)`);
          return undefined;
        }
        return list(
          this.p,
          q,
          x,
          (e, eq) => {
            const m = mapping(this.p, eq, e, keys, `a mapping {${keys.join(', ')}}`);
            return m ? item(m, eq) : undefined;
          },
          { nonEmpty: key === 'from' ? 'name who may refer in' : 'name what may be referred to' },
        );
      },
      { required: true, expected: `a list of {${keys.join(', ')}}` },
    );
  }

  /** `group`: required, `""` for the core group. */
  private group(m: Record<string, unknown>, path: string): string | undefined {
    const q = keyPath(path, 'group');
    const v = Object.hasOwn(m, 'group') ? m.group : undefined;
    if (v === undefined || v === null) {
      this.p.add(q, 'required field is missing; expected an API group ("" for the core group, e.g. Service)');
      return undefined;
    }
    if (typeof v !== 'string' || v.length > 253 || !GROUP_RE.test(v)) {
      this.p.add(q, `${typeof v === 'string' ? quote(v) : describe(v)} is not an API group; expected "" (core) or a DNS subdomain such as gateway.networking.k8s.io`);
      return undefined;
    }
    return v;
  }

  private kind(m: Record<string, unknown>, path: string): string | undefined {
    return field(this.p, path, m, 'kind', (x, q) => this.checked(x, q, 'a kind (e.g. HTTPRoute, Service)', (s) => s.length <= 63 && KIND_RE.test(s)), {
      required: true,
      expected: 'a kind (e.g. HTTPRoute, Service)',
    });
  }

  private checked(v: unknown, path: string, what: string, ok: (s: string) => boolean): string | undefined {
    if (typeof v !== 'string' || v === '' || !ok(v)) {
      this.p.add(path, `${typeof v === 'string' ? quote(v) : describe(v)} is not ${what}`);
      return undefined;
    }
    return v;
  }
}
