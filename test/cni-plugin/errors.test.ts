// The error-code table of docs/cni.md must list exactly the registry of cni-plugin/cni/errors.ts.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AGENT_ERROR_CODES } from '../../cni-plugin/api.js';
import { CNI_ERRORS, cniCodeForAgentError } from '../../cni-plugin/cni/errors.js';
import { REPO } from './lab.js';

t.test('docs/cni.md lists every CNI error code with its number', async (t) => {
  const doc = await readFile(join(REPO, 'docs/cni.md'), 'utf8');
  const rows = [...doc.matchAll(/^\| (\d+) \| `(ERR_CNI_[A-Z_]+)` \|/gm)].map((m) => [m[2]!, Number(m[1])] as const);
  t.same(Object.fromEntries(rows), { ...CNI_ERRORS });
  const wrapper = await readFile(join(REPO, 'cni-plugin/bin/ambient-cni'), 'utf8');
  t.match(wrapper, `"code":${CNI_ERRORS.ERR_CNI_NODE_MISSING}`, 'the shell wrapper uses the registered code');
});

t.test('every agent error code maps to a CNI code, unknown ones to the protocol error', async (t) => {
  t.same(
    Object.fromEntries(Object.values(AGENT_ERROR_CODES).map((c) => [c, cniCodeForAgentError(c)])),
    {
      ERR_AGENT_NOT_READY: 'ERR_CNI_TRY_AGAIN',
      ERR_BAD_REQUEST: 'ERR_CNI_AGENT_PROTOCOL',
      ERR_NOT_FOUND: 'ERR_CNI_AGENT_PROTOCOL',
      ERR_POD_CGROUP_NOT_FOUND: 'ERR_CNI_CGROUP_NOT_FOUND',
      ERR_ENROLMENT_FAILED: 'ERR_CNI_ENROLMENT_FAILED',
      ERR_NOT_ENROLLED: 'ERR_CNI_NOT_ENROLLED',
    },
  );
  t.equal(cniCodeForAgentError('ERR_FROM_THE_FUTURE'), 'ERR_CNI_AGENT_PROTOCOL');
});
