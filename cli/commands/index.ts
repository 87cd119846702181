/** Commands added by later parts of the tool (train, report, keygen, sign) register here. */
import type { Argv } from 'yargs';
import type { CliIO } from '../common.ts';
import { keygenCommand, runKeygen } from './keygen.ts';
import { runSign, signCommand } from './sign.ts';
import { runWorker, workerCommand } from './release-queue.ts';
import { measureCommand, runMeasure } from './measure.ts';

export interface ExtraCommand {
  command: string;
  describe: string;
  builder: (y: Argv) => Argv<any>;
  handler: (a: any, io: CliIO) => Promise<number>;
}

export const extraCommands: ExtraCommand[] = [
  { command: 'keygen', describe: 'make an Ed25519 key pair (private: build server, public: devices)', builder: keygenCommand, handler: runKeygen },
  { command: 'worker', describe: 'run release plans\' payload jobs from a queue (BullMQ on Redis)', builder: workerCommand, handler: runWorker },
  { command: 'measure [models..]', describe: 'run GGUF models through llama.cpp on text: agreement, KL, perplexity', builder: measureCommand, handler: runMeasure },
  { command: 'sign <payload>', describe: 'sign a payload: an envelope devices verify before decoding', builder: signCommand, handler: runSign },
];
