/**
 * The shape of one augmentation as the program model applies it to a batch of example rows
 * (training-model.ts). The augmentations themselves, and the choice of them, belong to the
 * training of diffs (src/train/augment.ts, which re-exports this type). Types only.
 */

/** One augmentation: a new batch from `x` (never changed) of shape `shape`, drawing from `random`. */
export type Augmentation = (x: Float32Array, shape: readonly number[], random: () => number) => Float32Array;
