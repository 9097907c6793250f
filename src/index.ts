/**
 * lowport's library API: the same calls the CLI makes. Re-exports only, so the
 * public surface is visible in one file.
 */
export { apply, type ApplyResult, type EditOutcome, type UnresolvedReport } from './engine/apply.js';
export { grant, revoke, revokeAll, reserve, unreserve, type GrantSpec } from './engine/edits.js';
export { list, type ListResult, type ListWarning, type LiveRule } from './engine/list.js';
export type { NameBindings, UnresolvedRule } from './engine/resolve.js';
export { off, type OffResult } from './engine/off.js';
export { DEFAULT_PIN_DIR, DEFAULT_POLICY, type LowportOptions } from './engine/target.js';
export type { AttachedProgram } from './engine/live.js';
export { gcRedirects, listRedirects, persistForward, restorePersisted, unpersistForward, type ForwardEntry } from './forward/redirect.js';
export { encodeV1, encodeV2, type ConnectionInfo } from './forward/proxy-protocol.js';
export { LowportError, PolicyError, UsageError, formatDiagnostic, type Diagnostic, type ErrorCode } from './errors.js';
export { SyscallError } from './kernel/libc.js';
export { parsePolicy } from './policy/parse.js';
export { parsePortSpec, formatPorts } from './policy/ports.js';
export type { PolicyDocument, PortItem, Principal, Protocol, Rule } from './policy/types.js';
