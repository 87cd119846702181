/**
 * The closeness of a payload to a target is one type: `diff()`'s `eval` (`EvalCloseness`, from
 * neural-diff) and the trainers' `payloadCloseness` (`PayloadCloseness`, from neural-diff/train)
 * name the same declaration, in a module that imports no tfjs (the neural-diff entry's type
 * declarations must not reach the trainers'). Two copies drift: a field added to one is missing
 * from what the other promises.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

const root = path.join(import.meta.dirname, '..');

/** The declaration a type exported by `entry` names in the end (through re-exports and aliases). */
function declarationOf(checker: ts.TypeChecker, program: ts.Program, entry: string, name: string): ts.Declaration {
  const file = program.getSourceFile(path.join(root, entry));
  assert.ok(file, `${entry} is in the program`);
  const moduleSymbol = checker.getSymbolAtLocation(file);
  assert.ok(moduleSymbol, `${entry} is a module`);
  const exported = checker.getExportsOfModule(moduleSymbol).find((s) => s.name === name);
  assert.ok(exported, `${entry} exports ${name}`);
  const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
  // The type the name declares: for an alias of an interface, the interface.
  const declaration = checker.getDeclaredTypeOfSymbol(symbol).symbol?.declarations?.[0];
  assert.ok(declaration, `${name} of ${entry} has a declaration`);
  return declaration;
}

test('EvalCloseness (neural-diff) and PayloadCloseness (neural-diff/train) are one declaration, in a module free of tfjs', () => {
  const config = ts.parseJsonConfigFileContent(ts.readConfigFile(path.join(root, 'tsconfig.json'), ts.sys.readFile).config, ts.sys, root);
  const program = ts.createProgram([path.join(root, 'src/index.ts'), path.join(root, 'src/train/index.ts')], config.options);
  const checker = program.getTypeChecker();
  const evalCloseness = declarationOf(checker, program, 'src/index.ts', 'EvalCloseness');
  const payloadCloseness = declarationOf(checker, program, 'src/train/index.ts', 'PayloadCloseness');
  const where = (d: ts.Declaration) => `${path.relative(root, d.getSourceFile().fileName)}:${d.getStart()}`;
  assert.ok(ts.isInterfaceDeclaration(evalCloseness), `EvalCloseness is declared as an interface (found at ${where(evalCloseness)})`);
  assert.equal(where(evalCloseness), where(payloadCloseness), 'EvalCloseness and PayloadCloseness name the same declaration');
  const home = evalCloseness.getSourceFile().fileName;
  assert.ok(!path.relative(root, home).startsWith(path.join('src', 'train')), `the closeness type lives outside the trainers, found in ${path.relative(root, home)}`);
  assert.doesNotMatch(readFileSync(home, 'utf8'), /from '@tensorflow\//, `${path.relative(root, home)} imports no tfjs`);
});
