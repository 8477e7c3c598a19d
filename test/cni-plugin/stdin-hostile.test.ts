/**
 * Issue 19, item 2, for the CNI plugin's boundary: what the runtime hands it (the config on stdin,
 * the CNI_* environment) under hostile values. The set of exception types leaving the parsers
 * (`parseNetConf`, `parseEnv`) is exactly the documented one, CniError with an ERR_CNI_* code
 * (docs/cni.md, "Error codes"); `runPlugin`, what the plugin binary runs for ADD, DEL, CHECK and
 * VERSION, never rejects and answers every failure with the spec's error JSON and exit 1, never
 * with its "unexpected failure" net; and the real plugin process prints that JSON on stdout.
 *
 * A real node agent stand-in (an HTTP server on a Unix socket answering "enrolled") and the real
 * AgentClient: an accepted input goes all the way through an enrolment.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { AgentClient } from '../../cni-plugin/agent-client.js';
import { runPlugin, type PluginOutput } from '../../cni-plugin/cni/commands.js';
import { CNI_ERRORS, CniError } from '../../cni-plugin/cni/errors.js';
import { MAX_CONFIG_DEPTH, MAX_DETAILS, parseEnv, parseNetConf } from '../../cni-plugin/cni/spec.js';
import { REPO, WRAPPER } from './lab.js';

const dir = await mkdtemp('/tmp/amb-cni-hostile-');
t.teardown(() => rm(dir, { recursive: true, force: true }));
const NETNS = '/proc/self/ns/net'; // exists everywhere

interface Agent {
  readonly socket: string;
  readonly calls: Array<{ path: string; body: Record<string, unknown> }>;
}

/** The agent stand-in: every call is answered as the agent answers an ambient pod. */
async function agent(t: Test): Promise<Agent> {
  const socket = join(dir, `agent-${Math.random().toString(36).slice(2, 8)}.sock`);
  const calls: Agent['calls'] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString();
      calls.push({ path: req.url ?? '', body: text ? (JSON.parse(text) as Record<string, unknown>) : {} });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(req.url?.endsWith('/del') ? { removed: true } : { mode: 'enrolled', reason: 'namespace apps is ambient', pod: {} }));
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { socket, calls };
}

const PREV = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: NETNS }], ips: [{ interface: 0, address: '10.251.1.7/24' }] };

/** A valid config, with `extra` over it (a key set to undefined is dropped by JSON.stringify). */
const conf = (socket: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ cniVersion: '1.0.0', name: 'amb-hostile', type: 'ambient-cni', agentSocket: socket, prevResult: PREV, ...extra });

const ENV = {
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: 'c0ffee',
  CNI_NETNS: NETNS,
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/usr/lib/cni',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web-0;K8S_POD_UID=5f0c1d2e-0000-4000-8000-000000000001',
};

/** `{"a":{"a":...1...}}`, `n` deep, as text (JSON.stringify of it would itself overflow). */
const deepObject = (n: number): string => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
const deepList = (n: number): string => `${'['.repeat(n)}${']'.repeat(n)}`;
const MiB = 1024 * 1024;

