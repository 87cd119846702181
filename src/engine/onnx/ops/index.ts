/** Every ONNX operator the executor implements (default domain), by op type, joined from the families. */
import { activation } from './activation.ts';
import { arithmetic } from './arithmetic.ts';
import { control } from './control.ts';
import { convolution } from './convolution.ts';
import { einsumOps } from './einsum.ts';
import { indexing } from './indexing.ts';
import { normalization } from './normalization.ts';
import type { OpTable } from './op.ts';
import { pooling } from './pooling.ts';
import { quantization } from './quantization.ts';
import { recurrent } from './recurrent.ts';
import { reduction } from './reduction.ts';
import { resizing } from './resize.ts';
import { scatter } from './scatter.ts';
import { shape } from './shape.ts';

/** The operator table (op type -> implementation). `Constant` is the executor's own (its values may be weights). */
export const OPERATORS: Readonly<OpTable> = {
  ...arithmetic, ...activation, ...convolution, ...normalization, ...pooling,
  ...shape, ...indexing, ...reduction, ...recurrent, ...control, ...quantization,
  ...resizing, ...scatter, ...einsumOps,
};

export type { OpArgs, OpFn, OpTable } from './op.ts';
