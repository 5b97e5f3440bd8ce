// `--bindings` of compile and train: typed TypeScript next to the ONNX they wrote (codegen/ts).
import type { Manifest } from '../compiler.ts';
import type { CompiledTrainStep } from '../train/step.ts';
import { ioFromModel, specFromManifest, specFromTrainStep } from '../../codegen/ts/bindings.ts';
import { writeBindings } from '../../codegen/ts/write.ts';

export async function writeCompiledBindings(dir: string, manifest: Manifest, description?: string): Promise<string> {
  return writeBindings(dir, specFromManifest(manifest, { description }), { command: 'compile' });
}

/** train-step.ts for the train-step.onnx the train command writes. */
export async function writeTrainStepBindings(dir: string, compiled: CompiledTrainStep): Promise<string> {
  const spec = specFromTrainStep(compiled.spec, 'train-step.onnx', ioFromModel(compiled.emitted.model));
  return writeBindings(dir, spec, { file: 'train-step.ts', command: 'train' });
}
