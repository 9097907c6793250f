/** `lowport off`: every grant ends at once, then lowport's program, links, map and pins go. The policy file stays. */
import { removeAll } from './live.js';
import { kernelTarget, type LowportOptions } from './target.js';

export interface OffResult {
  pinDir: string;
  /** False when nothing of lowport's was live there. */
  removed: boolean;
}

export function off(options: LowportOptions = {}): OffResult {
  const target = kernelTarget(options);
  return { pinDir: target.pinDir, ...removeAll(target) };
}
