/**
 * A parser for the part of Go's text/template that Helm charts use: text and `{{ }}` actions with
 * `{{-`/`-}}` whitespace trimming and comments; pipelines of commands separated by `|`; field
 * chains on `.`, `$` and variables; parenthesised pipelines; string (interpreted and raw), number,
 * boolean and nil literals; variable declaration `$x :=` and assignment `$x =`; and the control
 * actions if / else if / else, range (with `$i, $v :=`, else, break, continue), with / else with /
 * else, define, template, block and end. Anything else is a parse error naming file and line.
 */
import { TemplateParseError } from './errors.js';

export interface Pos {
  readonly file: string;
  readonly line: number;
}

/** One operand of a command. `chain` is a field chain applied after the base. */
export type Arg =
  | { readonly t: 'dot'; readonly chain: readonly string[] }
  | { readonly t: 'var'; readonly name: string; readonly chain: readonly string[] }
  | { readonly t: 'ident'; readonly name: string }
  | { readonly t: 'str'; readonly v: string }
  | { readonly t: 'int'; readonly v: bigint }
  | { readonly t: 'float'; readonly v: number }
  | { readonly t: 'bool'; readonly v: boolean }
  | { readonly t: 'nil' }
  | { readonly t: 'pipe'; readonly pipe: Pipe; readonly chain: readonly string[] };

export interface Cmd {
  readonly args: readonly Arg[];
}

export interface Pipe {
  /** Variables declared (`:=`) or assigned (`=`) by the pipeline. */
  readonly decl: readonly string[];
  readonly assign: boolean;
  readonly cmds: readonly Cmd[];
  /** The action's source text, for error messages. */
  readonly text: string;
  readonly pos: Pos;
}

export type Node =
  | { readonly t: 'text'; readonly text: string }
  | { readonly t: 'action'; readonly pipe: Pipe }
  | { readonly t: 'if' | 'with'; readonly branches: ReadonlyArray<{ pipe: Pipe; body: Node[] }>; readonly otherwise?: Node[] }
  | { readonly t: 'range'; readonly pipe: Pipe; readonly body: Node[]; readonly otherwise?: Node[] }
  | { readonly t: 'template'; readonly name: string; readonly pipe?: Pipe; readonly pos: Pos }
  | { readonly t: 'break' | 'continue'; readonly pos: Pos };

/** A parsed file: its top-level nodes and every `define`/`block` it declares. */
export interface ParsedTemplate {
  readonly name: string;
  readonly root: Node[];
  readonly defines: ReadonlyMap<string, Node[]>;
}

type Tok =
  | { k: 'field'; names: string[] }
  | { k: 'dot' }
  | { k: 'var'; name: string; chain: string[] }
  | { k: 'ident'; name: string }
  | { k: 'str'; v: string }
  | { k: 'num'; text: string }
  | { k: 'pipe' | 'lparen' | 'rparen' | 'comma' | 'declare' | 'assign' }
  | { k: 'chain'; names: string[] };

const SPACE = /[ \t\r\n]/;
const IDENT = /[A-Za-z_][A-Za-z0-9_]*/y;

/**
 * Parses one template file.
 *
 * @example
 * const t = parseTemplate('ztunnel/templates/daemonset.yaml', 'name: {{ .Release.Name | quote }}');
 * t.root.length; // 2: a text node and an action
 */
export function parseTemplate(name: string, src: string): ParsedTemplate {
  return new Parser(name, src).parse();
}

interface Frame {
  kind: 'root' | 'if' | 'with' | 'range' | 'define';
  /** For if/with: branches; the last one's body is `nodes` until else. */
  branches: Array<{ pipe: Pipe; body: Node[] }>;
  rangePipe?: Pipe;
  nodes: Node[];
  otherwise?: Node[];
  inElse: boolean;
  defineName?: string;
  /** `block` defines and then calls itself. */
  blockPipe?: Pipe;
  line: number;
}

class Parser {
  private readonly defines = new Map<string, Node[]>();
  private line = 1;

  constructor(
    private readonly file: string,
    private readonly src: string,
  ) {}

  private fail(what: string, line = this.line): never {
    throw new TemplateParseError(this.file, line, what);
  }

