/**
 * A thread of the fuzz worker that takes the main thread's JavaScript stack when an input runs
 * past its limit: a busy main thread handles no signal or message, but the inspector pauses it
 * between two instructions (Debugger.pause over `connectToMainThread`). The frames go to a file
 * the parent reads before it kills the worker; the main thread stays paused until then.
 */
import { Session } from 'node:inspector';
import { workerData } from 'node:worker_threads';
import { writeFileSync } from 'node:fs';

interface Data {
  /** [0]: the id of the input running on the main thread, 0 when idle. */
  readonly shared: Int32Array;
  readonly limitMs: number;
  readonly out: string;
}
const { shared, limitMs, out } = workerData as Data;

interface CallFrame {
  readonly functionName: string;
  readonly location: { readonly scriptId: string; readonly lineNumber: number; readonly columnNumber: number };
}

const session = new Session();
session.connectToMainThread();
// CallFrame.url is empty for ES modules: the script's URL comes with its scriptParsed event,
// which Debugger.enable replays for every script already loaded.
const urls = new Map<string, string>();
session.on('Debugger.scriptParsed', (m: { params: { scriptId: string; url: string } }) => urls.set(m.params.scriptId, m.params.url));
let watching = 0;
let since = 0;
let taken = 0;
// The parent kills a worker that overruns; if the parent itself is gone (killed, crashed), nobody
// will, and a worker paused here or spinning on an input would outlive the run: it ends itself.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.kill(process.pid, 'SIGKILL');
  const id = Atomics.load(shared, 0);
  if (id !== watching) {
    watching = id;
    since = Date.now();
    return;
  }
  // Taken a little before the parent's own limit, so the stack is there when it looks.
  if (id === 0 || taken === id || Date.now() - since < limitMs * 0.8) return;
  taken = id;
  session.once('Debugger.paused', (m: { params: { callFrames: CallFrame[] } }) => {
    const frames = m.params.callFrames.map((f) => `at ${f.functionName || '<anonymous>'} (${urls.get(f.location.scriptId) ?? '?'}:${f.location.lineNumber + 1}:${f.location.columnNumber + 1})`);
    writeFileSync(out, JSON.stringify({ id, frames }));
  });
  session.post('Debugger.enable', () => session.post('Debugger.pause'));
}, 50);
