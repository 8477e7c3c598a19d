/**
 * `lab label namespace NAME k=v k-`: a namespace's labels, and waiting for the node agents to
 * enrol or release exactly the pods whose enrolment the change flips, as predicted with the
 * agent's own rule (cni-plugin/agent/decide.ts).
 */
import { DEFAULTS as AGENT_DEFAULTS } from '../cni-plugin/agent/config.js';
import { decide, type DecideContext } from '../cni-plugin/agent/decide.js';
import { LabError, requireLab, type Progress } from './cluster.js';
import { writeClusterFiles } from './cluster-files.js';
import { podStatuses } from './pods.js';
import { namespaces, objKey, podKey, podLabels, writeState, type LabPaths, type PodRecord } from './state.js';
import { until } from './sys.js';

type Raw = Record<string, unknown>;

/** A pod whose enrolment a namespace label change alters, with what the node agent will make of it. */
export interface EnrolmentChange {
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  /** The state to wait for: enrolled, or released (not-ambient or exempt). */
  readonly enrolled: boolean;
  readonly reason: string;
}

/**
 * The pods whose enrolment differs between two sets of namespace labels, decided by the node
 * agent's own rule (cni-plugin/agent/decide.ts) on the desired state the lab writes for it
 * (`writeClusterFiles`: namespaces with labels, pods with labels, no `ambient` verdict, the
 * agent's default EXEMPT_NAMESPACES). Only enrolled/not matters here, so PeerAuthentications
 * (which only decide STRICT) are left out; the cgroup rule never applies to lab pods, whose
 * cgroups hold no mesh process. A pod that opts out (`istio.io/dataplane-mode=none`, as every
 * waypoint pod does) or a label that does not touch enrolment (`istio.io/use-waypoint`) yields
 * no change, so nothing is waited for.
 */
export function enrolmentChanges(
  pods: readonly Pick<PodRecord, 'namespace' | 'name' | 'node' | 'raw'>[],
  before: ReadonlyMap<string, Readonly<Record<string, string>>>,
  after: ReadonlyMap<string, Readonly<Record<string, string>>>,
): EnrolmentChange[] {
  const ctx = (nss: ReadonlyMap<string, Readonly<Record<string, string>>>): DecideContext => ({
    namespaces: new Map([...nss].map(([name, labels]) => [name, { name, labels }])),
    peerAuthentications: [],
    exemptNamespaces: AGENT_DEFAULTS.exemptNamespaces,
    protectedCgroups: [],
    rootNamespace: AGENT_DEFAULTS.rootNamespace,
  });
  const was = ctx(before);
  const will = ctx(after);
  const out: EnrolmentChange[] = [];
  for (const p of pods) {
    const facts = { namespace: p.namespace, name: p.name, labels: podLabels(p) };
    const a = decide(facts, was);
    const b = decide(facts, will);
    if ((a.mode === 'enrolled') !== (b.mode === 'enrolled')) {
      out.push({ namespace: p.namespace, name: p.name, node: p.node, enrolled: b.mode === 'enrolled', reason: b.reason });
    }
  }
  return out;
}

export async function labelNamespace(paths: LabPaths, ns: string, changes: readonly string[], say: Progress = () => {}): Promise<void> {
  const s = await requireLab(paths);
  if (!namespaces(s).has(ns)) throw new LabError(`namespace ${ns} does not exist`, 'ERR_LAB_NO_NAMESPACE');
  const key = objKey('Namespace', undefined, ns);
  const obj = (s.objects[key] ?? { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: {} } }) as Raw;
  const meta = obj.metadata as Raw;
  const labels = { ...((meta.labels as Record<string, string>) ?? {}) };
  for (const c of changes) {
    const m = /^([A-Za-z0-9./_-]+)(=(.*)|-)$/.exec(c);
    if (!m) throw new LabError(`${JSON.stringify(c)} is not key=value or key-`, 'ERR_LAB_BAD_LABEL');
    if (m[2] === '-') delete labels[m[1]!];
    else labels[m[1]!] = m[3]!;
  }
  const before = namespaces(s);
  s.objects[key] = { ...obj, metadata: { ...meta, labels } };
  const moved = enrolmentChanges(Object.values(s.pods), before, namespaces(s));
  await writeClusterFiles(paths, s);
  await writeState(paths, s);
  // The agents enrol or release, from the desired state, exactly the pods whose decision changed.
  for (const p of moved) {
    await until(`the agent on ${p.node} to ${p.enrolled ? 'enrol' : 'release'} ${p.namespace}/${p.name} (${p.reason})`, async () => {
      const st = (await podStatuses(paths, s)).get(podKey(p.namespace, p.name));
      return st !== undefined && (st.mode === 'enrolled') === p.enrolled;
    });
  }
  const enrolled = moved.filter((p) => p.enrolled).length;
  const parts = [...(enrolled ? [`${enrolled} enrolled in`] : []), ...(moved.length - enrolled ? [`${moved.length - enrolled} taken out of`] : [])];
  say(`namespace/${ns} labeled; ${moved.length === 0 ? 'no pod changed enrolment' : `${moved.length} pod(s) changed enrolment: ${parts.join(', ')} the mesh`}`);
}
