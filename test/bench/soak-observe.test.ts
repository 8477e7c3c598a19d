import t from 'tap';
import { countByLabel, frequentLogMessages } from '../../bench/lib/soak/observe.js';

t.test('countByLabel sums every series of a metric per label value', async (t) => {
  const page = [
    '# TYPE istio_tcp_connections_opened_total counter',
    'istio_tcp_connections_opened_total{reporter="source",response_flags="-"} 120',
    'istio_tcp_connections_opened_total{reporter="destination",response_flags="-"} 3',
    'istio_tcp_connections_opened_total{reporter="source",response_flags="CONNECT"} 1',
    'istio_tcp_connections_opened_total_other{response_flags="-"} 99',
    'istio_tcp_connections_closed_total{response_flags="-"} 7',
  ].join('\n');
  t.same(countByLabel(page, 'istio_tcp_connections_opened_total', 'response_flags'), { '-': 123, CONNECT: 1 });
  t.same(countByLabel('', 'istio_tcp_connections_opened_total', 'response_flags'), {});
});

t.test('frequentLogMessages groups pino lines by message, flags, error and code', async (t) => {
  const refused = JSON.stringify({ level: 40, msg: 'connection refused', response_flags: 'CONNECT', error: 'hbone connection failed', code: 'ERR_HBONE_CONNECT' });
  const tail = ['level":40,"msg":"cut', refused, refused, JSON.stringify({ msg: 'socks5 handshake failed', error: 'client closed' }), 'not json', ''].join('\n');
  t.same(frequentLogMessages(tail), [
    { message: 'connection refused: flags CONNECT: hbone connection failed: ERR_HBONE_CONNECT', count: 2 },
    { message: 'socks5 handshake failed: client closed', count: 1 },
    { message: 'not json', count: 1 },
  ]);
  t.same(frequentLogMessages(refused), [{ message: 'connection refused: flags CONNECT: hbone connection failed: ERR_HBONE_CONNECT', count: 1 }], 'a one-line log is kept');
});
