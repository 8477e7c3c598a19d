/**
 * Executes templates parsed by `parse.ts` with Go's text/template semantics: truth of values,
 * variable scope (a variable lives until the end of its control structure; `=` assigns the nearest
 * one), range over lists, maps (keys sorted), and integers, `and`/`or` that stop at the deciding
 * argument, a missing map key giving nil and a field of nil being an error. The functions come
 * from `funcs.ts`; `include` and `tpl` call back into the engine.
 */
import { TemplateExecError, TemplateFailError } from './errors.js';
import { parseTemplate, type Arg, type Cmd, type Node, type ParsedTemplate, type Pipe, type Pos } from './parse.js';
import { GoMethod, formatValue, goType, isMap, isNil, truthy } from './values-model.js';

/** What a template function sees besides its arguments. */
export interface CallContext {
  readonly engine: Engine;
  readonly pos: Pos;
  /** The template (file) being executed, as `tpl` needs it. */
  readonly templateName: string;
  readonly depth: number;
}

export type TemplateFunc = (ctx: CallContext, ...args: unknown[]) => unknown;

/**
 * Helm refuses templates nested deeper than 1000; JavaScript's stack ends sooner, so the limit is
 * lower here (no real chart nests includes this deep; a template including itself hits it).
 */
const MAX_DEPTH = 200;

class BreakSignal {}
class ContinueSignal {}

interface State {
  dot: unknown;
  vars: Array<{ name: string; value: unknown }>;
  out: string[];
  templateName: string;
  depth: number;
}

/** Thrown by `required`/`fail` and friends: a message that must reach the user as it is. */
export class FailSignal extends Error {}

/**
 * A set of parsed templates sharing one namespace of `define`d names, and the functions they call.
 *
 * @example
 * const e = new Engine({ funcs: helmFuncs() });
 * e.add(parseTemplate('c/templates/a.yaml', 'x: {{ .x | default 1 }}'));
 * e.execute('c/templates/a.yaml', { x: null }); // 'x: 1'
 */
export class Engine {
  private readonly files = new Map<string, ParsedTemplate>();
  private readonly defines = new Map<string, Node[]>();
  private readonly funcs: ReadonlyMap<string, TemplateFunc>;

  constructor(inputs: { funcs: ReadonlyMap<string, TemplateFunc> }) {
    this.funcs = inputs.funcs;
  }

  /** Adds a parsed file; its defines join the shared namespace (a later definition wins, as in Helm). */
  add(t: ParsedTemplate): void {
    this.files.set(t.name, t);
    for (const [name, body] of t.defines) this.defines.set(name, body);
  }

  hasDefine(name: string): boolean {
    return this.defines.has(name);
  }

  /** Runs a file's top level with `data` as both `.` and `$`. */
  execute(fileName: string, data: unknown, depth = 0): string {
    const t = this.files.get(fileName);
    if (!t) throw new TemplateExecError(fileName, 0, 'template', `no template file named ${JSON.stringify(fileName)}`);
    return this.run(t.root, data, fileName, depth);
  }

  /** Runs a `define`d template (what `include` does). */
  executeDefine(name: string, data: unknown, caller: CallContext): string {
    const body = this.defines.get(name);
    if (!body) throw new FailSignal(`no template ${JSON.stringify(name)} associated with template ${JSON.stringify(caller.templateName)}`);
    if (caller.depth + 1 > MAX_DEPTH) throw new FailSignal(`rendering template has a nested reference name: ${name}: unable to execute template (more than ${MAX_DEPTH} levels)`);
    return this.run(body, data, caller.templateName, caller.depth + 1);
  }

  /** Parses `text` as a template in the caller's namespace and runs it (what `tpl` does). */
  executeText(text: string, data: unknown, caller: CallContext): string {
    const parsed = parseTemplate(`${caller.templateName} (tpl at line ${caller.pos.line})`, text);
    for (const [name, body] of parsed.defines) this.defines.set(name, body);
    if (caller.depth + 1 > MAX_DEPTH) throw new FailSignal(`tpl nested more than ${MAX_DEPTH} levels`);
    return this.run(parsed.root, data, caller.templateName, caller.depth + 1);
  }

  private run(nodes: readonly Node[], data: unknown, templateName: string, depth: number): string {
    const state: State = { dot: data, vars: [{ name: '$', value: data }], out: [], templateName, depth };
    this.walk(state, nodes);
    return state.out.join('');
  }

  private walk(s: State, nodes: readonly Node[]): void {
    for (const n of nodes) this.node(s, n);
  }

