/**
 * The error-code registry (issue 14), after fastify's habit: every `ERR_*` code the source uses
 * has exactly one row in docs/errors.md saying what it means and what to check, every row names a
 * code the source still uses, and every code the other docs mention exists. In the folders whose
 * errors this registry owns (ztunnel/, waypoint/, control-plane/, core/, cni-plugin/, cli/, lab/,
 * bench/) a bare `throw new Error(` is allowed only as a programming-invariant assertion, marked
 * `// invariant:`.
 *
 * Codes are read from the TypeScript syntax tree, not grepped: string literals, template parts
 * and identifiers (CNI_ERRORS keys its codes as property names), never comments, so a code that
 * only a comment mentions is neither required nor counted as defined.
 */
import t from 'tap';
import ts from 'typescript';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PeerCertificate } from 'node:tls';
import { CertificateAuthority } from '../core/identity/ca.js';
import { SecretManager } from '../core/identity/secret-manager.js';
import { TrustAnchors } from '../core/identity/trust-anchors.js';
import { controlPlaneTlsOptions } from '../core/identity/control-plane-tls.js';
import { readRootsFile } from '../core/discovery/client.js';
import { DiscoverySource } from '../core/discovery/source.js';
import { controlPlaneIdentity } from '../core/discovery/wire.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const REGISTRY = 'docs/errors.md';
/** Folders that are not product source: dependencies, build output, the tests themselves. */
const NOT_SOURCE = new Set(['node_modules', 'dist', 'test']);
/** Folders whose bare throws this registry owns (other folders are reported, not failed). */
const OWNED = ['ztunnel', 'waypoint', 'control-plane', 'core', 'cni-plugin', 'cli', 'lab', 'bench'];
/** Other docs whose mentions of codes must name real codes. */
const OTHER_DOCS = ['README.md', 'ARCHITECTURE.md'];

/** `ERR_` codes in a piece of text; `ERR_CNI_*` (a family, not a code) is skipped. */
function codesIn(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/ERR_[A-Z0-9_]+/g)) {
    if (text[m.index! + m[0].length] === '*') continue;
    if (m.index! > 0 && /[A-Za-z0-9_]/.test(text[m.index! - 1]!)) continue;
    out.push(m[0].replace(/_+$/, ''));
  }
  return out;
}

/** Where each code occurs in one source file (`file:line`), from literals and identifiers only. */
export function codesInSource(text: string, file: string): Map<string, string[]> {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const found = new Map<string, string[]>();
  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteralLike(node) || ts.isTemplateLiteralToken(node) || ts.isIdentifier(node)) {
      for (const code of codesIn(node.text)) {
        const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
        found.set(code, [...(found.get(code) ?? []), `${file}:${line}`]);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

export interface RegistryRow {
  readonly code: string;
  readonly section: string;
  readonly meaning: string;
  readonly check: string;
  readonly line: number;
}

/**
 * The rows of the registry: table rows whose first cell is exactly one code in backquotes, under
 * a `## ` heading (the component); cells are code | meaning | what to check.
 */
export function registryRows(markdown: string): RegistryRow[] {
  const rows: RegistryRow[] = [];
  let section = '';
  markdown.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line.startsWith('## ')) section = line.slice(3).trim();
    if (!line.startsWith('|')) return;
    const cells = line
      .replace(/^\|/, '')
      .replace(/\|$/, '')
      .split(/(?<!\\)\|/)
      .map((c) => c.trim());
    const m = /^`(ERR_[A-Z0-9_]+)`$/.exec(cells[0] ?? '');
    if (!m) return;
    rows.push({ code: m[1]!, section, meaning: cells[1] ?? '', check: cells[2] ?? '', line: i + 1 });
  });
  return rows;
}

export interface RegistryInputs {
  /** code → where the source uses it */
  readonly source: ReadonlyMap<string, readonly string[]>;
  readonly rows: readonly RegistryRow[];
  /** doc file → codes it mentions (docs other than the registry) */
  readonly mentions: ReadonlyMap<string, readonly string[]>;
}

