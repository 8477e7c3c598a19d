/**
 * DestinationRule `trafficPolicy`: the converter (`core/kube/routes/traffic-policy.ts`) field by
 * field and every refusal, Istio's merge (`mergeTrafficPolicy`), and the same checks through the
 * two other doors a DestinationRule comes in by: manifests (`parseManifests`, what the lab and the
 * Kubernetes source read) and the discovery wire's decoder (issue 19: as strict as the manifest
 * parser).
 */
import t from 'tap';
import { Problems } from '../../../core/validation/check.js';
import { DestinationRuleConverter } from '../../../core/kube/routes/destination-rule.js';
import { specProblems } from '../../../core/kube/schema.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { decodeResource, WireFormatError } from '../../../core/discovery/wire.js';
import { mergeTrafficPolicy, type TrafficPolicy } from '../../../core/model/traffic-policy.js';
import type { DestinationRule } from '../../../core/model/routes.js';

/** As every caller of the converter does: the upstream schema judges the structure first. */
function dr(spec: Record<string, unknown>): { rule?: DestinationRule; problems: string[] } {
  const structural = specProblems('DestinationRule', spec, 'spec');
  if (structural.length > 0) return { problems: structural.map((s) => `${s.field}: ${s.message}`) };
  const p = new Problems();
  const rule = new DestinationRuleConverter(p).destinationRule('reviews', 'default', spec, 'spec');
  return { ...(rule ? { rule } : {}), problems: p.list };
}
const policy = (trafficPolicy: unknown) => dr({ host: 'reviews', trafficPolicy });
/** The problems of a top-level trafficPolicy (none expected to pass). */
const refused = (trafficPolicy: unknown) => {
  const r = policy(trafficPolicy);
  return { rule: r.rule, problems: r.problems };
};

t.test('loadBalancer.simple: ROUND_ROBIN, LEAST_REQUEST (and LEAST_CONN), RANDOM; UNSPECIFIED is the default', async (t) => {
  t.same(policy({ loadBalancer: { simple: 'ROUND_ROBIN' } }).rule?.trafficPolicy, { loadBalancer: { simple: 'ROUND_ROBIN' } });
  t.same(policy({ loadBalancer: { simple: 'LEAST_REQUEST' } }).rule?.trafficPolicy, { loadBalancer: { simple: 'LEAST_REQUEST' } });
  t.same(policy({ loadBalancer: { simple: 'LEAST_CONN' } }).rule?.trafficPolicy, { loadBalancer: { simple: 'LEAST_REQUEST' } }, "Istio's deprecated alias");
  t.same(policy({ loadBalancer: { simple: 'RANDOM' } }).rule?.trafficPolicy, { loadBalancer: { simple: 'RANDOM' } });
  const unspecified = policy({ loadBalancer: { simple: 'UNSPECIFIED' } });
  t.same(unspecified.problems, []);
  t.equal(unspecified.rule?.trafficPolicy, undefined, 'nothing to apply');
});

t.test('loadBalancer refusals: PASSTHROUGH, an unknown enum, simple with consistentHash', async (t) => {
  const pt = refused({ loadBalancer: { simple: 'PASSTHROUGH' } });
  t.equal(pt.rule, undefined);
  t.match(pt.problems, [/^spec\.trafficPolicy\.loadBalancer\.simple: PASSTHROUGH is not supported by waypoints/]);
  const unknown = refused({ loadBalancer: { simple: 'FASTEST' } });
  t.equal(unknown.rule, undefined);
  t.match(unknown.problems.join('\n'), /spec\.trafficPolicy\.loadBalancer\.simple: .*FASTEST/);
  const both = refused({ loadBalancer: { simple: 'RANDOM', consistentHash: { useSourceIp: true } } });
  t.equal(both.rule, undefined);
  t.match(both.problems.join('\n'), /spec\.trafficPolicy\.loadBalancer/);
});

