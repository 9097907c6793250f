/** Where the CLI writes and what it knows of its surroundings; tests pass their own. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** True when stdin is a terminal, so the CLI may ask a question. */
  interactive: boolean;
  env: NodeJS.ProcessEnv;
  /** Asks a yes/no question on the terminal; only called when interactive. */
  confirm: (question: string) => Promise<boolean>;
}

export function processIo(): CliIo {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
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
