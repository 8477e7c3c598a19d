/**
 * The renderer's template semantics against Go's text/template and Helm's functions: each case
 * states what Go (helm 3) prints for the same template and data.
 */
import t from 'tap';
import { Engine } from '../../tools/helm/engine.js';
import { TemplateExecError, TemplateFailError, TemplateParseError } from '../../tools/helm/errors.js';
import { helmFuncs, sprintf, toYaml } from '../../tools/helm/funcs.js';
import { parseTemplate } from '../../tools/helm/parse.js';
import { formatFloat } from '../../tools/helm/values-model.js';

function render(src: string, data: unknown = {}, extra: Record<string, string> = {}): string {
  const e = new Engine({ funcs: helmFuncs() });
  for (const [name, text] of Object.entries(extra)) e.add(parseTemplate(name, text));
  e.add(parseTemplate('t.yaml', src));
  return e.execute('t.yaml', data);
}

t.test('whitespace trimming: {{- trims before, -}} trims after, spaces and newlines alike', async (t) => {
  t.equal(render('a  \n\t {{- "b" -}} \n\n c'), 'abc');
  t.equal(render('a {{ "b" }} c'), 'a b c');
  t.equal(render('x:\n  {{- if true }}\n  y: 1\n  {{- end }}\n'), 'x:\n  y: 1\n');
  // `{{-3}}` is the number -3, not a trim marker.
  t.equal(render('a {{-3}} b'), 'a -3 b');
  t.equal(render('a {{- /* a comment */ -}} b'), 'ab');
  t.equal(render('a{{/* c */}}b'), 'ab');
});

t.test('truth: false, 0, nil, and empty strings, lists and maps are false', async (t) => {
  const cases: Array<[unknown, string]> = [
    [false, 'F'], [0, 'F'], [null, 'F'], ['', 'F'], [[], 'F'], [{}, 'F'],
    [true, 'T'], [1, 'T'], ['0', 'T'], [[0], 'T'], [{ a: null }, 'T'],
  ];
  for (const [v, want] of cases) t.equal(render('{{ if .v }}T{{ else }}F{{ end }}', { v }), want, JSON.stringify(v));
  t.equal(render('{{ if .missing }}T{{ else if .b }}B{{ else }}F{{ end }}', { b: 'x' }), 'B');
});

