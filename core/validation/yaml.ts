/**
 * The one way the mesh reads YAML a user wrote (manifests, the standalone file, the node list, the
 * agent's desired-state file), with the limits an API server has, checked before any other work:
 *
 * - nesting deeper than `YAML_LIMITS.maxDepth` is a syntax error (js-yaml's own limit, kept at its
 *   default of 100: Kubernetes objects nest about 15 deep);
 * - at most `YAML_LIMITS.maxAliases` aliases (`*name`) per text: anchors are legal YAML and some
 *   people template with them, but each alias may point at a structure holding more aliases, so a
 *   few hundred bytes can stand for gigabytes (the "billion laughs");
 * - each document, expanded as the API server would store it, at most `YAML_LIMITS.maxDocumentBytes`
 *   (1.5 MiB, etcd's request limit, which bounds every Kubernetes object). The size is counted
 *   approximately (string lengths plus a few bytes per node, as JSON writes them) by a walk that
 *   stops as soon as the budget is spent, so the check costs at most the budget whatever the input.
 *
 * An oversize document is reported with its index; the others of the same text are still returned
 * (`loadYamlDocuments` gives `undefined` in its place and a `DocumentTooLarge`).
 */
import { loadAll, YAMLException } from 'js-yaml';

export const YAML_LIMITS = Object.freeze({
  maxDepth: 100,
  maxAliases: 1_000,
  maxDocumentBytes: 1.5 * 1024 * 1024,
  /**
   * Longest text of one document, checked before it is parsed: the API server's request limit
   * (3 MiB). YAML text is longer than the object it writes (indentation, comments), hence the
   * larger figure; parsing tens of MiB would take seconds before the object limit could refuse it.
   */
  maxDocumentText: 3 * 1024 * 1024,
});

/** A document over `YAML_LIMITS.maxDocumentBytes`, expanded. `index` counts from 0. */
export interface DocumentTooLarge {
  readonly index: number;
  readonly message: string;
}

export interface LoadedYaml {
  /** One entry per document; `undefined` for an empty document and for one in `tooLarge`. */
  readonly docs: readonly unknown[];
  readonly tooLarge: readonly DocumentTooLarge[];
}

/**
 * Parses every document of `text`.
 *
 * @throws YAMLException on a syntax error, nesting beyond the limit, or too many aliases; the
 *   caller reports it with its mark (line and column), as for any syntax error.
 */
export function loadYamlDocuments(text: string, filename: string): LoadedYaml {
  const tooLarge: DocumentTooLarge[] = [];
  const raw = text.length <= YAML_LIMITS.maxDocumentText ? parse(text, filename) : parseLargeText(text, filename, tooLarge);
  const docs = raw.map((doc, index) => {
    if (doc === TEXT_TOO_LARGE) return undefined;
    if (exceedsBudget(doc, YAML_LIMITS.maxDocumentBytes)) {
      tooLarge.push({ index, message: `the document is larger than ${YAML_LIMITS.maxDocumentBytes} bytes once its aliases are expanded (the API server's object limit is 1.5 MiB); nothing of it was read` });
      return undefined;
    }
    return doc;
  });
  return { docs, tooLarge };
}

const TEXT_TOO_LARGE = Symbol('text too large');

function parse(text: string, filename: string): unknown[] {
  return loadAll(text, { filename, maxAliases: YAML_LIMITS.maxAliases, maxDepth: YAML_LIMITS.maxDepth });
}

/**
 * A text over `maxDocumentText` may hold many small documents (a large manifests file) or one
 * huge one. Its document markers (`---` at the start of a line, which YAML reserves for them) cut
 * it into one piece per document; a piece over the limit is replaced, unparsed, by an empty
 * document with as many lines (so every later line and error position stays where it was) and
 * `TEXT_TOO_LARGE` takes its place in the result. The rest is parsed in one go.
 */
function parseLargeText(text: string, filename: string, tooLarge: DocumentTooLarge[]): unknown[] {
  const starts = [0];
  for (const m of text.matchAll(/^---(?=[ \t\r\n]|$)/gm)) if (m.index > 0) starts.push(m.index);
  const pieces = starts.map((start, i) => text.slice(start, starts[i + 1] ?? text.length));
  const over = new Set(pieces.flatMap((piece, i) => (piece.length > YAML_LIMITS.maxDocumentText ? [i] : [])));
  if (over.size === 0) return parse(text, filename);
  const kept = pieces.map((piece, i) => (over.has(i) ? `---${'\n'.repeat(Math.max(1, countLines(piece)))}` : piece));
  // With a piece replaced, the i-th piece is the i-th document, except when the first piece holds
  // no document (only comments), which parses to nothing.
  const docs = parse(kept.join(''), filename);
  const shift = docs.length === pieces.length ? 0 : 1;
  for (const i of over) {
    const index = i - shift;
    tooLarge.push({ index, message: `the document's text is ${pieces[i]!.length} bytes, over the ${YAML_LIMITS.maxDocumentText} an API server takes in one request; it was not read` });
    docs[index] = TEXT_TOO_LARGE;
  }
  return docs;
}

function countLines(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i !== -1; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

/** The same for a text that must hold one document (or none): the document, or a thrown YAMLException. */
export function loadYamlDocument(text: string, filename: string): unknown {
  const { docs, tooLarge } = loadYamlDocuments(text, filename);
  if (tooLarge[0]) throw new YAMLException(tooLarge[0].message);
  if (docs.length > 1) throw new YAMLException(`expected one YAML document, found ${docs.length} (separated by ---)`);
  return docs[0];
}

/**
 * Whether `value` written out as JSON would take more than `budget` bytes (approximately). Shared
 * references (aliases) are counted each time they are reached, as the API server would store them;
 * the walk uses an explicit stack (no recursion depth) and stops once the budget is spent.
 */
function exceedsBudget(value: unknown, budget: number): boolean {
  let left = budget;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    left -= 4; // a separator, quotes, or a short scalar
    if (typeof v === 'string') left -= v.length;
    else if (Array.isArray(v)) {
      for (const x of v) stack.push(x);
    } else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        left -= k.length;
        stack.push(x);
      }
    }
    if (left < 0) return true;
  }
  return false;
}
