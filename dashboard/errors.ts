/**
 * The dashboard's errors: one class, a stable `code` per failure. A scrape error never leaves the
 * scraper: it marks its source stale in the payload (aggregate.ts), so one bad source never fails a page.
 */
import { MeshError } from '../core/errors.js';

export const DASHBOARD_ERROR_CODES = {
  /** A metrics body that is not Prometheus text (no sample line parsed, or a line past the limits). */
  BAD_METRICS: 'ERR_DASHBOARD_BAD_METRICS',
  /** A body larger than the scrape's byte limit. */
  TOO_LARGE: 'ERR_DASHBOARD_SCRAPE_TOO_LARGE',
  /** No complete answer within the scrape's time limit. */
  TIMEOUT: 'ERR_DASHBOARD_SCRAPE_TIMEOUT',
  /** Connection refused, reset, an HTTP status other than 200, or no lab state to read. */
  UNREACHABLE: 'ERR_DASHBOARD_SCRAPE_UNREACHABLE',
} as const;

export type DashboardErrorCode = (typeof DASHBOARD_ERROR_CODES)[keyof typeof DASHBOARD_ERROR_CODES];

export class DashboardError extends MeshError {
  constructor(code: DashboardErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
