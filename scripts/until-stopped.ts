/**
 * Run `stop` once on Ctrl-C or SIGTERM, then exit. Ctrl-C reaches every process of the
 * terminal's group, so a second signal arrives while the first stop runs: it says "stopping"
 * once, and stops once.
 */
export function untilStopped(what: string, stop: () => Promise<void>): void {
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    console.log(`\nfedkms: stopping ${what}...`);
    await stop().catch(() => undefined);
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}
