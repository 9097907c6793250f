/**
 * lowport's library API: the same calls the CLI makes. Re-exports only, so the
 * public surface is visible in one file.
 */
export { apply, type ApplyResult, type EditOutcome, type UnresolvedReport } from './ops/apply.js';
export { grant, revoke, revokeAll, reserve, unreserve, type GrantSpec } from './ops/edits.js';
export { list, type ListResult, type ListWarning, type LiveRule, type ShadowedGrant } from './ops/list.js';
export type { NameBindings, UnresolvedRule } from './grants/resolve.js';
export { off, type OffResult } from './ops/off.js';
export { DEFAULT_PIN_DIR, DEFAULT_POLICY, type LowportOptions } from './grants/target.js';
export type { AttachedProgram } from './grants/live.js';
export { gcRedirects, listRedirects, restorePersisted, type ForwardEntry } from './forward/redirect.js';
export { persistForward, unpersistForward, type PersistResult } from './ops/forward.js';
export { encodeV1, encodeV2, type ConnectionInfo } from './forward/proxy-protocol.js';
export { LowportError, PolicyError, UsageError, type ErrorCode } from './errors.js';
export { formatDiagnostic, formatDiagnostics, type Diagnostic, type RelatedMark, type Severity, type Span } from './diagnostic.js';
export { SyscallError } from './os/libc.js';
export { parsePolicy } from './policy/parse.js';
export { parsePortSpec, formatPorts } from './policy/ports.js';
export type { PolicyDocument, PortItem, Principal, Protocol, Rule } from './policy/types.js';
