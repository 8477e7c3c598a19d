import http from 'node:http';

/**
 * Sum of every series of `name` in a Prometheus text exposition; undefined when the metric is
 * absent.
 *
 * @example
 * sumMetric('istio_tcp_sent_bytes_total{reporter="source"} 42\n', 'istio_tcp_sent_bytes_total'); // 42
 */
export function sumMetric(text: string, name: string): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue; // a longer name with the same prefix
    const value = Number(rest.slice(rest.lastIndexOf('}') + 1).trim().split(/\s+/)[0]);
    if (Number.isFinite(value)) total = (total ?? 0) + value;
  }
  return total;
}

/** GETs a metrics page; undefined when it cannot be fetched. */
export function fetchText(url: string, timeoutMs = 2_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        resolve(undefined);
        return;
      }
      let body = '';
      res.setEncoding('utf8').on('data', (s: string) => (body += s));
      res.on('end', () => resolve(body));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}
