/** Commands added by later parts of the tool (train, report, keygen, sign) register here. */
import type { Argv } from 'yargs';
import type { CliIO } from '../common.ts';

export interface ExtraCommand {
  command: string;
  describe: string;
  builder: (y: Argv) => Argv<any>;
  handler: (a: any, io: CliIO) => Promise<number>;
}

export const extraCommands: ExtraCommand[] = [];