/** Every way source and registry disagree, one line each, sorted; empty when they agree. */
export function registryProblems(r: RegistryInputs): string[] {
  const problems: string[] = [];
  const byCode = new Map<string, RegistryRow[]>();
  for (const row of r.rows) byCode.set(row.code, [...(byCode.get(row.code) ?? []), row]);
  for (const [code, where] of r.source) {
    if (!byCode.has(code)) problems.push(`${code} (${where[0]}) is in the source but has no row in ${REGISTRY}`);
  }
  for (const [code, rows] of byCode) {
    if (!r.source.has(code)) problems.push(`${code} (${REGISTRY}:${rows[0]!.line}) is documented but no source uses it`);
    if (rows.length > 1) problems.push(`${code} has ${rows.length} rows in ${REGISTRY} (lines ${rows.map((x) => x.line).join(', ')}); keep one`);
    for (const row of rows) {
      if (!row.meaning || !row.check) problems.push(`${code} (${REGISTRY}:${row.line}) needs both a meaning and what to check`);
    }
  }
  for (const [doc, codes] of r.mentions) {
    for (const code of new Set(codes)) {
      if (!r.source.has(code)) problems.push(`${code} is mentioned in ${doc} but no source uses it`);
    }
  }
  return problems.sort();
}

/**
 * Bare `throw new Error(` sites (`file:line`) not marked as invariants: the throw's own line, or
 * the comment lines right above it (above a group of one-line guards), must hold `// invariant:`.
 */
