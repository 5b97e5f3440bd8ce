// THE op table. Its type demands an entry for every OpKind in params.ts, so an
// op without a shape rule, lowering and reference is a compile error.
import type { OpKind } from './params.ts';
import type { OpDef } from './opdef.ts';
import { ELEMENTWISE } from './ops/elementwise.ts';
import { SOURCE_OPS } from './ops/source.ts';
import { SHAPE_OPS } from './ops/shape.ts';
import { COMPUTE_OPS } from './ops/compute.ts';
import { ADJOINT_OPS } from './ops/adjoint.ts';
import { FUSED_OPS } from './ops/fused.ts';

export type OpTable = { [K in OpKind]: OpDef<K> };

export const OPS: OpTable = {
  ...SOURCE_OPS,
  ...ELEMENTWISE,
  ...SHAPE_OPS,
  ...COMPUTE_OPS,
  ...ADJOINT_OPS,
  ...FUSED_OPS,
};

export function opDef<K extends OpKind>(k: K): OpDef<K> {
  return OPS[k] as OpDef<K>;
}

export const OP_KINDS = Object.keys(OPS) as OpKind[];
