import { ICellModel } from '@jupyterlab/cells';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IDisposable } from '@lumino/disposable';

/**
 * The first line of a cell whose body is a prompt.
 */
export const PROMPT_CELL_MAGIC = /^\s*%%(llm_predict|llm_chat)\b/;

/**
 * The editor mime type of Markdown cells (GitHub-flavoured Markdown with LaTeX).
 */
export const MARKDOWN_MIME = 'text/x-ipythongfm';

/**
 * Whether a code cell's body is an LLM prompt (`%%llm_predict` or `%%llm_chat`).
 */
export function isPromptCell(source: string): boolean {
  return PROMPT_CELL_MAGIC.test(source);
}

/**
 * The editor mime type a code cell should have: Markdown for prompt cells, the notebook's otherwise.
 */
export function mimeTypeFor(source: string, codeMimeType: string): string {
  return isPromptCell(source) ? MARKDOWN_MIME : codeMimeType;
}

/**
 * Edits the bodies of `%%llm_predict` / `%%llm_chat` cells with Markdown highlighting, by switching those
 * code cells' editor mime type (the cell stays a code cell; only the editor's mode changes).
 */
export class PromptCellHighlighter implements IDisposable {
  constructor(tracker: INotebookTracker) {
    this._tracker = tracker;
    tracker.forEach(panel => this._watch(panel));
    tracker.widgetAdded.connect(this._onWidgetAdded, this);
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._tracker.widgetAdded.disconnect(this._onWidgetAdded, this);
  }

  private _onWidgetAdded(_: INotebookTracker, panel: NotebookPanel): void {
    this._watch(panel);
  }

  private _watch(panel: NotebookPanel): void {
    void panel.context.ready.then(() => {
      const model = panel.content.model;
      if (!model || this._isDisposed) {
        return;
      }
      const apply = (cell: ICellModel) => {
        if (this._isDisposed || cell.type !== 'code') {
          return;
        }
        const code = panel.content.codeMimetype;
        const wanted = mimeTypeFor(cell.sharedModel.getSource(), code);
        if (cell.mimeType !== wanted && (wanted === MARKDOWN_MIME || cell.mimeType === MARKDOWN_MIME)) {
          cell.mimeType = wanted;
        }
      };
      const follow = (cell: ICellModel) => {
        cell.contentChanged.connect(() => apply(cell));
        // The notebook resets every code cell's mime type when the kernel language changes.
        cell.mimeTypeChanged.connect(() => apply(cell));
        apply(cell);
      };
      for (let i = 0; i < model.cells.length; i++) {
        follow(model.cells.get(i));
      }
      model.cells.changed.connect((_, change) => {
        if (change.type === 'add') {
          change.newValues.forEach(follow);
        }
      });
    });
  }

  private _tracker: INotebookTracker;
  private _isDisposed = false;
}
