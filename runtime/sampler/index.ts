// runtime/sampler: flow-matching sampling as a library: schedules, Euler/Heun, every CFG variant, seeds, callbacks.
export * from './schedule.ts';
export * from './guidance.ts';
export * from './solvers.ts';
export * from './noise.ts';
export * from './progress.ts';
