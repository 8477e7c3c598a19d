/**
 * Container resources (`requests`, `limits`) of the waypoint Deployments the control plane derives,
 * read from `WAYPOINT_RESOURCES` (JSON, what the control-plane chart writes from
 * `waypoint.resources`) and checked before anything is written: the API server would otherwise
 * refuse every waypoint Deployment (a bad quantity, a request above its limit) long after start-up.
 */

/** `requests` and `limits` as a container spec carries them (quantities as strings). */
export interface ContainerResources {
  readonly requests?: Readonly<Record<string, string>>;
  readonly limits?: Readonly<Record<string, string>>;
}

/**
 * Istio's waypoint defaults (`global.waypoint.resources`): a request that schedules on any node and
 * a memory limit that stops a leaking proxy before it takes the node's memory. No CPU limit: CFS
 * throttling of a proxy shows up as latency on every request through it; the request already
 * gives it its share under contention.
 */
export const DEFAULT_WAYPOINT_RESOURCES: ContainerResources = Object.freeze({
  requests: Object.freeze({ cpu: '100m', memory: '128Mi' }),
  limits: Object.freeze({ memory: '1Gi' }),
});

/** Kubernetes quantity: a non-negative decimal with a binary or decimal SI suffix, or an exponent. */
const QUANTITY_RE = /^(\d+(?:\.\d*)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+)?$/;
const SUFFIX: Readonly<Record<string, number>> = {
  '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};
/** A resource name: `cpu`, `memory`, `ephemeral-storage`, or a prefixed extended resource. */
const RESOURCE_NAME_RE = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$/;

/**
 * The value of a quantity (cores, bytes, ...), or undefined when `q` is not one. Only for
 * comparing a request with its limit: a double is exact enough for that.
 *
 * @example
 * quantityValue('128Mi') // 134217728
 * quantityValue('100m') // 0.1
 */
export function quantityValue(q: string): number | undefined {
  const m = QUANTITY_RE.exec(q);
  if (!m) return undefined;
  const suffix = m[2] ?? '';
  const factor = /^[eE]/.test(suffix) ? 10 ** Number(suffix.slice(1)) : SUFFIX[suffix]!;
  return Number(m[1]) * factor;
}

/**
 * Parses `WAYPOINT_RESOURCES`. Problems are pushed onto `problems` (named after `name`) and the
 * default is returned in their place, so the caller reports every problem at once. `{}` means no
 * requests and no limits.
 *
 * @example
 * parseContainerResources('WAYPOINT_RESOURCES', '{"requests":{"cpu":"200m"}}', problems) // { requests: { cpu: '200m' } }
 */
export function parseContainerResources(name: string, text: string, problems: string[]): ContainerResources {
  const found: string[] = [];
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    problems.push(`${name} is not JSON (e.g. {"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"memory":"1Gi"}})`);
    return DEFAULT_WAYPOINT_RESOURCES;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push(`${name} must be a JSON object with "requests" and/or "limits"`);
    return DEFAULT_WAYPOINT_RESOURCES;
  }
  const out: { requests?: Record<string, string>; limits?: Record<string, string> } = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (key !== 'requests' && key !== 'limits') {
      found.push(`${name}: "${key}" is not one of requests, limits`);
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      found.push(`${name}: ${key} must be an object of resource name to quantity`);
      continue;
    }
    const list: Record<string, string> = {};
    for (const [resource, q] of Object.entries(value as Record<string, unknown>)) {
      if (!RESOURCE_NAME_RE.test(resource)) found.push(`${name}: ${key}.${resource} is not a resource name (cpu, memory, ephemeral-storage, ...)`);
      // A number is a quantity too (the chart's values may hold `cpu: 1`).
      const s = typeof q === 'number' ? String(q) : q;
      if (typeof s !== 'string' || quantityValue(s) === undefined) found.push(`${name}: ${key}.${resource}=${JSON.stringify(q)} is not a Kubernetes quantity (e.g. 100m, 128Mi, 1)`);
      else list[resource] = s;
    }
    if (Object.keys(list).length > 0) out[key] = list;
  }
  for (const [resource, request] of Object.entries(out.requests ?? {})) {
    const limit = out.limits?.[resource];
    if (limit !== undefined && quantityValue(request)! > quantityValue(limit)!) {
      found.push(`${name}: requests.${resource} (${request}) is above limits.${resource} (${limit}); the api server would refuse every waypoint deployment`);
    }
  }
  if (found.length > 0) {
    problems.push(...found);
    return DEFAULT_WAYPOINT_RESOURCES;
  }
  return Object.freeze({
    ...(out.requests ? { requests: Object.freeze(out.requests) } : {}),
    ...(out.limits ? { limits: Object.freeze(out.limits) } : {}),
  });
}
