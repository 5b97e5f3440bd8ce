// Execution-provider targets of a compile. The target decides which fusion rules
// run (src/passes/fusion/targets.ts) and how each fused op is lowered to ONNX.
export const TARGETS = ['cpu', 'cuda', 'webgpu', 'portable'] as const;
export type Target = (typeof TARGETS)[number];

export function isTarget(s: unknown): s is Target {
  return typeof s === 'string' && (TARGETS as readonly string[]).includes(s);
}
