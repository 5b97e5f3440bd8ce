// `--bindings` of compile and train: typed TypeScript next to the ONNX they wrote (codegen/ts).
import type { Manifest } from '../compiler.ts';
import type { CompiledTrainStep } from '../train/step.ts';
import { generateBindings, ioFromModel, specFromManifest, specFromTrainStep } from '../../codegen/ts/bindings.ts';

/** `<name>.ts` for a compile output: the file name and its text (compile stages it with the ONNX). */
export function compiledBindings(manifest: Manifest, description?: string): { file: string; text: string } {
  return { file: `${manifest.name}.ts`, text: generateBindings(specFromManifest(manifest, { description })) };
}

/** The text of train-step.ts for the train-step.onnx the train command writes. */
export function trainStepBindings(compiled: CompiledTrainStep): string {
  return generateBindings(specFromTrainStep(compiled.spec, 'train-step.onnx', ioFromModel(compiled.emitted.model)));
}
