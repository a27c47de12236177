import { ICellModel } from '@jupyterlab/cells';
import { CellList, INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IDisposable } from '@lumino/disposable';
import { Signal } from '@lumino/signaling';

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
 * code cells' editor mime type (the cell stays a code cell; only the editor's mode changes). Disposing it
 * gives every cell it switched its previous mode back.
 */
export class PromptCellHighlighter implements IDisposable {
  constructor(tracker: INotebookTracker) {
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
    Signal.disconnectReceiver(this);
    for (const [cell, previous] of this._switched) {
      if (!cell.isDisposed && cell.mimeType === MARKDOWN_MIME) {
        cell.mimeType = previous;
      }
    }
    this._switched.clear();
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
      for (let i = 0; i < model.cells.length; i++) {
        this._follow(model.cells.get(i), panel);
      }
      this._lists.set(model.cells, panel);
      model.cells.changed.connect(this._onCellsChanged, this);
    });
  }

  private _onCellsChanged(cells: CellList, change: { type: string; newValues: readonly ICellModel[]; oldValues: readonly ICellModel[] }): void {
    const panel = this._lists.get(cells);
    if (panel && change.type === 'add') {
      change.newValues.forEach(cell => this._follow(cell, panel));
    }
    if (change.type === 'remove') {
      change.oldValues.forEach(cell => this._switched.delete(cell));
    }
  }

  private _follow(cell: ICellModel, panel: NotebookPanel): void {
    this._panels.set(cell, panel);
    cell.contentChanged.connect(this._apply, this);
    // The notebook resets every code cell's mime type when the kernel language changes.
    cell.mimeTypeChanged.connect(this._onMimeTypeChanged, this);
    this._apply(cell);
  }

  private _onMimeTypeChanged(model: unknown): void {
    this._apply(model as ICellModel);
  }

  private _apply(cell: ICellModel): void {
    const panel = this._panels.get(cell);
    if (this._isDisposed || !panel || cell.type !== 'code') {
      return;
    }
    const wanted = mimeTypeFor(cell.sharedModel.getSource(), panel.content.codeMimetype);
    if (cell.mimeType === wanted) {
      return;
    }
    if (wanted === MARKDOWN_MIME) {
      this._switched.set(cell, cell.mimeType);
      cell.mimeType = wanted;
    } else if (cell.mimeType === MARKDOWN_MIME) {
      this._switched.delete(cell);
      cell.mimeType = wanted;
    }
  }

  private _isDisposed = false;
  private _panels = new WeakMap<ICellModel, NotebookPanel>();
  private _lists = new WeakMap<CellList, NotebookPanel>();
  // The mode each cell had before it was switched to Markdown.
  private _switched = new Map<ICellModel, string>();
}