t.test('consistentHash: header (lowercased), cookie with and without ttl, source IP, query parameter; ring sizes', async (t) => {
  t.same(policy({ loadBalancer: { consistentHash: { httpHeaderName: 'X-User' } } }).rule?.trafficPolicy, { loadBalancer: { consistentHash: { key: { kind: 'header', name: 'x-user' } } } });
  t.same(policy({ loadBalancer: { consistentHash: { httpCookie: { name: 'sticky', ttl: '60s', path: '/' } } } }).rule?.trafficPolicy, {
    loadBalancer: { consistentHash: { key: { kind: 'cookie', name: 'sticky', path: '/', ttlMs: 60_000 } } },
  });
  t.same(policy({ loadBalancer: { consistentHash: { httpCookie: { name: 'sticky', ttl: '0s' } } } }).rule?.trafficPolicy, {
    loadBalancer: { consistentHash: { key: { kind: 'cookie', name: 'sticky', ttlMs: 0 } } },
  }, 'ttl 0: a session cookie');
  t.same(policy({ loadBalancer: { consistentHash: { httpCookie: { name: 'sticky' } } } }).rule?.trafficPolicy, {
    loadBalancer: { consistentHash: { key: { kind: 'cookie', name: 'sticky' } } },
  }, 'no ttl: no cookie is generated');
  t.same(policy({ loadBalancer: { consistentHash: { useSourceIp: true } } }).rule?.trafficPolicy, { loadBalancer: { consistentHash: { key: { kind: 'sourceIp' } } } });
  t.same(policy({ loadBalancer: { consistentHash: { httpQueryParameterName: 'user' } } }).rule?.trafficPolicy, {
    loadBalancer: { consistentHash: { key: { kind: 'queryParameter', name: 'user' } } },
  });
  t.same(policy({ loadBalancer: { consistentHash: { useSourceIp: true, ringHash: { minimumRingSize: 2048 } } } }).rule?.trafficPolicy, {
    loadBalancer: { consistentHash: { key: { kind: 'sourceIp' }, ringSize: 2048 } },
  });
  t.same(policy({ loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 65537 } } } }).rule?.trafficPolicy, {
    loadBalancer: { consistentHash: { key: { kind: 'sourceIp' }, ringSize: 65537 } },
  });
  t.same(policy({ loadBalancer: { consistentHash: { useSourceIp: true, minimumRingSize: 16 } } }).rule?.trafficPolicy, {
    loadBalancer: { consistentHash: { key: { kind: 'sourceIp' }, ringSize: 16 } },
  }, 'the deprecated top-level minimumRingSize');
  t.same(policy({ loadBalancer: { consistentHash: { httpCookie: { name: 'c', ttl: '1s', attributes: [{ name: 'SameSite', value: 'Strict' }] } } } }).rule?.ignored, [
    'trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes',
  ]);
});

t.test('consistentHash refusals: no key, two keys, useSourceIp false, bad names and sizes, a bad ttl', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{}, /consistentHash: no hash key/],
    [{ useSourceIp: false }, /consistentHash: no hash key/],
    // Two keys, two algorithms: the upstream schema's oneOf says it first (its message).
    [{ httpHeaderName: 'x', useSourceIp: true }, /consistentHash: only one of its alternative fields may be set; it sets httpHeaderName, useSourceIp/],
    [{ httpHeaderName: 'bad header' }, /httpHeaderName: "bad header" is not a header name/],
    [{ httpHeaderName: 'x\r\ny' }, /httpHeaderName: "x\\r\\ny" is not a header name/],
    [{ httpQueryParameterName: 'a=b' }, /httpQueryParameterName: "a=b" is not a query parameter name/],
    [{ httpCookie: { ttl: '1s' } }, /httpCookie\.name: required field is missing/],
    [{ httpCookie: { name: 'a;b' } }, /httpCookie\.name: "a;b" is not a cookie name/],
    [{ httpCookie: { name: 'c', path: 'x;y' } }, /httpCookie\.path: "x;y" is not a cookie path/],
    [{ httpCookie: { name: 'c', ttl: 'soon' } }, /httpCookie\.ttl: "soon" is not a duration/],
    [{ httpCookie: { name: 'c', ttl: '-1s' } }, /httpCookie\.ttl: "-1s" is not a duration/],
    [{ useSourceIp: true, ringHash: { minimumRingSize: 100000000 } }, /ringHash\.minimumRingSize: 100000000 is not allowed; expected a ring size from 1 to 65537/],
    [{ useSourceIp: true, maglev: { tableSize: 1000 } }, /maglev\.tableSize: 1000 is not a prime number/],
    [{ useSourceIp: true, ringHash: {}, maglev: {} }, /consistentHash: only one of its alternative fields may be set; it sets useSourceIp, ringHash, maglev/],
  ];
  for (const [consistentHash, re] of cases) {
    const r = refused({ loadBalancer: { consistentHash } });
    t.equal(r.rule, undefined, JSON.stringify(consistentHash));
    t.match(r.problems.join('\n'), re, JSON.stringify(consistentHash));
    t.match(r.problems.join('\n'), /spec\.trafficPolicy\.loadBalancer\.consistentHash/, 'names the field');
  }
});

