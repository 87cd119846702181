/**
 * The trainers' `x` for a program (src/train/program/training-model.ts) holds example ids as
 * float32, exact up to 2^24. Augmented rows are numbered after the examples, so the ids they
 * reach are checked before any row is written.
 */
import { DataError } from '../../core/errors.ts';

/** The largest id float32 holds exactly (with every id below it). */
export const EXACT_IDS = 2 ** 24;

/**
 * Refuse augmented rows numbered up to `highest` when float32 cannot hold that id exactly.
 * @throws DataError saying how many examples fit and what to do.
 */
export function checkAugmentedIds(source: string, count: number, highest: number, copies: string): void {
  if (highest <= EXACT_IDS) return;
  const most = copies === 'sequences' ? EXACT_IDS / 2 : EXACT_IDS - (highest - count);
  throw new DataError(
    `${source}: augmentation numbers ${copies === 'sequences' ? 'a copy of each' : 'the augmented rows'} of the ${count} examples after them, up to id ${highest}, and float32 ids are exact up to ${EXACT_IDS}: ` +
      `expected at most ${most} examples; split the training data into runs of at most that many, or use --augment none`,
    { examples: count, highestId: highest, most },
  );
}
