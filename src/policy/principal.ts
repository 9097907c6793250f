/**
 * Who a rule is for, as text: names are checked for shape only. Resolving
 * them to ids (NSS) is the engine's job, so `user alice` and `user 1000` are
 * different principals here even if they are the same account.
 */
import { PolicySpecError } from './spec-error.js';
import type { Principal } from './types.js';

export { PolicySpecError } from './spec-error.js';

/** (uid_t)-1 means "no id" to chown(2) and setresuid(2), so the largest real id is one less. */
export const MAX_ID = 4294967294;

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*\$?$/;

/**
 * Checks a user or group name or decimal id and returns it in normal form.
 * Throws PolicySpecError over the whole text saying what a valid one looks like.
 */
export function parsePrincipalName(kind: 'user' | 'group', text: string): string {
  if (/^[0-9]+$/.test(text)) {
    if (text.length > 10 || Number(text) > MAX_ID) {
      throw new PolicySpecError(text, 0, text.length, `${kind} id ${text} is out of range: ids are 0-${MAX_ID}`);
    }
    if (text.length > 1 && text.startsWith('0')) {
      throw new PolicySpecError(text, 0, text.length, `${kind} id '${text}' has a leading zero: write ${Number(text)}`);
    }
    return text;
  }
  if (!NAME.test(text)) {
    throw new PolicySpecError(
      text,
      0,
      text.length,
      `'${text}' is not a valid ${kind} name: a name starts with a letter or '_', ` +
        `then letters, digits, '_', '.' or '-', and may end in '$'; an id is a number 0-${MAX_ID}`,
    );
  }
  return text;
}

/** Validates a principal built outside the parser (the CLI) and returns a normalized copy. */
export function normalizePrincipal(principal: Principal): Principal {
  if (principal.kind === 'everyone') return { kind: 'everyone' };
  return { kind: principal.kind, name: parsePrincipalName(principal.kind, principal.name) };
}

/** Textual equality: same kind and same name as written (ids without leading zeros). */
export function samePrincipal(a: Principal, b: Principal): boolean {
  return principalKey(a) === principalKey(b);
}

/** A string equal for two principals exactly when samePrincipal says they are the same. */
export function principalKey(p: Principal): string {
  return p.kind === 'everyone' ? 'everyone' : `${p.kind}:${canonicalName(p.name)}`;
}

function canonicalName(name: string): string {
  return /^[0-9]+$/.test(name) ? String(Number(name)) : name;
}
