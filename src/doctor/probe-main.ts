/**
 * `lowport doctor --user U`, run by root, tests the binds as U: this script is
 * started as U (doctor.ts probeAs, through os/launch.ts) and prints the attempts as JSON.
 */
import { bindTest } from './bind-test.js';

const ports = (process.argv[2] ?? '')
  .split(',')
  .filter((p) => p !== '')
  .map(Number);
process.stdout.write(JSON.stringify(ports.map((port) => ({ port, attempts: bindTest(port) }))));
