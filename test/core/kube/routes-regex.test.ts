/**
 * Regexes that are not RE2 are rejected at conversion (core/kube/routes/), with a problem
 * naming the object and the field, on both paths into the mesh: Kubernetes manifests (the
 * control plane's parser) and the config file.
 */
import t from 'tap';
import * as yaml from 'js-yaml';
import { formatProblem } from '../../../core/kube/objects.js';
import { parseManifests } from '../../../core/kube/parse.js';
import { parseMeshConfig } from '../../../core/node-config/file.js';
import { ConfigError } from '../../../core/errors.js';

const docs = (...objs: object[]) => objs.map((o) => yaml.dump(o)).join('---\n');
const parent = { group: '', kind: 'Service', name: 'web' };

t.test('manifests: each bad regex is rejected with kind, name and field path; good ones apply', async (t) => {
  const { objects, problems } = parseManifests(
    docs(
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: 'escape', namespace: 'apps' },
        spec: { parentRefs: [parent], rules: [{ matches: [{ path: { type: 'RegularExpression', value: '/admin)|(/x' } }], backendRefs: [{ name: 'web', port: 80 }] }] },
      },
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: 'lookahead', namespace: 'apps' },
        spec: {
          parentRefs: [parent],
          rules: [
            { backendRefs: [{ name: 'web', port: 80 }] },
            {
              matches: [{ headers: [{ type: 'RegularExpression', name: 'x-user', value: '(?!admin).*' }], queryParams: [{ type: 'RegularExpression', name: 'id', value: '(\\d)\\1' }] }],
              backendRefs: [{ name: 'web', port: 80 }],
            },
          ],
        },
      },
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'vs', namespace: 'apps' },
        spec: { hosts: ['web'], http: [{ match: [{ uri: { regex: '/admin)|(/x' }, headers: { 'x-a': { regex: 'a++' } } }], route: [{ destination: { host: 'web' } }] }] },
      },
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: 'good', namespace: 'apps' },
        spec: { parentRefs: [parent], rules: [{ matches: [{ path: { type: 'RegularExpression', value: '/v[0-9]+/(a+)+' } }], backendRefs: [{ name: 'web', port: 80 }] }] },
      },
    ),
    'routes.yaml',
  );
  t.same(objects.map((o) => `${o.kind}/${o.meta.name}`), ['HTTPRoute/good'], 'only the object with valid RE2 is accepted');
  t.same(problems.filter((p) => p.severity === 'error').map(formatProblem), [
    'routes.yaml#1: HTTPRoute apps/escape: spec.rules[0].matches[0].path.value: "/admin)|(/x" is not a valid regular expression: unexpected ) (matches use RE2 syntax)',
    'routes.yaml#2: HTTPRoute apps/lookahead: spec.rules[1].matches[0].headers[0].value: "(?!admin).*" is not a valid regular expression: lookaround (?! is not supported; matches use RE2 syntax, which has no lookahead or lookbehind',
    'routes.yaml#2: HTTPRoute apps/lookahead: spec.rules[1].matches[0].queryParams[0].value: "(\\\\d)\\\\1" is not a valid regular expression: backreference \\1 is not supported; matches use RE2 syntax, which has no backreferences',
    'routes.yaml#3: VirtualService apps/vs: spec.http[0].match[0].uri.regex: "/admin)|(/x" is not a valid regular expression: unexpected ) (matches use RE2 syntax)',
    'routes.yaml#3: VirtualService apps/vs: spec.http[0].match[0].headers["x-a"].regex: "a++" is not a valid regular expression: invalid nested repetition operator at `++` (matches use RE2 syntax)',
  ]);
});

t.test('config file: the problem names the entry and the field', async (t) => {
  const err = t.throws(() =>
    parseMeshConfig(
      `
httpRoutes:
  - name: escape
    namespace: default
    spec:
      parentRefs: [{kind: Service, name: echo}]
      rules: [{matches: [{path: {type: RegularExpression, value: "/admin)|(/x"}}], backendRefs: [{name: echo, port: 80}]}]
virtualServices:
  - {name: v, namespace: default, spec: {hosts: [echo], http: [{match: [{uri: {regex: "(?=/a)/.*"}}], route: [{destination: {host: echo}}]}]}}
`,
      'mesh.yaml',
    ),
  ) as ConfigError;
  t.ok(err instanceof ConfigError);
  t.same(err.problems, [
    'httpRoutes[0].spec.rules[0].matches[0].path.value: "/admin)|(/x" is not a valid regular expression: unexpected ) (matches use RE2 syntax)',
    'virtualServices[0].spec.http[0].match[0].uri.regex: "(?=/a)/.*" is not a valid regular expression: lookaround (?= is not supported; matches use RE2 syntax, which has no lookahead or lookbehind',
  ]);
});
