// `unifusion edit --pipeline PIPE --image a.png [--image b.png ...] [--prompt "..."] --out DIR`:
// the images go into the VLM prompt (UniFusion conditions editing and multi-reference generation
// through the VLM alone; no VAE reference tokens); with no prompt, the model reconstructs them.
// Everything else (guidance, schedule, seeds, outputs) is `sample`'s.
import { sampleCommand, type SampleCommandOptions } from './sample.ts';

export async function editCommand(o: SampleCommandOptions & { image?: string[] }): Promise<void> {
  await sampleCommand({ ...o, images: o.image ?? o.images }, 'edit');
}