  parse(): ParsedTemplate {
    const stack: Frame[] = [{ kind: 'root', branches: [], nodes: [], inElse: false, line: 1 }];
    const top = (): Frame => stack[stack.length - 1]!;
    const emit = (n: Node): void => {
      const f = top();
      (f.inElse ? f.otherwise! : f.nodes).push(n);
    };
    const src = this.src;
    let i = 0;
    let trimNext = false;
    while (i < src.length) {
      const open = src.indexOf('{{', i);
      let text = src.slice(i, open === -1 ? src.length : open);
      if (trimNext) text = text.replace(/^[ \t\r\n]+/, '');
      trimNext = false;
      if (open === -1) {
        if (text !== '') emit({ t: 'text', text });
        break;
      }
      // `{{- ` trims the text before it; the dash must be followed by a space (else it is a number).
      const leftTrim = src[open + 2] === '-' && SPACE.test(src[open + 3] ?? '');
      if (leftTrim) text = text.replace(/[ \t\r\n]+$/, '');
      this.line += countLines(src.slice(i, open));
      if (text !== '') emit({ t: 'text', text });
      let j = open + 2 + (leftTrim ? 2 : 0);
      const actionLine = this.line;
      // Comments: {{/* ... */}} with optional trim markers, nothing else inside the action.
      const afterSpace = skipSpace(src, j);
      if (src.startsWith('/*', afterSpace)) {
        const endComment = src.indexOf('*/', afterSpace + 2);
        if (endComment === -1) this.fail('unclosed comment');
        let k = endComment + 2;
        let rightTrim = false;
        const ws = skipSpace(src, k);
        if (src.startsWith('-}}', ws) && ws > k) {
          rightTrim = true;
          k = ws + 3;
        } else if (src.startsWith('}}', k)) {
          k += 2;
        } else {
          this.fail('comment ends before the closing "}}" ("*/}}" or "*/ -}}")');
        }
        this.line += countLines(src.slice(open, k));
        i = k;
        trimNext = rightTrim;
        continue;
      }
      const { toks, end, rightTrim } = this.lex(j);
      const actionText = src.slice(open, end).replace(/\s+/g, ' ');
      this.line += countLines(src.slice(open, end));
      i = end;
      trimNext = rightTrim;
      this.action(toks, actionText, actionLine, stack, emit);
    }
    if (stack.length > 1) {
      const f = top();
      this.fail(`unexpected EOF: {{${f.kind}}} opened here has no {{end}}`, f.line);
    }
    return { name: this.file, root: stack[0]!.nodes, defines: this.defines };
  }

  private action(toks: Tok[], text: string, line: number, stack: Frame[], emit: (n: Node) => void): void {
    const pos: Pos = { file: this.file, line };
    const top = (): Frame => stack[stack.length - 1]!;
    const first = toks[0];
    if (first === undefined) this.fail('missing value for command (empty action)', line);
    const keyword = first.k === 'ident' ? first.name : undefined;
    const rest = toks.slice(1);
    switch (keyword) {
      case 'if':
      case 'with':
        stack.push({ kind: keyword, branches: [{ pipe: this.pipe(rest, text, pos, true), body: [] }], nodes: [], inElse: false, line });
        return;
      case 'range': {
        stack.push({ kind: 'range', branches: [], rangePipe: this.pipe(rest, text, pos, true), nodes: [], inElse: false, line });
        return;
      }
      case 'define':
      case 'block': {
        const nameTok = rest[0];
        if (nameTok?.k !== 'str') this.fail(`{{${keyword}}} needs a quoted template name`, line);
        if (stack.length > 1 && keyword === 'define') this.fail('{{define}} is only allowed at the top level', line);
        const blockPipe = keyword === 'block' ? this.pipe(rest.slice(1), text, pos, false) : undefined;
        stack.push({ kind: 'define', branches: [], nodes: [], inElse: false, defineName: nameTok.v, ...(blockPipe ? { blockPipe } : {}), line });
        return;
      }
      case 'else': {
        const f = top();
        if (f.kind !== 'if' && f.kind !== 'with' && f.kind !== 'range') this.fail('unexpected {{else}}', line);
        if (f.inElse) this.fail('{{else}} after {{else}}', line);
        this.close(f);
        const chained = rest[0]?.k === 'ident' ? rest[0].name : undefined;
        if (chained === 'if' || chained === 'with') {
          if (chained !== f.kind) this.fail(`{{else ${chained}}} inside {{${f.kind}}}`, line);
          f.branches.push({ pipe: this.pipe(rest.slice(1), text, pos, true), body: [] });
          f.nodes = [];
          return;
        }
        if (rest.length > 0) this.fail('unexpected tokens after {{else}}', line);
        f.inElse = true;
        f.otherwise = [];
        return;
      }
      case 'end': {
        if (rest.length > 0) this.fail('unexpected tokens after {{end}}', line);
        const f = stack.pop()!;
        if (f.kind === 'root') this.fail('unexpected {{end}}', line);
        if (!f.inElse) this.close(f);
        let node: Node | undefined;
        if (f.kind === 'if' || f.kind === 'with') {
          node = { t: f.kind, branches: f.branches, ...(f.otherwise ? { otherwise: f.otherwise } : {}) };
        } else if (f.kind === 'range') {
          node = { t: 'range', pipe: f.rangePipe!, body: f.nodes, ...(f.otherwise ? { otherwise: f.otherwise } : {}) };
        } else {
          this.defines.set(f.defineName!, f.nodes);
          if (f.blockPipe) node = { t: 'template', name: f.defineName!, pipe: f.blockPipe, pos };
        }
        if (node) {
          const parent = top();
          (parent.inElse ? parent.otherwise! : parent.nodes).push(node);
        }
        return;
      }
      case 'template': {
        const nameTok = rest[0];
        if (nameTok?.k !== 'str') this.fail('{{template}} needs a quoted template name', line);
        const args = rest.slice(1);
        emit({ t: 'template', name: nameTok.v, ...(args.length > 0 ? { pipe: this.pipe(args, text, pos, false) } : {}), pos });
        return;
      }
      case 'break':
      case 'continue': {
        if (!stack.some((f) => f.kind === 'range')) this.fail(`{{${keyword}}} outside {{range}}`, line);
        emit({ t: keyword, pos });
        return;
      }
      default:
        emit({ t: 'action', pipe: this.pipe(toks, text, pos, false) });
    }
  }

