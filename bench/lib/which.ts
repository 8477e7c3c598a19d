import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

/**
 * Full path of an executable found on PATH, or undefined.
 *
 * @example
 * await which('proxychains4'); // '/usr/bin/proxychains4'
 */
export async function which(program: string, path = process.env['PATH'] ?? ''): Promise<string | undefined> {
  for (const dir of path.split(delimiter).filter(Boolean)) {
    const candidate = join(dir, program);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}
