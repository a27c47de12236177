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
      '%%llm_predict -d "my chat" --chat'
    );
    expect(quoteArg('a"b')).toBe('"a\\"b"');
    expect(quoteArg('ocid1.datasciencemodeldeployment.oc1..x')).toBe(
      'ocid1.datasciencemodeldeployment.oc1..x'
    );
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