  /** For if/with/range the body collected so far belongs to the last branch. */
  private close(f: Frame): void {
    if (f.kind === 'if' || f.kind === 'with') f.branches[f.branches.length - 1]!.body = f.nodes;
  }

  private pipe(toks: Tok[], text: string, pos: Pos, control: boolean): Pipe {
    const decl: string[] = [];
    let assign = false;
    // `$x :=`, `$x =`, or (range only) `$i, $v :=`.
    let k = 0;
    const isDeclStart = (): boolean => {
      const a = toks[0];
      if (a?.k !== 'var' || a.chain.length > 0) return false;
      const b = toks[1];
      if (b?.k === 'declare' || b?.k === 'assign') return true;
      return control && b?.k === 'comma' && toks[2]?.k === 'var' && (toks[3]?.k === 'declare' || toks[3]?.k === 'assign');
    };
    if (isDeclStart()) {
      decl.push((toks[0] as { name: string }).name);
      k = 1;
      if (toks[1]!.k === 'comma') {
        decl.push((toks[2] as { name: string }).name);
        k = 3;
      }
      assign = toks[k]!.k === 'assign';
      k += 1;
    }
    const cmds: Cmd[] = [];
    let cur: Arg[] = [];
    const end = toks.length;
    while (k < end) {
      const tk = toks[k]!;
      if (tk.k === 'pipe') {
        if (cur.length === 0) this.fail(`missing command before "|" in ${text}`, pos.line);
        cmds.push({ args: cur });
        cur = [];
        k += 1;
        continue;
      }
      const [arg, next] = this.operand(toks, k, text, pos);
      cur.push(arg);
      k = next;
    }
    if (cur.length === 0) this.fail(`missing value for command in ${text}`, pos.line);
    cmds.push({ args: cur });
    for (const [n, c] of cmds.entries()) {
      const head = c.args[0]!;
      if (n > 0 && head.t !== 'ident' && !(head.t === 'dot' || head.t === 'var' ? head.chain.length > 0 : false)) {
        this.fail(`non executable command in pipeline stage ${n + 1} of ${text}`, pos.line);
      }
    }
    return { decl, assign, cmds, text, pos };
  }

