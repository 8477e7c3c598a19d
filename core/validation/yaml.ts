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
  const raw = loadAll(text, { filename, maxAliases: YAML_LIMITS.maxAliases, maxDepth: YAML_LIMITS.maxDepth });
  const tooLarge: DocumentTooLarge[] = [];
  const docs = raw.map((doc, index) => {
    if (exceedsBudget(doc, YAML_LIMITS.maxDocumentBytes)) {
      tooLarge.push({ index, message: `the document is larger than ${YAML_LIMITS.maxDocumentBytes} bytes once its aliases are expanded (the API server's object limit is 1.5 MiB); nothing of it was read` });
      return undefined;
    }
    return doc;
  });
  return { docs, tooLarge };
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