/** Hostile stdin texts, each built over the valid config. */
function hostileStdin(socket: string): Array<[string, string]> {
  const c = (extra: Record<string, unknown>) => JSON.stringify(conf(socket, extra));
  const out: Array<[string, string]> = [
    ['empty', ''],
    ['whitespace', ' \n\t '],
    ['not JSON', 'cniVersion: 1.0.0'],
    ['cut JSON', c({}).slice(0, 40)],
    ['null', 'null'],
    ['a list', '[1,2]'],
    ['a string', '"x"'],
    ['a huge number', '1e999'],
    ['a NUL byte', '\u0000'],
    ['a BOM before the object', `\ufeff${c({})}`],
    ['3 MiB of spaces', ' '.repeat(3 * MiB)],
    ['a 3 MiB name (accepted: the spec sets no length)', c({ name: 'n'.repeat(3 * MiB) })],
    ['a 3 MiB name ending in a space', c({ name: `${'n'.repeat(3 * MiB)} ` })],
    ['a 3 MiB unknown key', JSON.stringify({ ...conf(socket), ['k'.repeat(3 * MiB)]: 1 })],
    ['3 MiB of unknown keys', JSON.stringify({ ...conf(socket), ...Object.fromEntries(Array.from({ length: 150_000 }, (_, i) => [`agentSockt${i}`, i])) })],
    ['a 3 MiB prevResult (accepted)', c({ prevResult: { ...PREV, ips: Array.from({ length: 80_000 }, (_, i) => ({ address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32` })) } })],
    [`prevResult ${MAX_CONFIG_DEPTH - 2} deep (accepted: the limit)`, c({}).replace(/"prevResult":\{/, `"prevResult":{"deep":${deepObject(MAX_CONFIG_DEPTH - 3)},`)],
    ['prevResult 10,000 deep', c({}).replace(/"prevResult":\{/, `"prevResult":{"deep":${deepObject(10_000)},`)],
    ['prevResult 1,000,000 lists deep', c({}).replace(/"prevResult":\{/, `"prevResult":{"deep":${deepList(1_000_000)},`)],
    ['ipam 10,000 deep', c({}).replace(/^\{/, `{"ipam":${deepObject(10_000)},`)],
    ['args 10,000 deep', c({}).replace(/^\{/, `{"args":${deepObject(10_000)},`)],
    ['an unknown key 10,000 deep', c({}).replace(/^\{/, `{"x":${deepList(10_000)},`)],
    ['cniVersion 10,000 deep', c({}).replace(/"cniVersion":"1.0.0"/, `"cniVersion":${deepList(10_000)}`)],
    ['prevResult garbage: a list', c({ prevResult: [] })],
    ['prevResult garbage: a string', c({ prevResult: 'x' })],
    ['prevResult garbage: ips a string', c({ prevResult: { ips: 'x' } })],
    ['prevResult garbage: ips [null]', c({ prevResult: { ips: [null] } })],
    ['prevResult garbage: an address that is a number', c({ prevResult: { ips: [{ address: 5 }] } })],
    ['prevResult garbage: 999.1.1.1/24', c({ prevResult: { ips: [{ address: '999.1.1.1/24' }] } })],
    ['prevResult garbage: an address with a control character', c({ prevResult: { ips: [{ address: '10.0.0.1\u001b[2J/24' }] } })],
    ['prevResult garbage: 100,000 bad addresses', c({ prevResult: { ips: Array.from({ length: 100_000 }, () => ({ address: 'x' })) } })],
    ['prevResult garbage: cniVersion a number (passed through)', c({ prevResult: { ...PREV, cniVersion: 5 } })],
    ['prevResult garbage: __proto__ keys', c({}).replace(/"prevResult":\{/, '"prevResult":{"__proto__":{"ips":"x"},"constructor":1,')],
    ['cniVersion 0.2.0', c({ cniVersion: '0.2.0' })],
    ['cniVersion 1.1.0', c({ cniVersion: '1.1.0' })],
    ['cniVersion empty', c({ cniVersion: '' })],
    ['cniVersion with a newline', c({ cniVersion: '1.0.0\n' })],
    ['cniVersion of 1 MiB', c({ cniVersion: '1'.repeat(MiB) })],
    ['cniVersion an ANSI escape', c({ cniVersion: '\u001b[31m1.0.0' })],
    ['cniVersion a bidi override', c({ cniVersion: '1.0.0\u202e' })],
    ['cniVersion missing', c({ cniVersion: undefined })],
    ['name with a bidi override', c({ name: 'amb\u202ehostile' })],
    ['name with a NUL', c({ name: 'amb\u0000' })],
    ['name of zero-width characters', c({ name: '\u200b\u200b' })],
    ['agentSocket with a newline', c({ agentSocket: `${dir}/a\n.sock` })],
    ['agentSocket with an ANSI escape', c({ agentSocket: `${dir}/\u001b[2J.sock` })],
    ['agentSocket of 1 MiB', c({ agentSocket: `/${'s'.repeat(MiB)}` })],
    ['exemptNamespaces: an ANSI escape', c({ exemptNamespaces: ['\u001b[31mapps'] })],
    ['exemptNamespaces: not a label', c({ exemptNamespaces: ['Kube_System'] })],
    ['exemptNamespaces: 1,000,000 valid (accepted)', c({ exemptNamespaces: Array.from({ length: 1_000_000 }, (_, i) => `ns-${i}`) })],
    ['exemptNamespaces: 200,000 invalid', c({ exemptNamespaces: Array.from({ length: 200_000 }, () => 'X') })],
    ['cgroupPath with a NUL', c({ cgroupPath: '/sys/fs/cgroup/a\u0000{podName}' })],
    ['cgroupPath of 1 MiB', c({ cgroupPath: `/${'c'.repeat(MiB)}` })],
    ['cgroupPath with a 4,000-character placeholder', c({ cgroupPath: `{${'x'.repeat(4000)}}` })],
    ['cgroupPath of 100,000 opening braces', c({ cgroupPath: '{'.repeat(100_000) })],
    ['cgroupPath of 100,000 known placeholders (too long)', c({ cgroupPath: '{podName}'.repeat(100_000) })],
    ['cgroupPath with a control character in a placeholder', c({ cgroupPath: '{pod\u0007Name}' })],
    ['a key with an ANSI escape', JSON.stringify({ ...conf(socket), '\u001b[2Jx': 1 })],
    ['a __proto__ key', c({}).replace(/^\{/, '{"__proto__":{"agentSocket":"/x"},')],
    ['a constructor key', c({}).replace(/^\{/, '{"constructor":1,')],
    ['a duplicated key (the last wins, as JSON.parse does)', c({}).replace(/^\{/, '{"agentSocket":1,')],
  ];
  // Wrong types for every field the plugin reads or accepts.
  const keys = ['cniVersion', 'name', 'type', 'prevResult', 'runtimeConfig', 'capabilities', 'args', 'dns', 'ipam', 'ipMasq', 'disableCheck', 'disableGC', 'agentSocket', 'agentConnectTimeoutMs', 'agentRequestTimeoutMs', 'exemptNamespaces', 'cgroupPath'];
  const values: unknown[] = [null, 0, -1, 1.5, 1e308, true, '', 'x', '\u0000', [], {}, [1], { a: 1 }, 'é'.repeat(100_000)];
  for (const k of keys) {
    for (const v of values) {
      // null is absent: the default socket, where a real agent may listen on this machine.
      if (k === 'agentSocket' && v === null) continue;
      out.push([`${k}: ${JSON.stringify(v)?.slice(0, 12)}`, c({ [k]: v })]);
    }
  }
  return out;
}

/** Hostile environments: each entry is laid over ENV. */
const HOSTILE_ENV: Array<[string, Record<string, string | undefined>]> = [
  ['CNI_COMMAND missing', { CNI_COMMAND: undefined }],
  ['CNI_COMMAND lowercase', { CNI_COMMAND: 'add' }],
  ['CNI_COMMAND GC (CNI 1.1)', { CNI_COMMAND: 'GC' }],
  ['CNI_COMMAND with an ANSI escape', { CNI_COMMAND: '\u001b[2JADD' }],
  ['CNI_COMMAND of 1 MiB', { CNI_COMMAND: 'A'.repeat(MiB) }],
  ['CNI_CONTAINERID with a space', { CNI_CONTAINERID: 'a b' }],
  ['CNI_CONTAINERID with a newline', { CNI_CONTAINERID: 'c0ffee\nINFO forged line' }],
  ['CNI_CONTAINERID with a bidi override', { CNI_CONTAINERID: 'c0ffee\u202e' }],
  ['CNI_CONTAINERID of 1 MiB of garbage', { CNI_CONTAINERID: '-'.repeat(MiB) }],
  ['CNI_CONTAINERID empty', { CNI_CONTAINERID: '' }],
  ['CNI_NETNS relative', { CNI_NETNS: 'proc/self/ns/net' }],
  ['CNI_NETNS with a newline', { CNI_NETNS: `${NETNS}\n` }],
  ['CNI_NETNS with an ANSI escape', { CNI_NETNS: '/var/run/netns/\u001b[31mx' }],
  ['CNI_NETNS longer than PATH_MAX', { CNI_NETNS: '/x'.repeat(3000) }],
  ['CNI_NETNS that does not exist', { CNI_NETNS: '/var/run/netns/amb-cni-hostile-none' }],
  ['CNI_IFNAME of 16 bytes', { CNI_IFNAME: 'e'.repeat(16) }],
  ['CNI_IFNAME of 9 characters and 18 bytes', { CNI_IFNAME: 'é'.repeat(9) }],
  ['CNI_IFNAME with a newline', { CNI_IFNAME: 'eth0\n' }],
  ['CNI_IFNAME with a bell', { CNI_IFNAME: 'eth\u0007' }],
  ['CNI_IFNAME ..', { CNI_IFNAME: '..' }],
  ['CNI_IFNAME with a slash', { CNI_IFNAME: 'a/b' }],
  ['CNI_PATH of 1 MiB of colons', { CNI_PATH: ':'.repeat(MiB) }],
  ['CNI_ARGS: not KEY=VALUE', { CNI_ARGS: 'K8S_POD_NAME=x;garbage' }],
  ['CNI_ARGS: an empty key', { CNI_ARGS: '=x' }],
  ['CNI_ARGS: only separators (not a pod)', { CNI_ARGS: ';;;;' }],
  ['CNI_ARGS: K8S_POD_NAME with an ANSI escape', { CNI_ARGS: 'K8S_POD_NAMESPACE=apps;K8S_POD_NAME=\u001b[31mweb' }],
  ['CNI_ARGS: K8S_POD_NAME with a newline', { CNI_ARGS: 'K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web\nINFO forged' }],
  ['CNI_ARGS: K8S_POD_NAME of 300 characters', { CNI_ARGS: `K8S_POD_NAMESPACE=apps;K8S_POD_NAME=${'w'.repeat(300)}` }],
  ['CNI_ARGS: K8S_POD_NAME of 1 MiB', { CNI_ARGS: `K8S_POD_NAMESPACE=apps;K8S_POD_NAME=${'w'.repeat(MiB)}` }],
  ['CNI_ARGS: K8S_POD_NAME with a bidi override', { CNI_ARGS: 'K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web\u202e0' }],
  ['CNI_ARGS: K8S_POD_NAME=a=b', { CNI_ARGS: 'K8S_POD_NAMESPACE=apps;K8S_POD_NAME=a=b' }],
  ['CNI_ARGS: K8S_POD_NAMESPACE not a label', { CNI_ARGS: 'K8S_POD_NAMESPACE=Apps_1;K8S_POD_NAME=web' }],
  ['CNI_ARGS: K8S_POD_NAMESPACE of 64 characters', { CNI_ARGS: `K8S_POD_NAMESPACE=${'a'.repeat(64)};K8S_POD_NAME=web` }],
  ['CNI_ARGS: K8S_POD_UID with a space', { CNI_ARGS: 'K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web;K8S_POD_UID=a b' }],
  ['CNI_ARGS: K8S_POD_UID of 1 MiB', { CNI_ARGS: `K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web;K8S_POD_UID=${'u'.repeat(MiB)}` }],
  ['CNI_ARGS: AMBIENT_CGROUP with a newline', { CNI_ARGS: 'K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web;AMBIENT_CGROUP=/sys/fs/cgroup/a\nb' }],
  ['CNI_ARGS: AMBIENT_CGROUP longer than PATH_MAX', { CNI_ARGS: `K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web;AMBIENT_CGROUP=${'/c'.repeat(3000)}` }],
  ['CNI_ARGS: __proto__ and constructor keys (ignored)', { CNI_ARGS: '__proto__=x;constructor=y;toString=z;K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web' }],
  ['CNI_ARGS: 100,000 unknown keys (ignored)', { CNI_ARGS: `K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web;${'IgnoreUnknown=1;'.repeat(100_000)}` }],
  ['CNI_ARGS: 1 MiB of one unknown value (ignored)', { CNI_ARGS: `K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web;X=${'\u001b'.repeat(MiB)}` }],
  ['CNI_ARGS: control characters in an ignored key', { CNI_ARGS: 'K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web;\u001b[2J=1' }],
];

const envWith = (over: Record<string, string | undefined>): Record<string, string | undefined> => {
  const e: Record<string, string | undefined> = { ...ENV, ...over };
  for (const k of Object.keys(e)) if (e[k] === undefined) delete e[k];
  return e;
};

/** What left a parser: 'accepted', or `<constructor name> <code>`. */
function outcome(f: () => unknown): { kind: 'accepted' } | { kind: 'thrown'; type: string; code: string; message: string; details: string } {
  try {
    f();
    return { kind: 'accepted' };
  } catch (e) {
    const err = e as { constructor?: { name?: string }; code?: unknown; message?: unknown; details?: unknown };
    return { kind: 'thrown', type: String(err?.constructor?.name), code: String(err?.code), message: String(err?.message), details: String(err?.details ?? '') };
  }
}

const a = await agent(t);
const STDIN = hostileStdin(a.socket);
const GOOD = JSON.stringify(conf(a.socket));

const DOCUMENTED_CODES = Object.keys(CNI_ERRORS).sort();
const DOCUMENTED_NUMBERS = new Set<number>(Object.values(CNI_ERRORS));
/** What a message may hold: no C0/C1 control, DEL, bidi or zero-width character (a log line stays one line and reads as written). */
const RAW_INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/;
/** A message repeats at most 100 characters of a user's value; the longest fixed text is a few hundred. */
const MAX_MESSAGE = 1000;

t.test('parseNetConf and parseEnv: the only exception type leaving is CniError with an ERR_CNI_* code, with short single-line messages', async (t) => {
  const types = new Set<string>();
  const codes = new Set<string>();
  const bad: string[] = [];
  let refused = 0;
  const judge = (what: string, r: ReturnType<typeof outcome>) => {
    if (r.kind === 'accepted') return;
    refused++;
    types.add(r.type);
    codes.add(r.code);
    if (r.message.length > MAX_MESSAGE || RAW_INVISIBLE.test(r.message)) bad.push(`${what}: message of ${r.message.length} characters or with a raw control character: ${JSON.stringify(r.message.slice(0, 200))}`);
    if (r.details.length > 20 * MAX_MESSAGE || RAW_INVISIBLE.test(r.details)) bad.push(`${what}: details of ${r.details.length} characters or with a raw control character`);
  };
  const stdin = STDIN;
  for (const [what, text] of stdin) judge(what, outcome(() => parseNetConf(text)));
  for (const [what, over] of HOSTILE_ENV) judge(what, outcome(() => parseEnv(envWith(over))));
  t.ok(refused > 150, `${refused} of ${stdin.length + HOSTILE_ENV.length} hostile inputs refused`);
  t.same([...types], ['CniError'], 'CniError is the one exception type that leaves the parsers');
  t.ok([...codes].every((c) => DOCUMENTED_CODES.includes(c)), `every code is documented: ${[...codes].sort().join(', ')}`);
  t.same(bad, [], 'every message is short and holds no raw control, bidi or zero-width character');

  // What a user sees for the cases issue 19 names.
  const thrown = (f: () => unknown) => outcome(f) as Extract<ReturnType<typeof outcome>, { kind: 'thrown' }>;
  const deep = thrown(() => parseNetConf(stdin.find(([w]) => w === 'prevResult 10,000 deep')![1]));
  t.match(deep, { code: 'ERR_CNI_DECODE', message: `cannot decode the network config: the value at prevResult.deep.a nests deeper than ${MAX_CONFIG_DEPTH} levels (a network config nests a few)` }, 'a 10,000-deep prevResult is refused before anything reads it');
  t.equal(outcome(() => parseNetConf(stdin.find(([w]) => w.startsWith(`prevResult ${MAX_CONFIG_DEPTH - 2} deep`))![1])).kind, 'accepted', 'nesting up to the limit is read');
  t.match(thrown(() => parseNetConf(stdin.find(([w]) => w === 'cniVersion of 1 MiB')![1])), { code: 'ERR_CNI_INCOMPATIBLE_VERSION', message: /^cniVersion "1{100}"… \(1048576 characters\) is not supported/ }, 'a long value is quoted cut, with its length');
  t.match(thrown(() => parseNetConf(stdin.find(([w]) => w === 'exemptNamespaces: an ANSI escape')![1])), { code: 'ERR_CNI_INVALID_CONFIG', message: /exemptNamespaces\[0\]: "\\u001b\[31mapps" is not a namespace name/ });
  const many = thrown(() => parseNetConf(stdin.find(([w]) => w === 'exemptNamespaces: 200,000 invalid')![1]));
  t.match(many.details, new RegExp(`; … and ${200_000 - MAX_DETAILS} more$`), `details lists the first ${MAX_DETAILS} problems and counts the rest`);
  t.match(thrown(() => parseNetConf(stdin.find(([w]) => w === 'cgroupPath with a 4,000-character placeholder')![1])), { code: 'ERR_CNI_INVALID_CONFIG', message: /cgroupPath: unknown placeholder "\{x{99}"… \(4002 characters\)/ });
  t.match(thrown(() => parseNetConf(stdin.find(([w]) => w === 'cgroupPath of 1 MiB')![1])), { code: 'ERR_CNI_INVALID_CONFIG', message: /cgroupPath: "\/c{99}"… \(1048577 characters\) is longer than 4095 bytes \(PATH_MAX\)/ });
  t.match(thrown(() => parseNetConf(stdin.find(([w]) => w === 'a NUL byte')![1])), { code: 'ERR_CNI_DECODE', message: /^cannot decode the network config: stdin is not JSON \(".*\\u0000.*"\)$/ }, "the parser's own message, escaped");
  t.match(thrown(() => parseEnv(envWith({ CNI_ARGS: 'K8S_POD_NAMESPACE=apps;K8S_POD_NAME=\u001b[31mweb' }))), { code: 'ERR_CNI_INVALID_ENV', message: 'CNI_ARGS: K8S_POD_NAME="\\u001b[31mweb" is not a pod name (a DNS-1123 subdomain: lowercase letters, digits, "-" and ".", at most 253)' });
  t.match(thrown(() => parseEnv(envWith({ CNI_IFNAME: 'é'.repeat(9) }))), { code: 'ERR_CNI_INVALID_ENV', message: 'CNI_IFNAME="ééééééééé" is longer than 15 bytes' }, 'an interface name is counted in bytes, as the kernel counts it');
  t.match(thrown(() => parseEnv(envWith({ CNI_NETNS: '/var/run/netns/\u001b[31mx' }))), { code: 'ERR_CNI_INVALID_ENV', message: 'CNI_NETNS="/var/run/netns/\\u001b[31mx" holds a control character' });
  t.match(thrown(() => parseEnv(envWith({ CNI_CONTAINERID: '-'.repeat(MiB) }))), { message: /^CNI_CONTAINERID="-{100}"… \(1048576 characters\) is not a valid container id/ });
  const args = parseEnv(envWith({ CNI_ARGS: '__proto__=x;constructor=y;K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web' })).args;
  t.equal(args['constructor'], 'y', 'CNI_ARGS keys are plain keys, whatever they are called');
  t.equal(Object.getPrototypeOf(args), null);
});

interface Judged {
  readonly what: string;
  readonly command: string;
  readonly out: PluginOutput | { rejected: unknown };
}

t.test('runPlugin (ADD, DEL, CHECK, VERSION) never rejects: a failure is the spec error JSON with a documented code and exit 1, never the unexpected-failure net', async (t) => {
  const run = async (what: string, env: Record<string, string | undefined>, stdin: string): Promise<Judged> => {
    try {
      const out = await runPlugin({
        env,
        stdin,
        agent: (c) => new AgentClient({ socketPath: c.agentSocket, connectTimeoutMs: c.agentConnectTimeoutMs, requestTimeoutMs: Math.min(c.agentRequestTimeoutMs, 5000) }),
      });
      return { what, command: String(env['CNI_COMMAND']), out };
    } catch (rejected) {
      return { what, command: String(env['CNI_COMMAND']), out: { rejected } };
    }
  };
  const results: Judged[] = [];
  const good = GOOD;
  for (const command of ['ADD', 'DEL', 'CHECK', 'VERSION']) {
    for (const [what, text] of STDIN) results.push(await run(what, envWith({ CNI_COMMAND: command }), text));
    for (const [what, over] of HOSTILE_ENV) results.push(await run(what, envWith({ CNI_COMMAND: command, ...over }), good));
  }
  const problems: string[] = [];
  const codes = new Set<number>();
  let failed = 0;
  for (const r of results) {
    const name = `${r.command} ${r.what}`;
    if ('rejected' in r.out) {
      problems.push(`${name}: rejected with ${String((r.out.rejected as Error)?.constructor?.name)}`);
      continue;
    }
    const { stdout, exitCode, log } = r.out;
    if (log !== undefined && (RAW_INVISIBLE.test(log) || log.length > 2 * MAX_MESSAGE)) problems.push(`${name}: the stderr line is long or holds a raw control character`);
    if (exitCode === 0) continue;
    failed++;
    let json: { code?: unknown; msg?: unknown; details?: unknown; cniVersion?: unknown } | undefined;
    try {
      json = JSON.parse(stdout) as typeof json;
    } catch {
      problems.push(`${name}: exit 1 without the error JSON on stdout`);
      continue;
    }
    if (typeof json?.code !== 'number' || !DOCUMENTED_NUMBERS.has(json.code)) problems.push(`${name}: code ${String(json?.code)} is not documented`);
    else codes.add(json.code);
    if (typeof json?.msg !== 'string' || /unexpected failure/.test(json.msg)) problems.push(`${name}: ${String(json?.msg).slice(0, 300)}`);
  }
  t.ok(failed > 600, `${failed} of ${results.length} invocations failed, each with the error JSON`);
  t.same(problems, [], 'no rejection, no undocumented code, no unexpected failure, no raw control character on stderr');
  t.same([...codes].sort((x, y) => x - y), [1, 2, 4, 6, 7, 104], 'the codes hostile input gets (no 101: nothing is taken for an agent protocol failure)');
  const deepAdd = results.find((r) => r.command === 'ADD' && r.what === 'prevResult 10,000 deep')!.out as PluginOutput;
  t.match(JSON.parse(deepAdd.stdout), { code: 6, msg: /prevResult\.deep\.a nests deeper than 100 levels/ }, 'a 10,000-deep prevResult fails the ADD before the agent is asked (it once failed after the enrolment, in JSON.stringify)');
  t.notOk(a.calls.some((c) => /\\u00[01]|\\u007f|\\[nrt]/.test(JSON.stringify(c.body))), 'no control character reached the agent');
  const bigAdd = results.find((r) => r.command === 'ADD' && r.what === 'a 3 MiB prevResult (accepted)')!.out as PluginOutput;
  t.equal(bigAdd.exitCode, 0, 'a 3 MiB prevResult is passed through');
  t.equal(JSON.parse(bigAdd.stdout).ips.length, 80_000);
  t.ok(a.calls.some((c) => c.path === '/v1/cni/add' && (c.body['ips'] as unknown[]).length === 80_000), 'and its 80,000 addresses reach the agent');
  const del = results.filter((r) => r.command === 'DEL' && r.what.startsWith('CNI_NETNS that does not exist'));
  t.same(del.map((r) => (r.out as PluginOutput).exitCode), [0], 'DEL succeeds with a netns that is gone');
});

const built = existsSync(join(REPO, 'dist/cni-plugin/plugin.js'));

t.test('the real plugin process: the error JSON on stdout, a code, exit 1, one stderr line', { skip: built ? false : 'dist/cni-plugin/plugin.js is not built (npm run build)' }, async (t) => {
  const before = a.calls.length;
  const spawnPlugin = (env: Record<string, string | undefined>, stdin: string) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(WRAPPER, [], { env: { PATH: process.env['PATH'] ?? '', ...(env as Record<string, string>) } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdin.on('error', () => {});
      child.stdin.end(stdin);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  const stdin = new Map(STDIN);
  const good = GOOD;
  const cases: Array<[string, Record<string, string | undefined>, string, number, RegExp]> = [
    ['not JSON', envWith({}), stdin.get('not JSON')!, 6, /stdin is not JSON/],
    ['prevResult 10,000 deep', envWith({}), stdin.get('prevResult 10,000 deep')!, 6, /nests deeper than 100 levels/],
    ['3 MiB of unknown keys', envWith({}), stdin.get('3 MiB of unknown keys')!, 2, /agentSockt0: unknown key/],
    ['a 3 MiB name ending in a space', envWith({}), stdin.get('a 3 MiB name ending in a space')!, 7, /name: "n{100}"… \(3145729 characters\) is not a valid network name/],
    ['K8S_POD_NAME with an ANSI escape', envWith({ CNI_ARGS: 'K8S_POD_NAMESPACE=apps;K8S_POD_NAME=\u001b[31mweb' }), good, 4, /K8S_POD_NAME="\\u001b\[31mweb" is not a pod name/],
    // One environment string is at most 128 KiB (MAX_ARG_STRLEN).
    ['a 100 KiB CNI_CONTAINERID', envWith({ CNI_CONTAINERID: `c\n${'x'.repeat(100 * 1024)}` }), good, 4, /CNI_CONTAINERID="c\\nx{98}"… \(102402 characters\)/],
  ];
  for (const [what, env, text, code, msg] of cases) {
    const r = await spawnPlugin(env, text);
    t.equal(r.code, 1, `${what}: exit 1`);
    t.match(JSON.parse(r.stdout), { cniVersion: '1.0.0', code, msg }, `${what}: the error JSON on stdout`);
    t.equal(r.stdout.split('\n').length, 2, `${what}: one line on stdout`);
    t.ok(r.stderr.length < 2 * MAX_MESSAGE && !RAW_INVISIBLE.test(r.stderr.trimEnd()), `${what}: one short stderr line`);
  }
  t.equal(a.calls.length, before, 'the agent was never asked');
});
