/**
 * The signal relay of the commands that supervise a child (`run`, `forward
 * --userspace`, `forward` holding a redirect): while it is on, the signals a
 * terminal or a service manager sends lowport (SIGINT, SIGTERM, ...) no longer
 * end it but go to `deliver`, which passes them on (to the child, its process
 * group or cgroup) or ends the hold. The child runs in a session of its own,
 * so these reach lowport alone and are relayed once.
 */

/**
 * Calls `deliver` with each of `signals` that reaches this process, until the
 * returned function is called; that removes every handler (calling it again,
 * from `deliver` too, does nothing).
 */
export function relaySignals(signals: readonly NodeJS.Signals[], deliver: (signal: NodeJS.Signals) => void): () => void {
  const handlers = signals.map((signal) => {
    const handler = (): void => deliver(signal);
    process.on(signal, handler);
    return { signal, handler };
  });
  return () => {
    for (const { signal, handler } of handlers.splice(0)) process.off(signal, handler);
  };
}
