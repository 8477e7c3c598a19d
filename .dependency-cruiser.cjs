/**
 * The import boundaries of ARCHITECTURE.md ("Import boundaries"), checked by dependency-cruiser on
 * the .ts sources (test/boundaries.test.ts runs it under `npm test`; by hand:
 * `npx depcruise --config .dependency-cruiser.cjs core bpf ztunnel waypoint control-plane cni-plugin lab cli bench tools fuzz dashboard`).
 *
 * Every rule is a `forbidden` one: its name is what a violation prints, its comment says why. A
 * folder may always import its own files, npm packages and node's built-ins; tests (test/) may
 * import anything and are not checked. Type-only imports count: a type couples as much as a value.
 */
'use strict';

/** Every top-level source folder; anything else an import resolves to is a package or a built-in. */
const OURS = '^(core|bpf|ztunnel|waypoint|control-plane|cni-plugin|lab|cli|bench|tools|fuzz|dashboard)/';

/**
 * What the lab may take from cni-plugin: the agent's Unix-socket API (wire types and the client the
 * plugin itself uses), and the agent's enrolment rule with its defaults, so the lab predicts which
 * pods a relabel enrols with the agent's own code instead of a copy that could drift.
 */
const LAB_FROM_CNI_PLUGIN = '^cni-plugin/(api|agent-client|agent/decide|agent/config)[.]ts$';

/**
 * What the fuzz suite may take from components: the parsers at their input boundaries (ztunnel's
 * SOCKS5 handshake, the CNI plugin's stdin and its error class), driven in-process as bench/ drives
 * the control plane.
 */
const FUZZ_FROM_COMPONENTS = '^(ztunnel/socks5|cni-plugin/cni/(spec|errors))[.]ts$';

/** What the cli may take from bpf: precheck checks the kernel the way the loader will. */
const CLI_FROM_BPF = '^bpf/(kernel|command)[.]ts$';

/**
 * core/'s folders, lowest first: a folder may import its own files, core/'s top-level files
 * (errors.ts, labels.ts, drain.ts) and the folders before it, never one after it, so there is no
 * import cycle between folders. validation/ is the structural-check kit; kube/ reads Kubernetes
 * objects; discovery/ is the control plane's wire contract and its clients; node-config/ is what a
 * process reads on its own node (environment, the standalone file, which source to use).
 */
const CORE_LAYERS = ['validation', 'net', 'telemetry', 'identity', 'model', 'authz', 'hbone', 'kube', 'discovery', 'node-config'];

/** One rule per core/ folder: nothing from a later layer. */
const coreLayerRules = CORE_LAYERS.slice(0, -1).map((folder, i) => ({
  name: 'core-folders-import-only-lower-layers',
  comment: `core/${folder}/ may import only ${['core/ top-level files', ...CORE_LAYERS.slice(0, i).map((f) => `core/${f}/`)].join(', ')} (CORE_LAYERS)`,
  severity: 'error',
  from: { path: `^core/${folder}/` },
  to: { path: `^core/(${CORE_LAYERS.slice(i + 1).join('|')})/` },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...coreLayerRules,
    {
      name: 'core-imports-only-core',
      comment: 'core/ is the library every component shares; it depends on none of them',
      severity: 'error',
      from: { path: '^core/' },
      to: { path: OURS, pathNot: '^core/' },
    },
    {
      name: 'bpf-imports-only-core',
      comment: 'bpf/ (programs and their loader) is used by components; it uses only core/',
      severity: 'error',
      from: { path: '^bpf/' },
      to: { path: OURS, pathNot: '^(core|bpf)/' },
    },
    {
      name: 'component-imports-only-core',
      comment: 'ztunnel, waypoint and the control plane are separate programs: they share code through core/ only',
      severity: 'error',
      from: { path: '^(ztunnel|waypoint|control-plane)/' },
      to: { path: OURS, pathNot: '^(core/|$1/)' },
    },
    {
      name: 'cni-plugin-imports-only-core-and-bpf',
      comment: 'the CNI plugin and node agent use core/, and bpf/ because the agent loads and attaches the programs',
      severity: 'error',
      from: { path: '^cni-plugin/' },
      to: { path: OURS, pathNot: '^(core|bpf|cni-plugin)/' },
    },
    {
      name: 'lab-runs-components-not-imports-them',
      comment:
        'the lab runs components as processes by their entry-point paths (lab/components.ts) and may import core/, bpf/ and ' +
        "only cni-plugin's socket API and enrolment rule; never ztunnel, waypoint, control-plane, cli or other cni-plugin internals",
      severity: 'error',
      from: { path: '^lab/' },
      to: { path: OURS, pathNot: `^(core|bpf|lab)/|${LAB_FROM_CNI_PLUGIN}` },
    },
    {
      name: 'cli-imports-core-lab-index-bpf-kernel',
      comment:
        "ambientctl may import core/, the lab's public surface lab/index.ts (it drives the lab), bpf/kernel.ts + bpf/command.ts " +
        '(precheck) and dashboard/ (it serves the page); it talks to components over their APIs, never by importing them',
      severity: 'error',
      from: { path: '^cli/' },
      to: { path: OURS, pathNot: `^(core|cli|dashboard)/|^lab/index[.]ts$|${CLI_FROM_BPF}` },
    },
    {
      name: 'dashboard-imports-core-and-lab-index',
      comment:
        "the dashboard server reads components over their HTTP endpoints (metrics, admin) and the lab through its public surface lab/index.ts; " +
        'it imports no component and not the cli (the cli imports it)',
      severity: 'error',
      from: { path: '^dashboard/' },
      to: { path: OURS, pathNot: '^(core|dashboard)/|^lab/index[.]ts$' },
    },
    {
      name: 'bench-imports-core-and-the-control-plane',
      comment: 'benchmarks run components as processes; only the control plane is measured in-process (bench/control-plane.ts)',
      severity: 'error',
      from: { path: '^bench/' },
      to: { path: OURS, pathNot: '^(core|control-plane|bench)/' },
    },
    {
      name: 'fuzz-imports-core-and-boundary-parsers',
      comment: "the fuzz suite drives core/'s parsers and the components' input parsers (FUZZ_FROM_COMPONENTS), nothing else of a component",
      severity: 'error',
      from: { path: '^fuzz/' },
      to: { path: OURS, pathNot: `^(core|fuzz)/|${FUZZ_FROM_COMPONENTS}` },
    },
    {
      name: 'tools-import-only-core',
      comment: 'tools/ generate files from core/ definitions',
      severity: 'error',
      from: { path: '^tools/' },
      to: { path: OURS, pathNot: '^(core|tools)/' },
    },
    {
      name: 'nothing-imports-tests',
      comment: 'no source depends on test/ (helpers and fixtures belong to the tests)',
      severity: 'error',
      from: { path: OURS },
      to: { path: '^test/' },
    },
    {
      name: 'not-resolvable',
      comment: 'an import that resolves to nothing is a broken import (or one the check cannot see)',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // test/ is not excluded so an import of it is seen; it is never a starting point, so its own imports are not checked.
    exclude: { path: '^(dist|node_modules)/|[.]d[.]ts$' },
    // Type-only imports are edges too.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      extensions: ['.ts', '.js', '.json'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
    },
  },
};
