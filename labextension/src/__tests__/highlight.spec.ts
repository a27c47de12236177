import { NotebookModel, NotebookPanel, INotebookTracker } from '@jupyterlab/notebook';
import { Signal } from '@lumino/signaling';

import { MARKDOWN_MIME, PromptCellHighlighter } from '../highlight';

const PYTHON = 'text/x-ipython';

/**
 * A notebook panel with just what the highlighter reads: the ready context, the model and the code mime type.
 */
function panelWith(sources: string[]): { panel: NotebookPanel; model: NotebookModel } {
  const model = new NotebookModel();
  sources.forEach((source, index) => model.sharedModel.insertCell(index, { cell_type: 'code', source }));
  for (let i = 0; i < model.cells.length; i++) {
    model.cells.get(i).mimeType = PYTHON;
  }
  const panel = { context: { ready: Promise.resolve() }, content: { model, codeMimetype: PYTHON } };
  return { panel: panel as unknown as NotebookPanel, model };
}

function trackerOf(panels: NotebookPanel[]): INotebookTracker {
  const tracker = {
    widgetAdded: new Signal<INotebookTracker, NotebookPanel>({} as INotebookTracker),
    forEach: (fn: (panel: NotebookPanel) => void) => panels.forEach(fn)
  };
  return tracker as unknown as INotebookTracker;
}

function mimeTypes(model: NotebookModel): string[] {
  const found: string[] = [];
  for (let i = 0; i < model.cells.length; i++) {
    found.push(model.cells.get(i).mimeType);
  }
  return found;
}

describe('PromptCellHighlighter', () => {
  it('edits prompt cells as Markdown while active', async () => {
    const { panel, model } = panelWith(['%%llm_predict -d x\nHello', 'x = 1', '%%llm_chat\nHi']);
    const highlighter = new PromptCellHighlighter(trackerOf([panel]));
    await panel.context.ready;
    expect(mimeTypes(model)).toEqual([MARKDOWN_MIME, PYTHON, MARKDOWN_MIME]);
    model.cells.get(1).sharedModel.setSource('%%llm_predict\nNow a prompt');
    expect(mimeTypes(model)).toEqual([MARKDOWN_MIME, MARKDOWN_MIME, MARKDOWN_MIME]);
    model.cells.get(2).sharedModel.setSource('print("no longer a prompt")');
    expect(mimeTypes(model)).toEqual([MARKDOWN_MIME, MARKDOWN_MIME, PYTHON]);
    highlighter.dispose();
  });

  it('gives the cells their previous mode back when disposed, and stops following them', async () => {
    const { panel, model } = panelWith(['%%llm_predict -d x\nHello', 'x = 1', '%%llm_chat\nHi']);
    const highlighter = new PromptCellHighlighter(trackerOf([panel]));
    await panel.context.ready;
    model.sharedModel.insertCell(3, { cell_type: 'code', source: '%%llm_chat\nAdded later' });
    expect(mimeTypes(model)).toEqual([MARKDOWN_MIME, PYTHON, MARKDOWN_MIME, MARKDOWN_MIME]);

    highlighter.dispose();
    expect(highlighter.isDisposed).toBe(true);
    // A cell added with no mime type of its own had the editor's default before it became Markdown.
    const added = mimeTypes(model)[3];
    expect(mimeTypes(model).slice(0, 3)).toEqual([PYTHON, PYTHON, PYTHON]);
    expect(added).not.toBe(MARKDOWN_MIME);
    model.cells.get(1).sharedModel.setSource('%%llm_predict\nA prompt after dispose');
    expect(mimeTypes(model)[1]).toBe(PYTHON);
  });
});
