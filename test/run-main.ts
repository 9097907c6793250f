/** Runs the CLI in-process with captured output and no terminal (shared by unit and kernel tests). */
import { main } from '../src/cli/main.js';

export async function runMain(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    interactive: false,
    env: {},
    confirm: () => Promise.resolve(false),
  });
  return { code, stdout, stderr };
}
