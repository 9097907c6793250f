/** Waiting for a cgroup to empty: cgroup.events changes (and inotify reports it) when `populated` flips. */
import { watch } from 'node:fs';
import { join } from 'node:path';
import { cgroupPopulated } from './cgroup.js';

export function waitUntilEmpty(dir: string): Promise<void> {
  if (!cgroupPopulated(dir)) return Promise.resolve();
  return new Promise((resolve) => {
    const watcher = watch(join(dir, 'cgroup.events'), () => {
      if (!cgroupPopulated(dir)) done();
    });
    // A change between the first check and the watch would be missed: poll as well, slowly.
    const timer = setInterval(() => {
      if (!cgroupPopulated(dir)) done();
    }, 1000);
    function done(): void {
      watcher.close();
      clearInterval(timer);
      resolve();
    }
  });
}