  private operand(toks: Tok[], k: number, text: string, pos: Pos): [Arg, number] {
    const tk = toks[k]!;
    switch (tk.k) {
      case 'dot':
        return [{ t: 'dot', chain: [] }, k + 1];
      case 'field':
        return [{ t: 'dot', chain: tk.names }, k + 1];
      case 'var':
        return [{ t: 'var', name: tk.name, chain: tk.chain }, k + 1];
      case 'str':
        return [{ t: 'str', v: tk.v }, k + 1];
      case 'num': {
        const s = tk.text;
        if (/^[-+]?(0x[0-9a-fA-F_]+|0o?[0-7_]+|0b[01_]+|[0-9_]+)$/.test(s)) {
          const neg = s.startsWith('-');
          const body = s.replace(/^[-+]/, '').replace(/_/g, '');
          const v = BigInt(body.startsWith('0') && body.length > 1 && /^0[0-7]/.test(body) ? `0o${body.slice(1)}` : body);
          return [{ t: 'int', v: neg ? -v : v }, k + 1];
        }
        const f = Number(s.replace(/_/g, ''));
        if (!Number.isFinite(f)) this.fail(`bad number syntax: ${JSON.stringify(s)} in ${text}`, pos.line);
        return [{ t: 'float', v: f }, k + 1];
      }
      case 'ident': {
        if (tk.name === 'true' || tk.name === 'false') return [{ t: 'bool', v: tk.name === 'true' }, k + 1];
        if (tk.name === 'nil') return [{ t: 'nil' }, k + 1];
        if (['if', 'else', 'end', 'range', 'with', 'define', 'template', 'block', 'break', 'continue'].includes(tk.name)) {
          this.fail(`unexpected keyword "${tk.name}" in ${text}`, pos.line);
        }
        return [{ t: 'ident', name: tk.name }, k + 1];
      }
      case 'lparen': {
        let depth = 1;
        let m = k + 1;
        while (m < toks.length && depth > 0) {
          if (toks[m]!.k === 'lparen') depth += 1;
          if (toks[m]!.k === 'rparen') depth -= 1;
          m += 1;
        }
        if (depth !== 0) this.fail(`unclosed left paren in ${text}`, pos.line);
        const inner = this.pipe(toks.slice(k + 1, m - 1), text, pos, false);
        let chain: string[] = [];
        const after = toks[m];
        if (after?.k === 'chain') {
          chain = after.names;
          m += 1;
        }
        return [{ t: 'pipe', pipe: inner, chain }, m];
      }
      case 'rparen':
        return this.fail(`unexpected ")" in ${text}`, pos.line);
      case 'comma':
        return this.fail(`unexpected "," in ${text} (only "range $i, $v := ..." declares two variables)`, pos.line);
      case 'declare':
      case 'assign':
        return this.fail(`unexpected "${tk.k === 'declare' ? ':=' : '='}" in ${text}`, pos.line);
      case 'chain':
        return this.fail(`unexpected field chain .${tk.names.join('.')} in ${text}`, pos.line);
      default:
        return this.fail(`unexpected token in ${text}`, pos.line);
    }
  }

