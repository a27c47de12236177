import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

/**
 * The line that loads the magics.
 */
export const LOAD_EXT = '%load_ext odsc_magics';

/**
 * The prompt an inserted predict cell starts with.
 */
export const DEFAULT_PROMPT = 'Write one sentence about why streaming answers feel faster.';

/**
 * The model and shape an inserted deploy cell starts with.
 */
export const DEFAULT_MODEL = 'Mistral-7B-Instruct-v0.3';
export const DEFAULT_SHAPE = 'VM.GPU.A10.1';

/**
 * Quote a magic argument for the magics' POSIX shell-style split (Python's shlex), so that it reads back as
 * exactly `value`: single quotes keep everything literal, and an embedded single quote is written `'"'"'`.
 */
export function quoteArg(value: string): string {
  if (/^[\w.:/@+-]+$/.test(value)) {
    return value;
  }
  return `'${value.replace(/'/g, `'"'"'`)}'`;
}

/**
 * The source of a `%%llm_predict` cell for a deployment.
 */
export function predictSource(target?: { name: string; chat?: boolean }): string {
  const options = target ? ` -d ${quoteArg(target.name)}${target.chat ? ' --chat' : ''}` : '';
  return `%%llm_predict${options}\n${DEFAULT_PROMPT}`;
}

/**
 * The source of a `%llm_deploy` cell.
 */
export function deploySource(name = 'my-llm'): string {
  return `%llm_deploy create --model ${DEFAULT_MODEL} --shape ${DEFAULT_SHAPE} --name ${quoteArg(name)}`;
}

/**
 * Whether any of these cell sources loads the magics.
 */
export function loadsMagics(sources: readonly string[]): boolean {
  return sources.some(source =>
    source.split('\n').some(line => /^\s*%(load_ext|reload_ext)\s+odsc_magics\b/.test(line))
  );
}

/**
 * The cells to insert for `source`: a `%load_ext odsc_magics` cell first when the notebook has none.
 */
export function cellsToInsert(existing: readonly string[], source: string): string[] {
  return loadsMagics(existing) ? [source] : [LOAD_EXT, source];
}

/**
 * Insert code cells with these sources below the active cell of a notebook; the last one becomes active.
 */
export function insertCellsBelow(panel: NotebookPanel, sources: readonly string[]): void {
  const notebook = panel.content;
  for (const source of sources) {
    NotebookActions.insertBelow(notebook);
    const cell = notebook.activeCell;
    if (cell) {
      if (cell.model.type !== 'code') {
        NotebookActions.changeCellType(notebook, 'code');
      }
      notebook.activeCell!.model.sharedModel.setSource(source);
    }
  }
}

/**
 * The sources of every cell of a notebook.
 */
export function notebookSources(panel: NotebookPanel): string[] {
  const cells = panel.content.model?.cells;
  const sources: string[] = [];
  if (cells) {
    for (let i = 0; i < cells.length; i++) {
      sources.push(cells.get(i).sharedModel.getSource());
    }
  }
  return sources;
}