  /** Runs `fn` with the variables declared inside it dropped afterwards. */
  private scoped(s: State, fn: () => void): void {
    const mark = s.vars.length;
    try {
      fn();
    } finally {
      s.vars.length = mark;
    }
  }

  private node(s: State, n: Node): void {
    switch (n.t) {
      case 'text':
        s.out.push(n.text);
        return;
      case 'action': {
        const v = this.pipe(s, n.pipe);
        if (n.pipe.decl.length === 0) s.out.push(formatValue(v, '<no value>'));
        return;
      }
      case 'if':
      case 'with': {
        this.scoped(s, () => {
          for (const b of n.branches) {
            const v = this.pipe(s, b.pipe);
            if (truthy(v)) {
              if (n.t === 'with') {
                const saved = s.dot;
                s.dot = v;
                try {
                  this.walk(s, b.body);
                } finally {
                  s.dot = saved;
                }
              } else {
                this.walk(s, b.body);
              }
              return;
            }
          }
          if (n.otherwise) this.walk(s, n.otherwise);
        });
        return;
      }
      case 'range':
        this.range(s, n);
        return;
      case 'template': {
        const data = n.pipe ? this.pipe(s, n.pipe) : null;
        const ctx = this.ctx(s, n.pos);
        try {
          s.out.push(this.executeDefine(n.name, data, ctx));
        } catch (e) {
          throw this.wrap(e, n.pos, `template ${JSON.stringify(n.name)}`);
        }
        return;
      }
      case 'break':
        throw new BreakSignal();
      case 'continue':
        throw new ContinueSignal();
    }
  }

  private range(s: State, n: Extract<Node, { t: 'range' }>): void {
    const noDecl: Pipe = { ...n.pipe, decl: [] };
    const v = this.pipe(s, noDecl);
    const items: Array<[unknown, unknown]> = [];
    if (Array.isArray(v)) v.forEach((x, i) => items.push([BigInt(i), x]));
    else if (isMap(v)) for (const k of Object.keys(v).sort()) items.push([k, v[k]]);
    else if (typeof v === 'bigint') for (let i = 0n; i < v; i += 1n) items.push([i, i]);
    else if (!isNil(v)) throw this.err(n.pipe, `range can't iterate over ${formatValue(v)} (${goType(v)})`);
    if (items.length === 0) {
      if (n.otherwise) this.scoped(s, () => this.walk(s, n.otherwise!));
      return;
    }
    const saved = s.dot;
    try {
      for (const [key, value] of items) {
        let stop = false;
        this.scoped(s, () => {
          s.dot = value;
          if (n.pipe.decl.length === 1) s.vars.push({ name: n.pipe.decl[0]!, value });
          if (n.pipe.decl.length === 2) s.vars.push({ name: n.pipe.decl[0]!, value: key }, { name: n.pipe.decl[1]!, value });
          try {
            this.walk(s, n.body);
          } catch (e) {
            if (e instanceof BreakSignal) stop = true;
            else if (!(e instanceof ContinueSignal)) throw e;
          }
        });
        if (stop) break;
      }
    } finally {
      s.dot = saved;
    }
  }

  private pipe(s: State, p: Pipe): unknown {
    let value: unknown;
    let has = false;
    for (const c of p.cmds) {
      value = this.cmd(s, p, c, has ? { value } : undefined);
      has = true;
    }
    if (p.decl.length > 0) {
      const name = p.decl[0]!;
      if (p.assign) {
        const slot = findVar(s, name);
        if (!slot) throw this.err(p, `undefined variable: ${name} (assign with "=" needs an earlier ":=")`);
        slot.value = value;
      } else {
        s.vars.push({ name, value });
      }
    }
    return value;
  }

  private cmd(s: State, p: Pipe, c: Cmd, piped: { value: unknown } | undefined): unknown {
    const [head, ...rest] = c.args;
    if (head!.t === 'ident') return this.call(s, p, head!.name, rest, piped);
    const chained = (head!.t === 'dot' || head!.t === 'var' || head!.t === 'pipe') && head!.chain.length > 0;
    const v = this.arg(s, p, head!, chained);
    if (v instanceof GoMethod) {
      const args = rest.map((a) => this.arg(s, p, a));
      if (piped) args.push(piped.value);
      try {
        return v.fn(...args);
      } catch (e) {
        throw this.wrap(e, p.pos, p.text, `error calling ${v.name}`);
      }
    }
    if (rest.length > 0 || piped) {
      throw this.err(p, `can't give argument to non-function ${describe(head!)}`);
    }
    return v;
  }

