/**
 * The keyword model: a temporal-convolution network over log-mel frames (49 frames x 40 mel
 * bins), in the spirit of TC-ResNet: 1-D convolutions along time with the mel bins as channels,
 * which costs far fewer multiply-adds than 2-D convolutions for the same accuracy on keywords.
 * About 0.6M parameters with 38 output slots. Layer names are fixed so weight names are stable.
 */
import * as tf from '@tensorflow/tfjs';

export function keywordModel(numClasses: number, seed = 0): tf.LayersModel {
  const init = (k: number) => tf.initializers.heNormal({ seed: seed * 100 + k });
  return tf.sequential({
    name: 'kws',
    layers: [
      tf.layers.reshape({ name: 'frames', inputShape: [49, 40, 1], targetShape: [49, 40] }),
      tf.layers.conv1d({ name: 'conv1', filters: 96, kernelSize: 5, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: init(1) }),
      tf.layers.conv1d({ name: 'conv2', filters: 128, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(2) }),
      tf.layers.maxPooling1d({ name: 'pool2', poolSize: 2 }),
      tf.layers.conv1d({ name: 'conv3', filters: 160, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(3) }),
      tf.layers.maxPooling1d({ name: 'pool3', poolSize: 2 }),
      tf.layers.conv1d({ name: 'conv4', filters: 192, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(4) }),
      tf.layers.flatten({ name: 'flat' }),
      tf.layers.dense({ name: 'hidden', units: 256, activation: 'relu', kernelInitializer: init(5) }),
      tf.layers.dense({ name: 'words', units: numClasses, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: seed * 100 + 6 }) }),
    ],
  });
}
