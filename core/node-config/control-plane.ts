/**
 * The two ways a node proxy (ztunnel, waypoint) gets certificates and configuration, read from the
 * environment in one place: the control plane when `CONTROL_PLANE_ADDRESS` is set, else standalone
 * on local files (a config file and the mesh root's key). Mixing the two is an error, so an
 * operator never wonders which one is in effect.
 */
import { controlPlaneIdentity, parseHostPort } from '../discovery/wire.js';
import type { EnvReader } from './env.js';
import { quote } from '../validation/check.js';

/** Environment variable names shared by every proxy that can use the control plane. */
export const CONTROL_PLANE_ENV = {
  address: 'CONTROL_PLANE_ADDRESS',
  tokenFile: 'NODE_TOKEN_FILE',
  rootCertFile: 'CONTROL_PLANE_ROOT_CERT_FILE',
  identity: 'CONTROL_PLANE_IDENTITY',
} as const;

/** Where certificates and configuration come from when a control plane is used. */
export interface ControlPlaneSettings {
  readonly address: { readonly host: string; readonly port: number };
  /** The bearer token (re-read at every use: tokens rotate). */
  readonly tokenFile: string;
  /** PEM root(s) the control plane's certificate chains to (its trust bundle afterwards). */
  readonly rootCertFile: string;
  /** The SPIFFE ID the control plane must present. */
  readonly identity: string;
}

/** What `readSourceMode` found. */
export interface SourceMode {
  readonly controlPlane?: ControlPlaneSettings;
  /** A standalone-only variable: its value, '' with a control plane; missing → a problem. */
  standaloneFile(name: string): string;
}

/**
 * Reads the control-plane variables; `standalone` names the variables that only standalone mode
 * uses (setting one with `CONTROL_PLANE_ADDRESS` is a problem, as is missing one without it).
 *
 * @example
 * const mode = readSourceMode(env, process.env, 'cluster.local', ['LOCAL_CONFIG_FILE', 'CA_ROOT_CERT_FILE', 'CA_ROOT_KEY_FILE']);
 * const file = mode.standaloneFile('LOCAL_CONFIG_FILE'); // '' when mode.controlPlane is set
 */
export function readSourceMode(env: EnvReader, envRecord: Readonly<Record<string, string | undefined>>, trustDomain: string, standalone: readonly string[]): SourceMode {
  const set = (n: string) => envRecord[n] !== undefined && envRecord[n] !== '';
  let controlPlane: ControlPlaneSettings | undefined;
  if (set(CONTROL_PLANE_ENV.address)) {
    const raw = envRecord[CONTROL_PLANE_ENV.address]!;
    const parsed = parseHostPort(raw);
    if (!parsed) env.problems.push(`${CONTROL_PLANE_ENV.address}=${quote(raw)} is not host:port (e.g. 10.0.0.1:15012)`);
    const mixed = standalone.filter(set);
    if (mixed.length > 0) {
      env.problems.push(`${mixed.join(', ')} ${mixed.length === 1 ? 'is' : 'are'} for standalone mode; with ${CONTROL_PLANE_ENV.address} certificates and configuration come from the control plane (unset one or the other)`);
    }
    controlPlane = Object.freeze({
      address: Object.freeze(parsed ?? { host: '', port: 0 }),
      tokenFile: env.str(CONTROL_PLANE_ENV.tokenFile),
      rootCertFile: env.str(CONTROL_PLANE_ENV.rootCertFile),
      identity: env.str(CONTROL_PLANE_ENV.identity, controlPlaneIdentity(trustDomain)),
    });
  }
  return {
    ...(controlPlane ? { controlPlane } : {}),
    standaloneFile(name: string): string {
      if (controlPlane) return '';
      const v = envRecord[name];
      if (v === undefined || v === '') {
        env.problems.push(`${name} is required (or set ${CONTROL_PLANE_ENV.address} to use the control plane)`);
        return '';
      }
      return v;
    },
  };
}