t.test('connectionPool: every field; 0 is Istio\'s "not set"', async (t) => {
  t.same(
    policy({
      connectionPool: {
        tcp: { maxConnections: 10, connectTimeout: '250ms' },
        http: { http1MaxPendingRequests: 5, http2MaxRequests: 100, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeout: '30s' },
      },
    }).rule?.trafficPolicy,
    {
      connectionPool: { maxConnections: 10, connectTimeoutMs: 250, http1MaxPendingRequests: 5, http2MaxRequests: 100, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeoutMs: 30_000 },
    },
  );
  t.same(policy({ connectionPool: { tcp: { maxConnections: 0 }, http: { http2MaxRequests: 0 } } }).rule?.trafficPolicy, { connectionPool: {} }, '0 = unlimited');
  t.same(
    policy({ connectionPool: { tcp: { tcpKeepalive: { time: '10s' }, maxConnectionDuration: '1h' }, http: { h2UpgradePolicy: 'UPGRADE', maxConcurrentStreams: 10 } } }).rule?.ignored,
    ['trafficPolicy.connectionPool.tcp.tcpKeepalive', 'trafficPolicy.connectionPool.tcp.maxConnectionDuration', 'trafficPolicy.connectionPool.http.h2UpgradePolicy', 'trafficPolicy.connectionPool.http.maxConcurrentStreams'],
    'accepted, named as not applied',
  );
});

t.test('connectionPool refusals: negative numbers, bad and too short durations, an empty pool', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ tcp: { maxConnections: -1 } }, /connectionPool\.tcp\.maxConnections: -1 is not allowed; expected an integer from 0 to 2147483647/],
    [{ tcp: { maxConnections: 1.5 } }, /connectionPool\.tcp\.maxConnections/],
    [{ tcp: { connectTimeout: '10 seconds' } }, /connectionPool\.tcp\.connectTimeout: "10 seconds" is not a duration/],
    [{ tcp: { connectTimeout: '0s' } }, /connectionPool\.tcp\.connectTimeout: "0s" is too short; expected at least 1ms/],
    [{ tcp: { connectTimeout: 5 } }, /connectionPool\.tcp\.connectTimeout/],
    [{ http: { http1MaxPendingRequests: -5 } }, /connectionPool\.http\.http1MaxPendingRequests: -5 is not allowed/],
    [{ http: { http2MaxRequests: 3e10 } }, /connectionPool\.http\.http2MaxRequests/],
    [{ http: { maxRequestsPerConnection: -1 } }, /connectionPool\.http\.maxRequestsPerConnection: -1 is not allowed/],
    [{ http: { maxRetries: -1 } }, /connectionPool\.http\.maxRetries: -1 is not allowed/],
    [{ http: { idleTimeout: '1y' } }, /connectionPool\.http\.idleTimeout: "1y" is not a duration/],
    [{}, /connectionPool: sets nothing; set tcp, http or both/],
  ];
  for (const [connectionPool, re] of cases) {
    const r = refused({ connectionPool });
    t.equal(r.rule, undefined, JSON.stringify(connectionPool));
    t.match(r.problems.join('\n'), re, JSON.stringify(connectionPool));
  }
});

t.test('outlierDetection: every field; the Envoy-only ones accepted and named', async (t) => {
  t.same(
    policy({ outlierDetection: { consecutive5xxErrors: 2, consecutiveGatewayErrors: 3, interval: '1s', baseEjectionTime: '200ms', maxEjectionPercent: 100, minHealthPercent: 50 } }).rule
      ?.trafficPolicy,
    { outlierDetection: { consecutive5xxErrors: 2, consecutiveGatewayErrors: 3, intervalMs: 1000, baseEjectionTimeMs: 200, maxEjectionPercent: 100, minHealthPercent: 50 } },
  );
  t.same(policy({ outlierDetection: { consecutive5xxErrors: 0 } }).rule?.trafficPolicy, { outlierDetection: { consecutive5xxErrors: 0 } }, '0 turns the detector off');
  t.same(policy({ outlierDetection: { splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2 } }).rule?.ignored, [
    'trafficPolicy.outlierDetection.consecutiveLocalOriginFailures',
    'trafficPolicy.outlierDetection.splitExternalLocalOriginErrors',
  ]);
});

