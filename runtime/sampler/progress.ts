// A progress bar with ETA for sampling loops (cli-progress, as the trainer's), on stderr and only
// on a TTY outside test runners and CI unless asked for.
import cliProgress from 'cli-progress';

export interface Progress {
  tick(payload?: Record<string, string>): void;
  stop(): void;
}

export function progressBar(total: number, label: string, want: boolean | 'auto' = 'auto'): Progress | undefined {
  const on = want === 'auto' ? Boolean(process.stderr.isTTY) && !process.env.VITEST && !process.env.CI : want;
  if (!on) return undefined;
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} {bar} {value}/{total} steps | {rate} it/s | ETA {eta_formatted}`, hideCursor: true, etaBuffer: 20, barsize: 30, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { rate: '-' });
  const t0 = performance.now();
  let n = 0;
  return {
    tick(payload = {}) {
      n++;
      bar.update(n, { rate: (n / ((performance.now() - t0) / 1000)).toFixed(2), ...payload });
    },
    stop: () => bar.stop(),
  };
}
