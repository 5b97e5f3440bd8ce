// A user graph file for the runtime error tests: token ids through an embedding table (256
// entries, so an id past it is an onnxruntime Gather error) and latents [batch, 4, 2h, 2w]
// through a 2x2 patchify inside a module (an odd latent size cannot be split).
import { defineGraph, dim, dimDiv, dimMul, Embedding, input, Linear, Module, type Tensor } from 'unifusion/dsl';

class Patchify extends Module {
  proj = new Linear(16, 8);
  forward(latents: Tensor): Tensor {
    const [B, C, H, W] = latents.shape;
    const h = dimDiv(H!, 2), w = dimDiv(W!, 2);
    const x = latents.reshape(B!, C!, h, 2, w, 2).transpose(0, 2, 4, 1, 3, 5).reshape(B!, dimMul(h, w), 16);
    return this.proj.forward(x);
  }
}

const embed = new Embedding(256, 8).named('embed_tokens');
const dit = new Patchify().named('dit');

export default defineGraph({
  name: 'tokens',
  presets: { default: {} },
  build() {
    const ids = input('input_ids', 'i64', [dim('batch'), dim('seq')]);
    const latents = input('latents', 'f32', [dim('batch'), 4, dimMul(dim('h'), 2), dimMul(dim('w'), 2)]);
    return { hidden: embed.forward(ids), patches: dit.forward(latents) };
  },
});
