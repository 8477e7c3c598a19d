import { sync, type Layer } from '../context.js';
import { requestAuthenticationsFor, type GatewayRef } from '../authz.js';
import { JwtRejectedError, authenticate, type JwksFetcher } from '../jwt.js';
import { jwtRejected } from '../status.js';

/**
 * RequestAuthentication: the JWTs of a request are checked against the rules that apply
 * (waypoint/jwt.ts) before AuthorizationPolicy sees it. A token that does not verify gets 401
 * with Envoy's reason; a request without a token goes on with no identity (`ctx.auth` unset) and
 * is left to AuthorizationPolicy, as in Istio. The verified identity is `ctx.auth`, which the
 * authz layer passes on as `request.auth.*`.
 */
export const jwtLayer =
  (gateway: () => GatewayRef, jwks: JwksFetcher): Layer =>
  (next) =>
  sync((ctx) => {
    const policies = requestAuthenticationsFor(ctx.stream.state, gateway(), ctx.stream.dstService);
    if (policies.length === 0) return next(ctx);
    return authenticate(policies, { headers: ctx.headers, path: ctx.path }, jwks).then(
      (auth) => {
        if (auth) {
          ctx.auth = auth;
          ctx.log['request_principal'] = auth.principal;
        }
        return next(ctx);
      },
      (err: unknown) => {
        if (err instanceof JwtRejectedError) throw jwtRejected(err.message, err.reason);
        throw err;
      },
    );
  });
