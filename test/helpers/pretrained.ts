/**
 * Real pretrained TF.js models for tests: the nsfwjs MobileNetV2 models, extracted by the
 * pretrained example's helper (examples/pretrained/nsfwjs.ts) from the installed devDependency.
 */
export { PRETRAINED, pretrainedModelDir } from '../../examples/pretrained/nsfwjs.ts';
