import { sync, type Layer } from '../context.js';
import { authorizeRequest } from '../../core/authz/evaluate.js';
import { policiesFor, type GatewayRef } from '../authz.js';
import { denied } from '../status.js';

/**
 * L7 AuthorizationPolicy: denied requests get 403 `RBAC: access denied` (flag `RBAC`) before any
 * routing work; AUDIT matches are named in the access log.
 */
export const authzLayer =
  (gateway: () => GatewayRef): Layer =>
  (next) =>
  sync((ctx) => {
    const s = ctx.stream;
    const policies = policiesFor(s.state, gateway(), s.dstService);
    if (policies.length === 0) return next(ctx);
    const q = ctx.path.indexOf('?');
    const d = authorizeRequest(policies, {
      sourcePrincipal: s.srcIdentity,
      sourceIp: s.srcIp,
      destinationIp: s.dstIp,
      destinationPort: s.dstPort,
      http: { host: ctx.authority, method: ctx.method, path: q === -1 ? ctx.path : ctx.path.slice(0, q), headers: ctx.headers, ...(ctx.auth ? { auth: ctx.auth } : {}) },
    });
    if (d.audit.length > 0) ctx.log['audit'] = d.audit;
    if (d.policy) ctx.log['policy'] = d.policy;
    if (!d.allowed) throw denied(d.reason);
    return next(ctx);
  });
