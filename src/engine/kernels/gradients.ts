/**
 * Gradients tfjs 4.22 lacks or gets wrong, which graph models need (the layers path never meets
 * them): GatherNd has none (gather-nd-grad.ts), SquaredDifference's is wrong under broadcasting
 * (squared-difference-grad.ts). Registered for every backend, once, when a TF.js graph model is
 * made trainable (src/engine/tfjs-graph/graph-program.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { gatherNdGradConfig } from './gather-nd-grad.ts';
import { squaredDifferenceGradConfig } from './squared-difference-grad.ts';

let registered = false;

/** Register the gradients of the module doc (idempotent; GatherNd's only where tfjs has none). */
export function registerGradientFixes(): void {
  if (registered) return;
  if (!tf.getGradient('GatherNd')) tf.registerGradient(gatherNdGradConfig());
  tf.registerGradient(squaredDifferenceGradConfig());
  registered = true;
}
