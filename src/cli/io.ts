/** Where the CLI writes and what it knows of its surroundings; tests pass their own. */
import { terminalText } from '../text.js';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** True when stdin is a terminal, so the CLI may ask a question. */
  interactive: boolean;
  env: NodeJS.ProcessEnv;
  /** Asks a yes/no question on the terminal; only called when interactive. */
  confirm: (question: string) => Promise<boolean>;
}

/** See terminalText: the last guard before a terminal; pipes and files get the text as it is (`lowport unit > x.service`). */
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
