/** How training's progress lines print a loss (epoch, batch and validation lines alike). */

/**
 * A loss as the epoch and batch lines print it: four decimals, or three significant digits in
 * exponent form below 0.0005, where four decimals would read 0.0000 (a distillation's KL loss
 * near the teacher is 1e-5 and still falling).
 */
export function lossText(loss: number): string {
  return loss !== 0 && Math.abs(loss) < 0.0005 ? loss.toExponential(2) : loss.toFixed(4);
}