  private call(s: State, p: Pipe, name: string, argNodes: readonly Arg[], piped: { value: unknown } | undefined): unknown {
    // and/or evaluate their arguments one at a time and stop at the deciding one.
    if (name === 'and' || name === 'or') {
      const thunks: Array<() => unknown> = argNodes.map((a) => () => this.arg(s, p, a));
      if (piped) thunks.push(() => piped.value);
      if (thunks.length === 0) throw this.err(p, `wrong number of args for ${name}: want at least 1 got 0`);
      let v: unknown;
      for (const th of thunks) {
        v = th();
        if (name === 'and' ? !truthy(v) : truthy(v)) return v;
      }
      return v;
    }
    const fn = this.funcs.get(name);
    if (!fn) throw this.err(p, `function "${name}" not defined`);
    const args = argNodes.map((a) => this.arg(s, p, a));
    if (piped) args.push(piped.value);
    try {
      return fn(this.ctx(s, p.pos), ...args);
    } catch (e) {
      throw this.wrap(e, p.pos, p.text, `error calling ${name}`);
    }
  }

  private ctx(s: State, pos: Pos): CallContext {
    return { engine: this, pos, templateName: s.templateName, depth: s.depth };
  }

  /** Evaluates one operand. A method at the end of a chain is returned uncalled when `asHead`. */
  private arg(s: State, p: Pipe, a: Arg, asHead = false): unknown {
    switch (a.t) {
      case 'str':
      case 'int':
      case 'float':
      case 'bool':
        return a.v;
      case 'nil':
        return null;
      case 'ident':
        // A bare function name as an argument is a call without arguments (`default (list) .x`).
        return this.call(s, p, a.name, [], undefined);
      case 'dot':
        return this.chain(p, s.dot, a.chain, '', asHead);
      case 'var': {
        const slot = findVar(s, a.name);
        if (!slot) throw this.err(p, `undefined variable: ${a.name}`);
        return this.chain(p, slot.value, a.chain, a.name, asHead);
      }
      case 'pipe': {
        const inner = this.scopedValue(s, () => this.pipe(s, a.pipe));
        return this.chain(p, inner, a.chain, '(...)', asHead);
      }
    }
  }

  private scopedValue(s: State, fn: () => unknown): unknown {
    let v: unknown;
    this.scoped(s, () => {
      v = fn();
    });
    return v;
  }

  private chain(p: Pipe, base: unknown, names: readonly string[], baseText: string, asHead: boolean): unknown {
    let cur = base;
    let path = baseText;
    for (const [i, name] of names.entries()) {
      if (cur instanceof GoMethod) cur = cur.fn();
      if (isNil(cur)) throw this.err(p, `nil pointer evaluating interface {}.${name} (${path || '.'} is nil)`);
      if (!isMap(cur)) throw this.err(p, `can't evaluate field ${name} in type ${goType(cur)} (${path || '.'})`);
      cur = Object.prototype.hasOwnProperty.call(cur, name) ? cur[name] : null;
      path += `.${name}`;
      if (cur instanceof GoMethod && !(asHead && i === names.length - 1)) cur = cur.fn();
    }
    return cur;
  }

  private err(p: Pipe, what: string): TemplateExecError {
    return new TemplateExecError(p.pos.file, p.pos.line, p.text, what);
  }

  private wrap(e: unknown, pos: Pos, action: string, prefix?: string): Error {
    if (e instanceof TemplateExecError || e instanceof TemplateFailError || e instanceof BreakSignal || e instanceof ContinueSignal) return e as Error;
    if (e instanceof FailSignal) return new TemplateFailError(pos.file, pos.line, e.message);
    if (e instanceof Error && 'code' in e && String((e as { code: unknown }).code).startsWith('ERR_HELM_')) return e;
    const msg = e instanceof Error ? e.message : String(e);
    return new TemplateExecError(pos.file, pos.line, action, prefix ? `${prefix}: ${msg}` : msg, { cause: e });
  }
}

function findVar(s: State, name: string): { name: string; value: unknown } | undefined {
  for (let i = s.vars.length - 1; i >= 0; i -= 1) if (s.vars[i]!.name === name) return s.vars[i];
  return undefined;
}

function describe(a: Arg): string {
  switch (a.t) {
    case 'dot':
      return a.chain.length ? `.${a.chain.join('.')}` : '.';
    case 'var':
      return a.name + (a.chain.length ? `.${a.chain.join('.')}` : '');
    case 'str':
      return JSON.stringify(a.v);
    case 'int':
      return a.v.toString();
    case 'float':
      return String(a.v);
    case 'bool':
      return String(a.v);
    case 'nil':
      return 'nil';
    case 'ident':
      return a.name;
    case 'pipe':
      return '(...)';
  }
}
