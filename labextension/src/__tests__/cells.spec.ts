import { execFileSync } from 'child_process';

import { cellsToInsert, deploySource, LOAD_EXT, loadsMagics, predictSource, quoteArg } from '../cells';
import { isPromptCell, MARKDOWN_MIME, mimeTypeFor } from '../highlight';

describe('cell sources', () => {
  it('targets the deployment by name in a %%llm_predict cell', () => {
    const source = predictSource({ name: 'my-llm' });
    expect(source.split('\n')[0]).toBe('%%llm_predict -d my-llm');
    expect(source.split('\n')[1].length).toBeGreaterThan(0);
  });

  it('adds --chat for a chat deployment and quotes names with spaces', () => {
    expect(predictSource({ name: 'my chat', chat: true }).split('\n')[0]).toBe(
      "%%llm_predict -d 'my chat' --chat"
    );
    expect(quoteArg('a"b')).toBe(`'a"b'`);
    expect(quoteArg('ocid1.datasciencemodeldeployment.oc1..x')).toBe(
      'ocid1.datasciencemodeldeployment.oc1..x'
    );
  });

  it('quotes so that a POSIX shell-style split reads back exactly the name', () => {
    // Inside single quotes nothing is special: no escapes, no $ or backtick expansion.
    expect(quoteArg('my$llm')).toBe("'my$llm'");
    expect(quoteArg('a`b`')).toBe("'a`b`'");
    expect(quoteArg('back\\slash')).toBe("'back\\slash'");
    // A single quote ends the quoted part, is written inside double quotes, and a new quoted part begins.
    expect(quoteArg("it's")).toBe(`'it'"'"'s'`);
    expect(quoteArg('')).toBe("''");
  });

  it("quotes hostile names so that Python's shlex.split yields each name unchanged", () => {
    const names = [
      'my$llm',
      'my\\$llm',
      '$(touch x) `id` ${HOME}',
      "it's \"quoted\" \\ back",
      "''\"\"''",
      'tab\there  two spaces',
      '# not a comment',
      '-d --chat',
      'émoji ✓ ünïcode',
      ''
    ];
    const lines = names.map(name => `-d ${quoteArg(name)} --chat`);
    const split = execFileSync(
      process.env.PYTHON ?? 'python3',
      ['-c', 'import json, shlex, sys; print(json.dumps([shlex.split(l) for l in json.load(sys.stdin)]))'],
      { input: JSON.stringify(lines), encoding: 'utf-8' }
    );
    expect(JSON.parse(split)).toEqual(names.map(name => ['-d', name, '--chat']));
  });

  it('falls back to the default target without a deployment', () => {
    expect(predictSource().split('\n')[0]).toBe('%%llm_predict');
  });

  it('writes a %llm_deploy create line', () => {
    expect(deploySource()).toMatch(/^%llm_deploy create --model \S+ --shape \S+ --name my-llm$/);
  });

  it('inserts %load_ext first only when the notebook does not load the magics', () => {
    expect(cellsToInsert(['import os'], 'X')).toEqual([LOAD_EXT, 'X']);
    expect(cellsToInsert(['import os\n%load_ext odsc_magics'], 'X')).toEqual(['X']);
    expect(loadsMagics(['%reload_ext odsc_magics'])).toBe(true);
    expect(loadsMagics(['# %load_ext odsc_magics'])).toBe(false);
  });
});

describe('prompt cell highlighting', () => {
  it('edits %%llm_predict and %%llm_chat bodies as Markdown, other cells as code', () => {
    expect(isPromptCell('%%llm_predict -d x\nHello')).toBe(true);
    expect(isPromptCell('%%llm_chat\nHi')).toBe(true);
    expect(isPromptCell('%llm_predict Hello')).toBe(false);
    expect(isPromptCell('print(1)\n%%llm_predict')).toBe(false);
    expect(mimeTypeFor('%%llm_chat\nHi', 'text/x-ipython')).toBe(MARKDOWN_MIME);
    expect(mimeTypeFor('x = 1', 'text/x-ipython')).toBe('text/x-ipython');
  });
});
