import * as tf from '@tensorflow/tfjs';

/**
 * tfjs's cpu backend prints a banner recommending tfjs-node on its first use under Node. Here
 * tfjs-node cannot be installed and the banner lands in the middle of CLI output, so mark the
 * cpu backend as already used (its `firstUse` flag only guards that banner).
 */
export function silenceTfjsNodeBanner(): void {
  const cpu = tf.findBackend('cpu') as unknown as { firstUse?: boolean } | null;
  if (cpu && 'firstUse' in cpu) cpu.firstUse = false;
}
