/** Where the CLI writes and what it knows of its surroundings; tests pass their own. */
import { escapeControl } from '../text.js';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** True when stdin is a terminal, so the CLI may ask a question. */
  interactive: boolean;
  env: NodeJS.ProcessEnv;
  /** Asks a yes/no question on the terminal; only called when interactive. */
  confirm: (question: string) => Promise<boolean>;
}

/**
 * The last guard before a terminal: text from others is escaped where it is
 * put into a message, and whatever still holds a control character other than
 * a line break or a tab (lowport writes no escape sequences of its own) is
 * escaped here, so no terminal sequence reaches root's screen. Pipes and files
 * get the text as it is (`lowport unit > x.service`).
 */
export function terminalText(text: string): string {
  return text
    .split('\n')
    .map((line) => line.split('\t').map((part) => (/[^\x20-\x7e\u00a0-\u061b\u061d-\u200d\u2010-\u2027\u202f-\u2065\u206a-\uffff]/.test(part) ? escapeControl(part) : part)).join('\t'))
    .join('\n');
}

function writer(stream: NodeJS.WriteStream): (text: string) => void {
  return stream.isTTY === true ? (t) => stream.write(terminalText(t)) : (t) => stream.write(t);
}

export function processIo(): CliIo {
  return {
    stdout: writer(process.stdout),
    stderr: writer(process.stderr),
    interactive: process.stdin.isTTY === true,
    env: process.env,
    confirm: async (question) => {
      const { createInterface } = await import('node:readline/promises');
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      try {
        const answer = (await rl.question(`${question} [Y/n] `)).trim().toLowerCase();
        return answer === '' || answer === 'y' || answer === 'yes';
      } finally {
        rl.close();
      }
    },
  };
}
