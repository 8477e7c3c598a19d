import t from 'tap';
import { EnvReader, LOG_LEVELS } from '../../../core/node-config/env.js';

t.test('typed reads with fallbacks', async (t) => {
  const env = new EnvReader({ A: 'x', P: '15008', I: '10.0.0.1', N: '2.5', L: 'debug' });
  t.equal(env.str('A'), 'x');
  t.equal(env.str('MISSING', 'd'), 'd');
  t.equal(env.port('P', 1), 15008);
  t.equal(env.port('NOPE', 15000), 15000);
  t.equal(env.ip('I'), '10.0.0.1');
  t.equal(env.positive('N', 1), 2.5);
  t.equal(env.oneOf('L', LOG_LEVELS, 'info'), 'debug');
  t.doesNotThrow(() => env.finish());
});

t.test('every problem is collected, then reported once', async (t) => {
  const env = new EnvReader({ P: '0', Q: '99999', I: 'localhost', N: '0', L: 'loud' });
  env.str('REQ');
  env.port('P', 1, false);
  env.port('Q', 1);
  env.ip('I');
  env.positive('N', 1);
  env.oneOf('L', LOG_LEVELS, 'info');
  t.throws(() => env.finish(), {
    code: 'ERR_CONFIG_INVALID',
    problems: [
      'REQ is required',
      'P="0" is not a port (1-65535)',
      'Q="99999" is not a port (0 to disable, or 1-65535)',
      'I="localhost" is not an IPv4 or IPv6 address',
      'N="0" is not a positive number',
      'L="loud" is not one of trace, debug, info, warn, error, silent',
    ],
  });
});

t.test('issue 19: a bad value is shown escaped and cut, whatever the variable holds', async (t) => {
  const env = new EnvReader({ P: `8\u202e0`, I: 'x'.repeat(128 * 1024), L: 'info\u001b[2J' });
  env.port('P', 1);
  env.ip('I');
  env.oneOf('L', LOG_LEVELS, 'info');
  t.throws(() => env.finish(), {
    code: 'ERR_CONFIG_INVALID',
    problems: [
      'P="8\\u202e0" is not a port (0 to disable, or 1-65535)',
      `I="${'x'.repeat(100)}"… (131072 characters) is not an IPv4 or IPv6 address`,
      'L="info\\u001b[2J" is not one of trace, debug, info, warn, error, silent',
    ],
  });
});