t.test('a missing map key is nil (printed empty by helm); a field of nil is an error with file:line', async (t) => {
  t.equal(render('[{{ .a }}]', {}).replaceAll('<no value>', ''), '[]');
  t.equal(render('[{{ .a }}]', {}), '[<no value>]', 'Go prints <no value>; Helm replaces it');
  const err = t.throws(() => render('line1\n{{ .a.b }}', {})) as unknown as TemplateExecError;
  t.ok(err instanceof TemplateExecError);
  t.match(err.message, /^t\.yaml:2: executing at <\{\{ \.a\.b \}\}>: nil pointer evaluating interface \{\}\.b/);
  t.throws(() => render('{{ .a.b }}', { a: 'str' }), /can't evaluate field b in type string/);
});

t.test('range: lists with index, maps sorted by key, integers, else, break and continue', async (t) => {
  t.equal(render('{{ range $i, $v := .l }}{{ $i }}={{ $v }};{{ end }}', { l: ['a', 'b'] }), '0=a;1=b;');
  t.equal(render('{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}', { m: { zeta: 1, alpha: 2, mid: 3 } }), 'alpha=2;mid=3;zeta=1;');
  t.equal(render('{{ range .m }}{{ . }}{{ end }}', { m: { b: 'B', a: 'A' } }), 'AB', 'one variable (or none) gets the values');
  t.equal(render('{{ range .l }}x{{ else }}empty{{ end }}', { l: [] }), 'empty');
  t.equal(render('{{ range .l }}x{{ else }}empty{{ end }}', {}), 'empty', 'range over nil runs else');
  t.equal(render('{{ range 3 }}{{ . }}{{ end }}'), '012');
  t.equal(render('{{ range .l }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ if eq . "d" }}{{ break }}{{ end }}{{ . }}{{ end }}', { l: ['a', 'b', 'c', 'd', 'e'] }), 'ac');
  t.throws(() => render('{{ range .s }}{{ end }}', { s: 'abc' }), /range can't iterate over abc/);
  t.equal(render('{{ range .l }}{{ $.top }}{{ end }}', { l: [1, 2], top: 'T' }), 'TT', '$ is the data the template started with');
});

t.test('variables: declared until the end of their block, = assigns the outer one', async (t) => {
  t.equal(render('{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}'), '2');
  t.equal(render('{{ $x := "a" }}{{ if true }}{{ $x := "b" }}{{ $x }}{{ end }}{{ $x }}'), 'ba');
  t.throws(() => render('{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}'), /undefined variable: \$y/);
  t.throws(() => render('{{ $z = 1 }}'), /undefined variable: \$z/);
});

t.test('with sets dot, else with chains, else runs when empty', async (t) => {
  t.equal(render('{{ with .a }}{{ .b }}{{ end }}', { a: { b: 'x' } }), 'x');
  t.equal(render('{{ with .a }}A{{ else with .b }}{{ . }}{{ else }}none{{ end }}', { b: 'B' }), 'B');
  t.equal(render('{{ with .a }}A{{ else }}none{{ end }}', { a: '' }), 'none');
});

t.test('define, include, template and tpl share one namespace; include output pipes', async (t) => {
  const helpers = { '_helpers.tpl': '{{- define "name" -}}{{ .n | trunc 5 }}{{- end }}{{ define "lbl" }}app: {{ include "name" . }}{{ end }}' };
  t.equal(render('{{ include "name" . }}', { n: 'abcdefgh' }, helpers), 'abcde');
  t.equal(render('x:\n{{- include "lbl" . | nindent 2 }}', { n: 'web' }, helpers), 'x:\n  app: web');
  t.equal(render('{{ template "name" . }}', { n: 'z' }, helpers), 'z');
  t.equal(render('{{ tpl .t . }}', { t: '{{ .n | upper }}', n: 'q' }), 'Q');
  t.throws(() => render('{{ include "nope" . }}'), /no template "nope"/);
  const loop = { '_l.tpl': '{{ define "loop" }}{{ include "loop" . }}{{ end }}' };
  t.throws(() => render('{{ include "loop" . }}', {}, loop), /nested reference/);
});

t.test('and/or return the deciding value and stop there; eq and friends follow Go types', async (t) => {
  t.equal(render('{{ or .a "dflt" }}', {}), 'dflt');
  t.equal(render('{{ and 1 "" 3 }}'), '');
  t.equal(render('{{ or 0 .a.b }}', { a: { b: 'x' } }), 'x');
  t.equal(render('{{ and false .missing.field }}', {}), 'false', 'and stops before evaluating the failing field');
  t.equal(render('{{ eq .s "a" "b" }}', { s: 'b' }), 'true', 'eq with several arguments is true if any matches');
  t.throws(() => render('{{ eq .n 1 }}', { n: 1 }), /incompatible types for comparison \(float64 and int/);
  t.equal(render('{{ eq (int .n) 1 }}', { n: 1 }), 'true');
  t.equal(render('{{ lt 1 2 }} {{ ge .a .b }}', { a: 2.5, b: 2.5 }), 'true true');
  t.equal(render('{{ ne .x nil }}', {}), 'false');
});

t.test('numbers: values are float64 (a million prints as 1e+06), literals and int are int64', async (t) => {
  t.equal(render('{{ .n }}', { n: 15012 }), '15012');
  t.equal(render('{{ .n }}', { n: 1000000 }), '1e+06');
  t.equal(render('{{ .n | int }}', { n: 1000000 }), '1000000');
  t.equal(render('{{ .n }}', { n: 0.5 }), '0.5');
  t.equal(formatFloat(1234567), '1.234567e+06');
  t.equal(formatFloat(0.00001), '1e-05');
  t.equal(render('{{ add 1 .n }}', { n: 2 }), '3');
  t.equal(render('{{ printf "%d" .n }}', { n: 25 }), '%!d(float64=25)', 'what Go prints for %d of a float64');
  t.equal(render('{{ printf "%d" (int .n) }}', { n: 25 }), '25');
});

t.test('Sprig/Helm functions behave as in helm', async (t) => {
  t.equal(render('{{ .x | default "d" }}', { x: '' }), 'd');
  t.equal(render('{{ .x | default "d" }}', { x: false }), 'd', 'default treats false as empty');
  t.equal(render('{{ .x | default 5 }}', { x: 0 }), '5');
  t.equal(render('{{ quote .a .b }}', { a: 'x"y', b: 3 }), '"x\\"y" "3"');
  t.equal(render('[{{ quote .nil }}]', {}), '[]', 'quote skips nil');
  t.equal(render('{{ squote "a" }}'), "'a'");
  t.equal(render('{{ "abc" | trunc 2 }}|{{ "abc" | trunc -2 }}|{{ "ab" | trunc 5 }}'), 'ab|bc|ab');
  t.equal(render('{{ trimSuffix "-" "a-b-" }}{{ trimPrefix "x" "xy" }}{{ trim "  z \\n" }}'), 'a-byz');
  t.equal(render('{{ "a\\n\\nb" | indent 2 }}'), '  a\n  \n  b', 'indent pads empty lines too');
  t.equal(render('{{ hasKey .m "a" }} {{ hasKey .m "b" }}', { m: { a: null } }), 'true false');
  t.equal(render('{{ $d := dict "a" 1 "b" (list 1 2) }}{{ $d.b }} {{ len $d }}'), '[1 2] 2');
  t.equal(render('{{ $m := merge (dict "a" 1) (dict "a" 2 "b" 3) }}{{ $m.a }}{{ $m.b }}'), '13', 'merge keeps the destination');
  t.equal(render('{{ "hi" | b64enc }}'), 'aGk=');
  t.equal(render('{{ toString 3 }}{{ .m }}', { m: { b: 1, a: [true] } }), '3map[a:[true] b:1]');
  t.equal(render('{{ printf "%s-%v-%q" "a" .b "c" }}', { b: 1.5 }), 'a-1.5-"c"');
  t.equal(render('{{ ternary "y" "n" true }}{{ ternary "y" "n" false }}'), 'yn');
  t.equal(render('{{ join "," .l }}', { l: ['a', 'b'] }), 'a,b');
  t.equal(sprintf('%s', [null]), '%!s(nil=<nil>)');
});

t.test('toYaml: sorted keys, lists at their key\'s indentation, YAML 1.1 look-alikes quoted, no final newline', async (t) => {
  // yaml.v2 quotes y/n/yes/no/on/off too: Kubernetes reads manifests as YAML 1.1.
  t.equal(toYaml({ b: ['x', 'y'], a: { yes: 'no', n: 1 } }), 'a:\n  "n": 1\n  "yes": "no"\nb:\n- x\n- "y"');
  t.equal(toYaml({}), '{}');
  t.equal(toYaml(null), 'null');
  t.equal(render('spec:\n  {{- toYaml .r | nindent 2 }}', { r: { limits: { cpu: '1' } } }), 'spec:\n  limits:\n    cpu: "1"');
});

t.test('required and fail stop rendering with the chart\'s message and where', async (t) => {
  const err = t.throws(() => render('a\nb: {{ required "set image.hub" .image }}', {})) as unknown as TemplateFailError;
  t.ok(err instanceof TemplateFailError);
  t.equal(err.message, 't.yaml:2: set image.hub');
  t.throws(() => render('{{ fail "no" }}'), { code: 'ERR_HELM_TEMPLATE_FAIL', message: 't.yaml:1: no' });
  t.throws(() => render('{{ lookup "v1" "Secret" "ns" "n" }}'), /lookup is not supported/);
});

t.test('parse errors name the file and line', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['a\n{{ if .x }}\nb', /^t\.yaml:2: unexpected EOF: \{\{if\}\} opened here has no \{\{end\}\}/],
    ['{{ end }}', /^t\.yaml:1: unexpected \{\{end\}\}/],
    ['\n\n{{ .a', /^t\.yaml:3: unclosed action/],
    ['{{ "abc }}', /unterminated quoted string/],
    ['{{ else }}', /unexpected \{\{else\}\}/],
    ['{{ break }}', /\{\{break\}\} outside \{\{range\}\}/],
    ['{{ (1 }}', /unclosed left paren/],
    ['{{ . | "x" }}', /non executable command in pipeline stage 2/],
  ];
  for (const [src, re] of cases) {
    const err = t.throws(() => render(src), src);
    t.ok(err instanceof TemplateParseError, src);
    t.match((err as Error).message, re, src);
  }
  t.throws(() => render('{{ nosuchfn 1 }}'), /function "nosuchfn" not defined/);
  t.throws(() => render('{{ "a" 1 }}'), /can't give argument to non-function "a"/);
});

t.test('strings: Go escapes in interpreted strings, raw strings verbatim', async (t) => {
  t.equal(render('{{ "a\\tb\\u00e9\\x41" }}'), 'a\tbéA');
  t.equal(render('{{ `a\\tb` }}'), 'a\\tb');
  t.equal(render('{{ (dict "k" "v").k }}'), 'v', 'a field of a parenthesised pipeline');
});