export function unmarkedBareThrows(text: string, file: string): string[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const lines = text.split('\n');
  const out: string[] = [];
  const isGuard = (l: string) => /^\s*if \(.*\) throw new Error\(.*\);\s*$/.test(l);
  const visit = (node: ts.Node): void => {
    if (
      ts.isThrowStatement(node) &&
      node.expression &&
      ts.isNewExpression(node.expression) &&
      ts.isIdentifier(node.expression.expression) &&
      node.expression.expression.text === 'Error'
    ) {
      const at = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      let marked = lines[at]!.includes('// invariant:');
      for (let i = at - 1; !marked && i >= 0; i--) {
        const l = lines[i]!.trim();
        if (l.startsWith('//') || l.startsWith('*') || l.startsWith('/*')) marked = l.includes('invariant:');
        else if (!isGuard(lines[i]!)) break;
      }
      if (!marked) out.push(`${file}:${at + 1}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const path = join(dir, e.name);
    if (e.isDirectory()) {
      if (dir === ROOT.replace(/[\\/]$/, '') && NOT_SOURCE.has(e.name)) continue;
      if (e.name === 'node_modules') continue;
      out.push(...(await sourceFiles(path)));
    } else if (e.name.endsWith('.ts')) {
      out.push(path);
    }
  }
  return out;
}

const rel = (p: string) => relative(ROOT, p).split(sep).join('/');

async function realInputs(): Promise<RegistryInputs & { files: Map<string, string> }> {
  const files = new Map<string, string>();
  for (const f of await sourceFiles(ROOT.replace(/[\\/]$/, ''))) files.set(rel(f), await readFile(f, 'utf8'));
  const source = new Map<string, string[]>();
  for (const [file, text] of files) {
    for (const [code, where] of codesInSource(text, file)) source.set(code, [...(source.get(code) ?? []), ...where]);
  }
  const rows = registryRows(await readFile(join(ROOT, REGISTRY), 'utf8'));
  const mentions = new Map<string, string[]>();
  const docs = (await readdir(join(ROOT, 'docs'))).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
  for (const doc of [...docs, ...OTHER_DOCS]) {
    if (doc === REGISTRY) continue;
    mentions.set(doc, codesIn(await readFile(join(ROOT, doc), 'utf8')));
  }
  return { source, rows, mentions, files };
}

const real = await realInputs();

t.test('every code in the source has one row in docs/errors.md, and every documented code exists', async (t) => {
  // The extractor must see codes in each form they are declared in, or this test could not fail.
  t.ok(real.source.size > 50, `the source uses ${real.source.size} codes`);
  t.ok(real.source.has('ERR_HBONE_TLS'), 'a code passed to a constructor is found');
  t.ok(real.source.has('ERR_CNI_NODE_MISSING'), 'a code declared as an object key is found');
  t.ok(real.source.has('ERR_AGENT_NOT_READY'), 'a code in a constant table is found');
  t.ok(real.rows.length >= real.source.size, `${real.rows.length} rows in ${REGISTRY}`);
  t.same(registryProblems(real), [], 'source and registry agree');
});

t.test('README lists docs/errors.md among the documentation', async (t) => {
  t.match(await readFile(join(ROOT, 'README.md'), 'utf8'), /\[docs\/errors\.md\]\(docs\/errors\.md\)/);
});

t.test(`bare throw new Error( in ${OWNED.join(', ')} is only an invariant assertion`, async (t) => {
  const unmarked: string[] = [];
  const elsewhere: string[] = [];
  for (const [file, text] of real.files) {
    const sites = unmarkedBareThrows(text, file);
    if (OWNED.some((d) => file.startsWith(`${d}/`))) unmarked.push(...sites);
    else elsewhere.push(...sites);
  }
  t.same(unmarked, [], 'every bare throw there is marked // invariant: (or uses a MeshError with a code)');
  // Other folders belong to other owners: listed, not failed, so the count is visible.
  t.comment(`unmarked bare throws outside ${OWNED.join(', ')}: ${elsewhere.length}${elsewhere.length ? `\n  ${elsewhere.join('\n  ')}` : ''}`);
});

t.test('the check fails on planted drift (fixtures, the source is not edited)', async (t) => {
  const planted = [
    "export class PlantedError extends MeshError { constructor() { super('ERR_PLANTED_UNDOCUMENTED', 'planted'); } }",
    "export const TABLE = { ERR_PLANTED_KEY: 1, other: `a ${'x'} ERR_PLANTED_TEMPLATE b` };",
    '// ERR_PLANTED_ONLY_IN_A_COMMENT is not a definition',
  ].join('\n');
  const plantedCodes = codesInSource(planted, 'planted/fixture.ts');
  t.same([...plantedCodes.keys()].sort(), ['ERR_PLANTED_KEY', 'ERR_PLANTED_TEMPLATE', 'ERR_PLANTED_UNDOCUMENTED'], 'literals, keys and template parts count; comments do not');

  t.test('a code in the source without a row', async (t) => {
    const source = new Map(real.source);
    for (const [code, where] of plantedCodes) source.set(code, where);
    const problems = registryProblems({ ...real, source });
    t.same(
      problems,
      [
        `ERR_PLANTED_KEY (planted/fixture.ts:2) is in the source but has no row in ${REGISTRY}`,
        `ERR_PLANTED_TEMPLATE (planted/fixture.ts:2) is in the source but has no row in ${REGISTRY}`,
        `ERR_PLANTED_UNDOCUMENTED (planted/fixture.ts:1) is in the source but has no row in ${REGISTRY}`,
      ],
      'each planted code is listed, nothing else',
    );
  });

  t.test('a row for a code no source uses, twice, and without what to check', async (t) => {
    const md = [
      '## planted',
      '| code | meaning | what to check |',
      '|---|---|---|',
      '| `ERR_PLANTED_STALE` | a code that left the source | nothing \\| anything |',
      '| `ERR_HBONE_TLS` | duplicate | the mesh root |',
      '| `ERR_HBONE_STATUS` | no check |  |',
    ].join('\n');
    const rows = [...real.rows.filter((r) => r.code !== 'ERR_HBONE_STATUS'), ...registryRows(md)];
    t.equal(registryRows(md)[0]!.check, 'nothing \\| anything', 'an escaped pipe stays inside its cell');
    t.same(
      registryProblems({ ...real, rows }),
      [
        `ERR_HBONE_STATUS (${REGISTRY}:6) needs both a meaning and what to check`,
        `ERR_HBONE_TLS has 2 rows in ${REGISTRY} (lines ${real.rows.find((r) => r.code === 'ERR_HBONE_TLS')!.line}, 5); keep one`,
        `ERR_PLANTED_STALE (${REGISTRY}:4) is documented but no source uses it`,
      ],
      'stale, duplicate and incomplete rows are listed',
    );
  });

  t.test('another doc mentions a code no source uses', async (t) => {
    const mentions = new Map(real.mentions);
    mentions.set('docs/planted.md', codesIn('fails with `ERR_PLANTED_MENTION`; the `ERR_CNI_*` family is not a code'));
    t.same(registryProblems({ ...real, mentions }), ['ERR_PLANTED_MENTION is mentioned in docs/planted.md but no source uses it']);
  });
});

t.test('bare throws: marked invariants pass, unmarked ones are listed', async (t) => {
  const fixture = [
    'function f(x: unknown) {',
    '  // invariant: callers check x first.',
    "  if (!x) throw new Error('a');",
    "  if (x === 1) throw new Error('b');",
    "  throw new Error('c'); // invariant: unreachable",
    '}',
    'function g() {',
    "  throw new Error('operator-facing, no code');",
    '}',
    "function h() { throw new MeshError('ERR_X', 'fine'); }",
  ].join('\n');
  t.same(unmarkedBareThrows(fixture, 'f.ts'), ['f.ts:8']);
});

// The codes that replaced bare Errors (issue 14), raised through the real code paths. Loopback
// prefix 127.0.140.x is this file's.
t.test('the codes that replaced bare errors are raised with what to check', async (t) => {
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' });

  t.test('ERR_CONTROL_PLANE_ROOT: roots missing, unreadable or not certificates', async (t) => {
    const dir = t.testdir({ 'empty.pem': '', 'garbage.pem': 'not a certificate' });
    const check = { code: 'ERR_CONTROL_PLANE_ROOT', message: /check CONTROL_PLANE_ROOT_CERT_FILE$/ };
    await t.rejects(readRootsFile(join(dir, 'missing.pem')), { ...check, message: /cannot read .*missing\.pem \(ENOENT\)/ }, 'a missing file');
    await t.rejects(readRootsFile(join(dir, 'empty.pem')), check, 'an empty file');
    await t.rejects(readRootsFile(join(dir, 'garbage.pem')), check, 'a file without pem');
    t.throws(() => new TrustAnchors([]), check, 'no roots');
    const broken = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
    t.throws(() => new TrustAnchors([ca.rootCertPem, broken]), { ...check, message: /root certificate 1 is not a valid certificate/ }, 'a pem that is not a certificate');
    await writeFile(join(dir, 'root.pem'), ca.rootCertPem);
    t.same(new TrustAnchors(await readRootsFile(join(dir, 'root.pem'))).roots(), [ca.rootCertPem], 'a good root file still works');
  });

  t.test('ERR_CA_ANSWER_INVALID: what the ca returned is refused, as the cause of ERR_CERT_UNAVAILABLE', async (t) => {
    const sm = new SecretManager({ caClient: { sign: async () => ({ certChainPem: [], rootsPem: ca.trustBundlePem }) } });
    t.teardown(() => sm.close());
    const err = (await sm.fetch('spiffe://cluster.local/ns/default/sa/sleep').catch((e: unknown) => e)) as Error;
    t.match(err, { code: 'ERR_CERT_UNAVAILABLE' });
    t.match(err.cause, { code: 'ERR_CA_ANSWER_INVALID', message: /^the ca returned an empty certificate chain; check that the control plane \(CONTROL_PLANE_ADDRESS\)/ });
  });

  t.test('ERR_CONTROL_PLANE_IDENTITY: a control plane presenting another identity', async (t) => {
    const opts = controlPlaneTlsOptions({ trust: new TrustAnchors(ca.trustBundlePem), serverIdentity: controlPlaneIdentity('cluster.local') });
    const other = { subjectaltname: 'URI:spiffe://cluster.local/ns/default/sa/impostor' } as PeerCertificate;
    t.match(opts.checkServerIdentity!('127.0.140.1', other), {
      code: 'ERR_CONTROL_PLANE_IDENTITY',
      message: /presented spiffe:\/\/cluster\.local\/ns\/default\/sa\/impostor, expected .*; check CONTROL_PLANE_ADDRESS/,
    });
    const right = { subjectaltname: `URI:${controlPlaneIdentity('cluster.local')}` } as PeerCertificate;
    t.equal(opts.checkServerIdentity!('127.0.140.1', right), undefined, 'the right identity passes');
  });

  t.test('ERR_DISCOVERY_TIMEOUT: no first configuration in time', async (t) => {
    const source = new DiscoverySource({
      address: { host: '127.0.140.1', port: 1 },
      certificate: async () => {
        throw new Error('no certificate in this test');
      },
      trust: new TrustAnchors(ca.trustBundlePem),
      serverIdentity: controlPlaneIdentity('cluster.local'),
      initialBackoffMs: 10,
      maxBackoffMs: 20,
      startTimeoutMs: 200,
    });
    t.teardown(() => source.close());
    await t.rejects(source.start(() => undefined), {
      code: 'ERR_DISCOVERY_TIMEOUT',
      message: /^no configuration from the control plane at 127\.0\.140\.1:1 within 200 ms .*; check CONTROL_PLANE_ADDRESS/,
    });
  });
});
