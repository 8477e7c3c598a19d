/** The failures the agent answers to the plugin (api.ts: `AGENT_ERROR_CODES`); server.ts maps them to responses. */
import { MeshError } from '../../core/errors.js';
import { AGENT_ERROR_CODES } from '../api.js';

/** A failure answered to the plugin; `agentCode` and `status` go on the wire (api.ts). */
export class AgentApiError extends MeshError {
  readonly agentCode: string;
  readonly status: number;
  constructor(agentCode: string, status: number, message: string, options?: { cause?: unknown }) {
    super(agentCode, message, options);
    this.agentCode = agentCode;
    this.status = status;
  }
}

/** 503: the runtime retries the call. */
export const notReady = (why: string) => new AgentApiError(AGENT_ERROR_CODES.notReady, 503, `the node agent is not ready: ${why}; retry shortly`);
