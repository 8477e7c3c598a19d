#!/usr/bin/env node
/**
 * `lab/get [--quiet] [--count N] URL`: a small curl for pods (image name `lab/get`, or a command of
 * `lab exec`). Prints the body (and, without --quiet, the status line on stderr); exits 1 on a
 * connection error or a status >= 400.
 */
import http from 'node:http';

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within 10 s`)));
    req.on('error', reject);
  });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let quiet = false;
  let count = 1;
  let url: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--quiet' || a === '-q') quiet = true;
    else if (a === '--count' || a === '-n') count = Number(args[++i]);
    else url = a;
  }
  if (!url || !Number.isInteger(count) || count < 1) {
    process.stderr.write('usage: get [--quiet] [--count N] URL\n');
    process.exit(2);
  }
  if (!/^https?:\/\//.test(url)) url = `http://${url}`;
  let failed = false;
  for (let i = 0; i < count; i++) {
    try {
      const r = await get(url);
      if (!quiet) process.stderr.write(`HTTP ${r.status}\n`);
      process.stdout.write(r.body.endsWith('\n') || r.body === '' ? r.body : `${r.body}\n`);
      if (r.status >= 400) failed = true;
    } catch (err) {
      process.stderr.write(`get ${url}: ${(err as Error).message}\n`);
      failed = true;
    }
  }
  process.exit(failed ? 1 : 0);
}

void main();
