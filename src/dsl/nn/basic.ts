// Basic layers with Hugging Face / diffusers parameter names.
import type { DType } from '../../ir/dtype.ts';
import { Module, type Param } from '../module.ts';
import { conv2d, type Tensor } from '../tensor.ts';
import { groupNorm, layerNorm, linear, rmsNorm } from '../functional.ts';
import { checkOptions, checkPositiveInt } from '../check.ts';

export class Linear extends Module {
  weight: Param;
  bias?: Param;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: { bias?: boolean; dtype?: DType; std?: number } = {}) {
    super();
    checkPositiveInt('Linear in_features', inFeatures);
    checkPositiveInt('Linear out_features', outFeatures);
    checkOptions('Linear', opts, ['bias', 'dtype', 'std']);
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.param([outFeatures, inFeatures], opts.std ? { kind: 'normal', std: opts.std } : { kind: 'uniform', bound }, opts.dtype);
    if (opts.bias ?? true) this.bias = this.param([outFeatures], { kind: 'uniform', bound }, opts.dtype);
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

export class Embedding extends Module {
  weight: Param;
  constructor(readonly num: number, readonly dim: number, opts: { dtype?: DType; std?: number } = {}) {
    super();
    checkPositiveInt('Embedding num_embeddings', num);
    checkPositiveInt('Embedding embedding_dim', dim);
    checkOptions('Embedding', opts, ['dtype', 'std']);
    this.weight = this.param([num, dim], { kind: 'normal', std: opts.std ?? 1 }, opts.dtype);
    this.weight.noDecay = true;
  }
  forward(ids: Tensor): Tensor {
    return this.weight.t.gather(ids, 0);
  }
}

export class RMSNorm extends Module {
  weight?: Param;
  /** offset: Gemma stores (scale - 1) and multiplies by (1 + weight) */
  constructor(readonly dim: number, readonly eps = 1e-6, readonly opts: { offset?: number; affine?: boolean; dtype?: DType } = {}) {
    super();
    checkPositiveInt('RMSNorm dim', dim);
    checkOptions('RMSNorm', opts, ['offset', 'affine', 'dtype']);
    if (opts.affine ?? true) this.weight = this.param([dim], opts.offset ? { kind: 'zeros' } : { kind: 'ones' }, opts.dtype);
  }
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps, { offset: this.opts.offset });
  }
}

export class LayerNorm extends Module {
  weight?: Param;
  bias?: Param;
  constructor(readonly dim: number, readonly eps = 1e-5, opts: { affine?: boolean; bias?: boolean; dtype?: DType } = {}) {
    super();
    checkPositiveInt('LayerNorm dim', dim);
    checkOptions('LayerNorm', opts, ['affine', 'bias', 'dtype']);
    if (opts.affine ?? true) {
      this.weight = this.param([dim], { kind: 'ones' }, opts.dtype);
      if (opts.bias ?? true) this.bias = this.param([dim], { kind: 'zeros' }, opts.dtype);
    }
  }
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

export class GroupNorm extends Module {
  weight: Param;
  bias: Param;
  constructor(readonly groups: number, readonly channels: number, readonly eps = 1e-6, opts: { dtype?: DType } = {}) {
    super();
    checkOptions('GroupNorm', opts, ['dtype']);
    this.weight = this.param([channels], { kind: 'ones' }, opts.dtype);
    this.bias = this.param([channels], { kind: 'zeros' }, opts.dtype);
  }
  forward(x: Tensor): Tensor {
    return groupNorm(x, this.groups, this.weight, this.bias, this.eps);
  }
}

export class Conv2d extends Module {
  weight: Param;
  bias?: Param;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    readonly opts: { stride?: number; padding?: number; groups?: number; bias?: boolean; dtype?: DType } = {},
  ) {
    super();
    checkOptions('Conv2d', opts, ['stride', 'padding', 'groups', 'bias', 'dtype']);
    const g = opts.groups ?? 1;
    const bound = 1 / Math.sqrt((inChannels / g) * kernel * kernel);
    this.weight = this.param([outChannels, inChannels / g, kernel, kernel], { kind: 'uniform', bound }, opts.dtype);
    if (opts.bias ?? true) this.bias = this.param([outChannels], { kind: 'uniform', bound }, opts.dtype);
  }
  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.opts.stride, padding: this.opts.padding, groups: this.opts.groups });
  }
}
