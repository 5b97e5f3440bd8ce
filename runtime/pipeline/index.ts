// runtime/pipeline: pipeline folders (pipeline.json) as a library: assemble, load + verify, generate (sample / edit), conditions.
export * from './format.ts';
export * from './condition.ts';
export * from './params.ts';
export * from './pipeline.ts';
export * from './assemble.ts';
export * from './latent.ts';