  /** Tokenizes an action from `start` up to its `}}` (or ` -}}`). */
  private lex(start: number): { toks: Tok[]; end: number; rightTrim: boolean } {
    const src = this.src;
    const toks: Tok[] = [];
    let i = start;
    let line = this.line;
    const fail = (what: string): never => this.fail(what, line);
    while (true) {
      if (i >= src.length) fail('unclosed action: no "}}" before the end of the file');
      const c = src[i]!;
      if (SPACE.test(c)) {
        const ws = skipSpace(src, i);
        line += countLines(src.slice(i, ws));
        if (src.startsWith('-}}', ws)) return { toks, end: ws + 3, rightTrim: true };
        i = ws;
        continue;
      }
      if (src.startsWith('}}', i)) return { toks, end: i + 2, rightTrim: false };
      if (c === '"') {
        const [v, next] = readQuoted(src, i, fail);
        toks.push({ k: 'str', v });
        i = next;
        continue;
      }
      if (c === '`') {
        const close = src.indexOf('`', i + 1);
        if (close === -1) fail('unterminated raw string');
        const v = src.slice(i + 1, close);
        line += countLines(v);
        toks.push({ k: 'str', v });
        i = close + 1;
        continue;
      }
      if (c === "'") fail('character constants are not supported');
      if (c === '|') {
        toks.push({ k: 'pipe' });
        i += 1;
        continue;
      }
      if (c === '(') {
        toks.push({ k: 'lparen' });
        i += 1;
        continue;
      }
      if (c === ')') {
        toks.push({ k: 'rparen' });
        i += 1;
        if (src[i] === '.' && /[A-Za-z_]/.test(src[i + 1] ?? '')) {
          const [names, next] = readChain(src, i);
          toks.push({ k: 'chain', names });
          i = next;
        }
        continue;
      }
      if (c === ',') {
        toks.push({ k: 'comma' });
        i += 1;
        continue;
      }
      if (src.startsWith(':=', i)) {
        toks.push({ k: 'declare' });
        i += 2;
        continue;
      }
      if (c === '=') {
        toks.push({ k: 'assign' });
        i += 1;
        continue;
      }
      if (c === '.') {
        if (/[A-Za-z_]/.test(src[i + 1] ?? '')) {
          const [names, next] = readChain(src, i);
          toks.push({ k: 'field', names });
          i = next;
        } else if (/[0-9]/.test(src[i + 1] ?? '')) {
          const m = /[0-9._eE+-]+/y;
          m.lastIndex = i;
          const num = m.exec(src)![0];
          toks.push({ k: 'num', text: num });
          i += num.length;
        } else {
          toks.push({ k: 'dot' });
          i += 1;
        }
        continue;
      }
      if (c === '$') {
        IDENT.lastIndex = i + 1;
        const m = IDENT.exec(src);
        const name = '$' + (m && m.index === i + 1 ? m[0] : '');
        i += name.length;
        let chain: string[] = [];
        if (src[i] === '.' && /[A-Za-z_]/.test(src[i + 1] ?? '')) {
          [chain, i] = readChain(src, i);
        }
        toks.push({ k: 'var', name, chain });
        continue;
      }
      if (/[0-9]/.test(c) || ((c === '-' || c === '+') && /[0-9.]/.test(src[i + 1] ?? ''))) {
        const m = /[-+]?(0[xX][0-9a-fA-F_]+|[0-9_]*\.?[0-9_]*([eE][-+]?[0-9]+)?)/y;
        m.lastIndex = i;
        const num = m.exec(src)![0];
        toks.push({ k: 'num', text: num });
        i += num.length;
        continue;
      }
      IDENT.lastIndex = i;
      const id = IDENT.exec(src);
      if (id && id.index === i) {
        toks.push({ k: 'ident', name: id[0] });
        i += id[0].length;
        continue;
      }
      fail(`unexpected character ${JSON.stringify(c)} in action`);
    }
  }
}

function skipSpace(src: string, i: number): number {
  while (i < src.length && SPACE.test(src[i]!)) i += 1;
  return i;
}

function countLines(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i += 1) if (s.charCodeAt(i) === 10) n += 1;
  return n;
}

function readChain(src: string, i: number): [string[], number] {
  const names: string[] = [];
  while (src[i] === '.') {
    IDENT.lastIndex = i + 1;
    const m = IDENT.exec(src);
    if (!m || m.index !== i + 1) break;
    names.push(m[0]);
    i += 1 + m[0].length;
  }
  return [names, i];
}

/** A Go interpreted string literal: \n \t \r \\ \" \' \a \b \f \v \xHH \uHHHH \UHHHHHHHH \ooo. */
function readQuoted(src: string, i: number, fail: (what: string) => never): [string, number] {
  let out = '';
  let k = i + 1;
  while (true) {
    const c = src[k];
    if (c === undefined || c === '\n') fail('unterminated quoted string');
    if (c === '"') return [out, k + 1];
    if (c !== '\\') {
      out += c;
      k += 1;
      continue;
    }
    const e = src[k + 1];
    const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', '"': '"', "'": "'", a: '\x07', b: '\b', f: '\f', v: '\v' };
    if (e !== undefined && simple[e] !== undefined) {
      out += simple[e];
      k += 2;
      continue;
    }
    const hex = (len: number): void => {
      const h = src.slice(k + 2, k + 2 + len);
      if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(h)) fail(`bad escape \\${e}${h} in quoted string`);
      out += String.fromCodePoint(parseInt(h, 16));
      k += 2 + len;
    };
    if (e === 'x') hex(2);
    else if (e === 'u') hex(4);
    else if (e === 'U') hex(8);
    else if (e !== undefined && /[0-7]/.test(e)) {
      const o = src.slice(k + 1, k + 4);
      if (!/^[0-7]{3}$/.test(o)) fail(`bad octal escape \\${o} in quoted string`);
      out += String.fromCharCode(parseInt(o, 8));
      k += 4;
    } else fail(`unknown escape sequence \\${e ?? ''} in quoted string`);
  }
}