t.test('outlierDetection refusals: negative counts, percentages over 100, bad durations', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ consecutive5xxErrors: -1 }, /outlierDetection\.consecutive5xxErrors/],
    [{ consecutiveGatewayErrors: 'five' }, /outlierDetection\.consecutiveGatewayErrors/],
    [{ maxEjectionPercent: 101 }, /outlierDetection\.maxEjectionPercent: 101 is not allowed; expected a percentage from 0 to 100/],
    [{ minHealthPercent: -1 }, /outlierDetection\.minHealthPercent: -1 is not allowed/],
    [{ interval: '0ms' }, /outlierDetection\.interval: "0ms" is too short/],
    [{ baseEjectionTime: 'forever' }, /outlierDetection\.baseEjectionTime: "forever" is not a duration/],
    [{ baseEjectionTime: '1'.repeat(100000) + 's' }, /outlierDetection\.baseEjectionTime: "1111.*is not a duration/],
  ];
  for (const [outlierDetection, re] of cases) {
    const r = refused({ outlierDetection });
    t.equal(r.rule, undefined, JSON.stringify(outlierDetection).slice(0, 80));
    t.match(r.problems.join('\n'), re);
  }
});

t.test('portLevelSettings and subsets: converted; a missing or repeated port refused; TLS and locality named as not applied', async (t) => {
  const { rule, problems } = dr({
    host: 'reviews',
    trafficPolicy: {
      loadBalancer: { simple: 'RANDOM', localityLbSetting: { enabled: true } },
      tls: { mode: 'ISTIO_MUTUAL' },
      portLevelSettings: [
        { port: { number: 80 }, loadBalancer: { simple: 'LEAST_REQUEST' }, tls: { mode: 'DISABLE' } },
        { port: { number: 9080 }, connectionPool: { tcp: { maxConnections: 1 } } },
      ],
    },
    subsets: [{ name: 'v1', labels: { version: 'v1' }, trafficPolicy: { outlierDetection: { consecutive5xxErrors: 1 } } }],
  });
  t.same(problems, []);
  t.same(rule?.trafficPolicy, {
    loadBalancer: { simple: 'RANDOM' },
    portLevelSettings: [
      { port: 80, loadBalancer: { simple: 'LEAST_REQUEST' } },
      { port: 9080, connectionPool: { maxConnections: 1 } },
    ],
  });
  t.same(rule?.subsets[0]?.trafficPolicy, { outlierDetection: { consecutive5xxErrors: 1 } });
  t.same(rule?.ignored, ['trafficPolicy.tls', 'trafficPolicy.loadBalancer.localityLbSetting', 'trafficPolicy.portLevelSettings[0].tls']);
  t.ok(Object.isFrozen(rule?.trafficPolicy) && Object.isFrozen(rule?.trafficPolicy?.portLevelSettings), 'frozen');

  const dup = refused({ portLevelSettings: [{ port: { number: 80 } }, { port: { number: 80 }, loadBalancer: { simple: 'RANDOM' } }] });
  t.equal(dup.rule, undefined);
  t.same(dup.problems, ['spec.trafficPolicy.portLevelSettings[1].port.number: port 80 is already set by portLevelSettings[0]; one entry per port']);
  const noPort = refused({ portLevelSettings: [{ loadBalancer: { simple: 'RANDOM' } }] });
  t.equal(noPort.rule, undefined);
  t.match(noPort.problems.join('\n'), /spec\.trafficPolicy\.portLevelSettings\[0\]\.port: required field is missing/);
  const zero = refused({ portLevelSettings: [{ port: { number: 0 }, loadBalancer: { simple: 'RANDOM' } }] });
  t.match(zero.problems.join('\n'), /portLevelSettings\[0\]\.port\.number: 0 is not allowed; expected a port number from 1 to 65535/);

  const subsetBad = dr({ host: 'reviews', subsets: [{ name: 'v1', trafficPolicy: { loadBalancer: { consistentHash: {} } } }] });
  t.equal(subsetBad.rule, undefined, 'a bad subset policy refuses the DestinationRule');
  t.match(subsetBad.problems, [/^spec\.subsets\[0\]\.trafficPolicy\.loadBalancer\.consistentHash: no hash key/]);
});

