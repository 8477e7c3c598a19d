// The agent process: a bad environment stops it before it touches the kernel, naming every variable.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { AGENT_MAIN } from '../lab.js';

t.test('a bad environment exits 2 with every problem', { skip: existsSync(AGENT_MAIN) ? false : 'dist/ is not built (npm run build)' }, async (t) => {
  const child = spawn(process.execPath, [AGENT_MAIN], { env: { PATH: process.env['PATH'] ?? '', ZTUNNEL_IP: 'nope', CGROUP_DRIVER: 'template' } });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const [code] = (await once(child, 'exit')) as [number];
  t.equal(code, 2);
  t.match(err, /NODE_NAME is required/);
  t.match(err, /ZTUNNEL_IP="nope" is not an IPv4 address/);
  t.match(err, /ZTUNNEL_CGROUP is required/);
  t.match(err, /CGROUP_TEMPLATE is required with CGROUP_DRIVER=template/);
});
