import t from 'tap';
import { loadConfig } from '../../ztunnel/config.js';

const required = { NODE_NAME: 'n1', LOCAL_CONFIG_FILE: '/c.yaml', CA_ROOT_CERT_FILE: '/r.pem', CA_ROOT_KEY_FILE: '/k.pem' };

t.test('defaults are Istio\'s ports and safe bindings', async (t) => {
  const c = loadConfig(required);
  t.match(c, {
    outboundPort: 15001,
    inboundPort: 15008,
    socks5Port: 0,
    adminPort: 15000,
    metricsPort: 15020,
    readinessPort: 15021,
    address: '0.0.0.0',
    adminAddress: '127.0.0.1',
    statsAddress: '0.0.0.0',
    trustDomain: 'cluster.local',
    drainTimeoutMs: 25_000,
    certRetentionMs: 300_000,
  });
  t.ok(Object.isFrozen(c));
});

t.test('every problem is reported at once', async (t) => {
  t.throws(
    () => loadConfig({ SOCKS5_PORT: '70000', INBOUND_PORT: 'x', ADMIN_ADDRESS: 'localhost', LOG_LEVEL: 'loud', DRAIN_TIMEOUT_SECONDS: '-1' }),
    {
      code: 'ERR_CONFIG_INVALID',
      problems: [
        'LOG_LEVEL="loud" is not one of trace, debug, info, warn, error, silent',
        'NODE_NAME is required',
        'LOCAL_CONFIG_FILE is required',
        'CA_ROOT_CERT_FILE is required',
        'CA_ROOT_KEY_FILE is required',
        'ADMIN_ADDRESS="localhost" is not an IPv4 or IPv6 address',
        'INBOUND_PORT="x" is not a port (0 to disable, or 1-65535)',
        'SOCKS5_PORT="70000" is not a port (0 to disable, or 1-65535)',
        'DRAIN_TIMEOUT_SECONDS="-1" is not a positive number',
      ],
    },
  );
});

t.test('listeners on one address must use different ports', async (t) => {
  t.throws(() => loadConfig({ ...required, SOCKS5_PORT: '15008' }), { message: /must differ/ });
});

t.test('CERT_RETENTION_SECONDS: a positive number of seconds', async (t) => {
  t.equal(loadConfig({ ...required, CERT_RETENTION_SECONDS: '1.5' }).certRetentionMs, 1500);
  t.throws(() => loadConfig({ ...required, CERT_RETENTION_SECONDS: '0' }), { message: /CERT_RETENTION_SECONDS="0" is not a positive number/ });
});
