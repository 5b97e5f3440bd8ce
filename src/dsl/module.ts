// Modules with Hugging Face-style parameter names. A module's children and
// params are named after the properties they are assigned to (arrays give
// "layers.0"), so `this.q_proj = new Linear(...)` yields "….q_proj.weight",
// exactly as in PyTorch checkpoints. Names resolve lazily through parent links.
import type { DType } from '../ir/dtype.ts';
import type { Init } from '../ir/params.ts';
import { currentTrace, DSLError, tracing } from './trace.ts';
import { Tensor } from './tensor.ts';
import { userSite } from './site.ts';
import { checkDType } from './check.ts';

interface Owner {
  parent: Module;
  key: string;
}

const OWNER = Symbol('owner');

export class Param {
  [OWNER]?: Owner;
  /** exclude from AdamW weight decay (embeddings); rank <= 1 params are excluded anyway */
  noDecay = false;
  constructor(
    readonly shape: readonly number[],
    readonly init: Init,
    readonly dtype: DType = 'f32',
  ) {
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw new DSLError(`param shape [${shape}] must be non-negative integers`, userSite());
    checkDType('param', dtype);
  }
  get path(): string {
    const o = this[OWNER];
    if (!o) throw new DSLError('a Param must be assigned to a Module property before use', userSite());
    const pre = o.parent.path;
    return pre ? `${pre}.${o.key}` : o.key;
  }
  get frozen(): boolean {
    return this[OWNER]?.parent.isFrozen ?? false;
  }
  get numel(): number {
    return this.shape.reduce((a, d) => a * d, 1);
  }
  /** The param as a tensor of the active trace (one node per name). */
  get t(): Tensor {
    const tr = currentTrace();
    const name = this.path;
    const owner = tr.paramOwners.get(name);
    if (owner && owner !== this)
      throw new DSLError(`two different parameters are both named '${name}': assign modules to properties of a parent module, or name top-level modules with .named('prefix')`, userSite());
    tr.paramOwners.set(name, this);
    const t = new Tensor(tr.apply('param', { name, dtype: this.dtype, shape: [...this.shape], init: this.init, frozen: this.frozen, seed: tr.seed }, []));
    const cdt = tr.computeDtype;
    return cdt && t.isFloat() && cdt !== this.dtype ? t.cast(cdt) : t;
  }
}

function adopt(value: unknown, parent: Module, key: string): void {
  if (value instanceof Module || value instanceof Param) {
    if (value[OWNER] && value[OWNER].parent !== parent) throw new DSLError(`'${key}' is already owned by '${value[OWNER].parent.path || '<root>'}' (share tensors, not modules)`, userSite());
    value[OWNER] = { parent, key };
  } else if (Array.isArray(value)) value.forEach((v, i) => adopt(v, parent, `${key}.${i}`));
}

// Module methods that do not trace ops (so need no scope) and must keep their identity.
const UNSCOPED = new Set(['constructor', 'named', 'freeze', 'param', 'namedParameters', 'paramCount', 'scopePath']);
// One scoped wrapper per (module, method), so `m.forward === m.forward` still holds.
const scopedMethods = new WeakMap<object, Map<Function, Function>>();

/**
 * Methods of a subclass (forward, embed, ...) run with the module's path as the trace scope, so
 * every node they make is named after the module that made it (ONNX node 'dit/blocks.3/attn/MatMul_2',
 * as torch.onnx names them). Names of parameters, inputs and outputs are not affected.
 */
function scoped(mod: Module, key: string, fn: Function): Function {
  let perModule = scopedMethods.get(mod);
  if (!perModule) scopedMethods.set(mod, (perModule = new Map()));
  let w = perModule.get(fn);
  if (!w) {
    // one frame only (no inScope closure): every frame between an op and the user's line costs
    // the per-node site capture (src/dsl/site.ts) a few µs
    w = function (this: unknown, ...args: unknown[]) {
      const tr = tracing();
      const scope = tr ? mod.scopePath() : '';
      if (!tr || !scope) return fn.apply(this, args);
      tr.enterScope(scope);
      try {
        return fn.apply(this, args);
      } finally {
        tr.exitScope();
      }
    };
    Object.defineProperty(w, 'name', { value: key });
    perModule.set(fn, w);
  }
  return w;
}

export abstract class Module {
  [OWNER]?: Owner;
  private frozenFlag = false;

  constructor() {
    // Returning a proxy from the base constructor makes it `this` in subclass
    // constructors, so plain property assignments name children.
    const proxy: Module = new Proxy(this, {
      get(target, key, receiver) {
        const v = Reflect.get(target, key, receiver);
        // only methods from the class chain (not function-valued fields, not Module's own helpers)
        if (typeof v !== 'function' || typeof key !== 'string' || UNSCOPED.has(key) || Object.hasOwn(target, key)) return v;
        return scoped(receiver as Module, key, v as Function);
      },
      set(target, key, value, receiver) {
        if (typeof key === 'string' && key !== 'frozenFlag' && key !== 'rootName') adopt(value, receiver as Module, key);
        return Reflect.set(target, key, value, receiver);
      },
      // class-field initialisers define rather than set
      defineProperty(target, key, desc) {
        if (typeof key === 'string' && key !== 'frozenFlag' && key !== 'rootName' && 'value' in desc) adopt(desc.value, proxy, key);
        return Reflect.defineProperty(target, key, desc);
      },
    });
    return proxy;
  }

  private rootName = '';

  get path(): string {
    const o = this[OWNER];
    if (!o) return this.rootName;
    const pre = o.parent.path;
    return pre ? `${pre}.${o.key}` : o.key;
  }

  /** The module's path as a trace scope: '/'-separated module names ('dit/blocks.3/attn'). */
  scopePath(): string {
    const o = this[OWNER];
    // a dotted root name ('vlm.embed_tokens', 'model.layers.3') reads as module path 'vlm/embed_tokens', 'model/layers.3'
    if (!o) return this.rootName.split('.').reduce((acc, seg) => (acc === '' ? seg : /^\d+$/.test(seg) ? `${acc}.${seg}` : `${acc}/${seg}`), '');
    const pre = o.parent.scopePath();
    return pre ? `${pre}/${o.key}` : o.key;
  }

  /** Name a top-level module (its params become "<prefix>.weight", ...). */
  named(prefix: string): this {
    this.rootName = prefix;
    return this;
  }

  /** Frozen modules (e.g. the VLM) get no gradients and no optimizer state. */
  freeze(frozen = true): this {
    this.frozenFlag = frozen;
    return this;
  }
  get isFrozen(): boolean {
    return this.frozenFlag || (this[OWNER]?.parent.isFrozen ?? false);
  }

  protected param(shape: readonly number[], init: Init, dtype: DType = 'f32'): Param {
    return new Param(shape, init, dtype);
  }

  /** All params under this module with their full names, in declaration order. */
  namedParameters(): [string, Param][] {
    const out: [string, Param][] = [];
    const visit = (v: unknown) => {
      if (v instanceof Param) out.push([v.path, v]);
      else if (v instanceof Module) for (const k of Object.keys(v)) visit((v as unknown as Record<string, unknown>)[k]);
      else if (Array.isArray(v)) v.forEach(visit);
    };
    visit(this);
    return out;
  }

  paramCount(opts: { trainableOnly?: boolean } = {}): number {
    return this.namedParameters().reduce((a, [, p]) => a + (opts.trainableOnly && p.frozen ? 0 : p.numel), 0);
  }
}
