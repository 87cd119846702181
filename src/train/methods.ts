/** The training methods, in a module without tfjs so the CLI can list them without loading it. */
export type TrainMethod = 'sparse' | 'hash' | 'lora' | 'sparse-lora' | 'full' | 'topk-retrain' | 'topk' | 'drop' | 'lowrank' | 'lowbit';
export const TRAIN_METHODS: readonly TrainMethod[] = ['sparse', 'hash', 'lora', 'sparse-lora', 'full', 'topk-retrain', 'topk', 'drop', 'lowrank', 'lowbit'];
