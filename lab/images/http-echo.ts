#!/usr/bin/env node
/**
 * `lab/http-echo`: an HTTP server for lab pods. Listens on $PORT (default 8080) and answers every
 * request with JSON naming the pod that answered ($POD_NAME, $POD_NAMESPACE, $NODE_NAME,
 * $VERSION). With $UPSTREAMS (comma-separated URLs) it first calls each of them and includes
 * their answers: a frontend in one line of config.
 */
import http from 'node:http';

const port = Number(process.env['PORT'] ?? 8080);
const upstreams = (process.env['UPSTREAMS'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const me = {
  pod: process.env['POD_NAME'] ?? 'unknown',
  namespace: process.env['POD_NAMESPACE'] ?? 'default',
  node: process.env['NODE_NAME'] ?? 'unknown',
  ...(process.env['VERSION'] ? { version: process.env['VERSION'] } : {}),
};

function call(url: string): Promise<unknown> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve({ url, status: res.statusCode, answer: JSON.parse(body) as unknown });
        } catch {
          resolve({ url, status: res.statusCode, answer: body });
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ url, error: err.message }));
  });
}

const server = http.createServer((req, res) => {
  void Promise.all(upstreams.map(call)).then((calls) => {
    const failed = calls.some((c) => (c as { error?: string; status?: number }).error !== undefined || ((c as { status?: number }).status ?? 0) >= 400);
    res.writeHead(failed ? 502 : 200, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify({ ...me, path: req.url, ...(upstreams.length ? { upstreams: calls } : {}) })}\n`);
  });
});
server.listen(port, '0.0.0.0', () => process.stdout.write(`http-echo ${me.namespace}/${me.pod} listening on ${port}\n`));
process.once('SIGTERM', () => server.close(() => process.exit(0)));