t.test("mergeTrafficPolicy: Istio's precedence, field by field: top, top's port, subset, subset's port", async (t) => {
  const top: TrafficPolicy = {
    loadBalancer: { simple: 'RANDOM' },
    connectionPool: { maxConnections: 10 },
    portLevelSettings: [{ port: 80, connectionPool: { maxConnections: 5 } }],
  };
  const subset: TrafficPolicy = {
    outlierDetection: { consecutive5xxErrors: 1 },
    portLevelSettings: [{ port: 80, loadBalancer: { simple: 'LEAST_REQUEST' } }],
  };
  t.same(mergeTrafficPolicy(top, undefined, 80), { loadBalancer: { simple: 'RANDOM' }, connectionPool: { maxConnections: 5 } }, "the top level's port 80 settings");
  t.same(mergeTrafficPolicy(top, undefined, 8080), { loadBalancer: { simple: 'RANDOM' }, connectionPool: { maxConnections: 10 } }, 'another port: the top level');
  t.same(mergeTrafficPolicy(top, subset, 80), {
    loadBalancer: { simple: 'LEAST_REQUEST' },
    connectionPool: { maxConnections: 5 },
    outlierDetection: { consecutive5xxErrors: 1 },
  });
  t.same(mergeTrafficPolicy(undefined, subset, 8080), { outlierDetection: { consecutive5xxErrors: 1 } });
  t.equal(mergeTrafficPolicy(undefined, undefined, 80), undefined);
  t.equal(mergeTrafficPolicy({ portLevelSettings: [{ port: 81, loadBalancer: { simple: 'RANDOM' } }] }, undefined, 80), undefined, 'nothing for this port');
});

t.test('manifests: a bad trafficPolicy is a problem naming the object and the field; the other objects stay', async (t) => {
  const yaml = [
    'apiVersion: networking.istio.io/v1',
    'kind: DestinationRule',
    'metadata: {name: bad, namespace: apps}',
    'spec:',
    '  host: web',
    '  trafficPolicy:',
    '    connectionPool: {tcp: {connectTimeout: 10q}}',
    '    outlierDetection: {maxEjectionPercent: 200}',
    '---',
    'apiVersion: networking.istio.io/v1',
    'kind: DestinationRule',
    'metadata: {name: good, namespace: apps}',
    'spec:',
    '  host: web',
    '  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}',
  ].join('\n');
  const parsed = parseManifests(yaml, 'dr.yaml');
  t.same(
    parsed.objects.map((o) => o.meta.name),
    ['good'],
  );
  t.same(
    parsed.problems.map((p) => [p.object, p.field, p.message]),
    [
      ['DestinationRule apps/bad', 'spec.trafficPolicy.connectionPool.tcp.connectTimeout', '"10q" is not a duration; expected e.g. "10s", "1.5s", "250ms" or "1m"'],
      ['DestinationRule apps/bad', 'spec.trafficPolicy.outlierDetection.maxEjectionPercent', '200 is not allowed; expected a percentage from 0 to 100'],
    ],
  );
});

t.test('the discovery decoder refuses what the manifest parser refuses, as a WireFormatError', async (t) => {
  const ok = decodeResource('destinationRules', {
    name: 'dr',
    namespace: 'apps',
    spec: { host: 'web', trafficPolicy: { outlierDetection: { consecutive5xxErrors: 2, baseEjectionTime: '1s' } }, subsets: [{ name: 'v1', trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } }] },
  });
  t.same(ok.trafficPolicy, { outlierDetection: { consecutive5xxErrors: 2, baseEjectionTimeMs: 1000 } });
  t.same(ok.subsets[0]?.trafficPolicy, { loadBalancer: { simple: 'RANDOM' } });
  const bad: Array<[unknown, RegExp]> = [
    [{ loadBalancer: { consistentHash: {} } }, /destinationRules\.spec\.trafficPolicy\.loadBalancer\.consistentHash: no hash key/],
    [{ loadBalancer: { simple: 'PASSTHROUGH' } }, /destinationRules\.spec\.trafficPolicy\.loadBalancer\.simple: PASSTHROUGH is not supported/],
    [{ connectionPool: { tcp: { maxConnections: -1 } } }, /destinationRules\.spec\.trafficPolicy\.connectionPool\.tcp\.maxConnections/],
    [{ outlierDetection: { interval: 'x' } }, /destinationRules\.spec\.trafficPolicy\.outlierDetection\.interval: "x" is not a duration/],
    [{ loadBalancer: { simple: 'NOPE' } }, /destinationRules\.spec\.trafficPolicy\.loadBalancer\.simple/],
  ];
  for (const [trafficPolicy, re] of bad) {
    let err: unknown;
    try {
      decodeResource('destinationRules', { name: 'dr', namespace: 'apps', spec: { host: 'web', trafficPolicy } });
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof WireFormatError, `${JSON.stringify(trafficPolicy)}: a WireFormatError`);
    t.match((err as Error).message, re);
  }
});
