/**
 * im2col / col2im over tensors living in the wasm heap, shared by the conv gradients. The column
 * matrix has one row per output position (b, oh, ow) and one column per filter tap (kh, kw, ci),
 * the same order as a [KH, KW, CI, CO] filter reshaped to [KH*KW*CI, CO].
 */

/** Geometry of one 2-D convolution (channels last, dilation 1). */
export interface ConvGeometry {
  inHeight: number;
  inWidth: number;
  inChannels: number;
  outHeight: number;
  outWidth: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  padTop: number;
  padLeft: number;
}

/**
 * Fill `heap[colsTAt ...]` with the transposed column matrix [KH*KW*CI, nb*OH*OW] of batch items
 * [b0, b0 + nb): row (kh, kw, ci), column (b, oh, ow). It reads the input channel-major
 * ([CI, B, H, W] at `heap[xtAt ...]`, `batch` items in all), so that each output row is filled
 * from contiguous runs. The transposed layout lets the filter gradient hand XNNPACK dy, not the
 * much larger column matrix, as the operand it packs.
 */
export function im2colT(
  heap: Float32Array,
  xtAt: number,
  batch: number,
  colsTAt: number,
  g: ConvGeometry,
  b0: number,
  nb: number,
): void {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = g;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw, padTop, padLeft } = g;
  const P = nb * OH * OW;
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      // Output columns whose input column iw = ow*sw + kw - padLeft lies inside [0, W).
      const owLo = Math.min(OW, Math.max(0, Math.ceil((padLeft - kw) / sw)));
      const owHi = Math.max(owLo, Math.min(OW, Math.floor((W - 1 - kw + padLeft) / sw) + 1));
      const iwLo = owLo * sw + kw - padLeft;
      for (let c = 0; c < C; c++) {
        let d = colsTAt + ((kh * KW + kw) * C + c) * P;
        for (let b = b0; b < b0 + nb; b++) {
          const plane = xtAt + (c * batch + b) * H * W;
          for (let oh = 0; oh < OH; oh++) {
            const ih = oh * sh + kh - padTop;
            if (ih < 0 || ih >= H) {
              heap.fill(0, d, d + OW);
              d += OW;
              continue;
            }
            for (let ow = 0; ow < owLo; ow++) heap[d++] = 0;
            let s = plane + ih * W + iwLo;
            if (sw === 1) {
              for (let ow = owLo; ow < owHi; ow++) heap[d++] = heap[s++];
            } else {
              for (let ow = owLo; ow < owHi; ow++, s += sw) heap[d++] = heap[s];
            }
            for (let ow = owHi; ow < OW; ow++) heap[d++] = 0;
          }
        }
      }
    }
  }
}

/**
 * Scatter-add the column matrix of batch items [b0, b0 + nb) (at `heap[colsAt ...]`) back into the
 * image at `heap[dxAt ...]`, which the caller has zeroed: the adjoint of {@link im2col}.
 */
export function col2imAdd(heap: Float32Array, colsAt: number, dxAt: number, g: ConvGeometry, b0: number, nb: number): void {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = g;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw, padTop, padLeft } = g;
  let src = colsAt;
  for (let b = b0; b < b0 + nb; b++) {
    const dxBatch = dxAt + b * H * W * C;
    for (let oh = 0; oh < OH; oh++) {
      const ih0 = oh * sh - padTop;
      for (let ow = 0; ow < OW; ow++) {
        const iw0 = ow * sw - padLeft;
        for (let kh = 0; kh < KH; kh++) {
          const ih = ih0 + kh;
          if (ih < 0 || ih >= H) {
            src += KW * C;
            continue;
          }
          const rowAt = dxBatch + ih * W * C;
          for (let kw = 0; kw < KW; kw++) {
            const iw = iw0 + kw;
            if (iw >= 0 && iw < W) {
              const d = rowAt + iw * C;
              for (let c = 0; c < C; c++) heap[d + c] += heap[src + c];
            }
            src += C;
          }
        }
      }
    }
  }
}
