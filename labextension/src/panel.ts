import { Dialog, showDialog } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { nullTranslator, TranslationBundle } from '@jupyterlab/translation';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { Action, IDeployment } from './api';
import { DeploymentsModel, TRANSITIONAL_STATES } from './model';
import { ApiError } from './request';

/**
 * What the panel asks its host to do (insert cells, copy text, report).
 */
export interface IPanelActions {
  insertPredictCell(deployment: IDeployment): void;
  insertDeployCell(): void;
  copy(text: string): void;
  notify(message: string, type: 'success' | 'error' | 'info'): void;
}

/**
 * The endpoint users call for a deployment: its URL with /predict.
 */
export function predictEndpoint(deployment: IDeployment): string {
  return `${deployment.url.replace(/\/+$/, '')}/predict`;
}

/**
 * A short local date and time for an RFC3339 timestamp.
 */
export function formatCreated(created: string | null): string {
  if (!created) {
    return '';
  }
  const date = new Date(created);
  if (isNaN(date.getTime())) {
    return created;
  }
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/**
 * The title, message and hint shown for a failed refresh.
 */
export function describeError(
  error: Error,
  trans: TranslationBundle = nullTranslator.load('odsc_magics')
): { title: string; message: string; hint: string } {
  if (error instanceof ApiError) {
    const title =
      error.kind === 'configuration'
        ? trans.__('odsc-magics is not configured')
        : trans.__('Cannot list deployments');
    let hint = error.hint;
    if (error.kind === 'configuration') {
      hint = [
        hint,
        trans.__(
          'Configure OCI access (an API key in ~/.oci/config, or a notebook session\'s resource principal) with a compartment and project (env ODSC_MAGICS_COMPARTMENT_ID, ODSC_MAGICS_PROJECT_ID), or try the local backend: ODSC_MAGICS_BACKEND=local, then restart JupyterLab.'
        )
      ]
        .filter(Boolean)
        .join('\n');
    }
    return { title, message: error.message, hint };
  }
  if (error instanceof ServerConnection.ResponseError && error.response.status === 404) {
    return {
      title: trans.__('The odsc_magics server extension is not enabled'),
      message: error.message,
      hint: trans.__('Run `jupyter server extension enable odsc_magics`, then restart JupyterLab.')
    };
  }
  if (error instanceof ServerConnection.NetworkError) {
    return {
      title: trans.__('The Jupyter server cannot be reached'),
      message: error.message,
      hint: trans.__('Check that JupyterLab is still running, then refresh.')
    };
  }
  return { title: trans.__('Cannot list deployments'), message: error.message, hint: '' };
}

/**
 * The left sidebar panel: every deployment with its state badge, shape, model and creation time, and the
 * actions on it.
 */
export class DeploymentsPanel extends Widget {
  constructor(options: DeploymentsPanel.IOptions) {
    super();
    this._model = options.model;
    this._actions = options.actions;
    this._trans = options.translator ?? nullTranslator.load('odsc_magics');
    this._confirm = options.confirm ?? confirmAction;
    this.id = 'odsc-magics-deployments';
    this.addClass('jp-OdscMagics-panel');
    this.title.caption = this._trans.__('LLM Deployments');
    this._build();
    this._model.changed.connect(this.render, this);
    this.render();
  }

  get model(): DeploymentsModel {
    return this._model;
  }

  /**
   * Draw the list (or the loading, empty or error state) from the model.
   */
  render(): void {
    const trans = this._trans;
    const body = this._body;
    body.replaceChildren();
    const model = this._model;
    this.node.dataset.status = model.status;
    if (model.status === 'loading') {
      body.appendChild(message('jp-OdscMagics-loading', trans.__('Loading deployments…')));
      return;
    }
    if (model.status === 'error' && model.error) {
      const { title, message: text, hint } = describeError(model.error, trans);
      const box = element('div', 'jp-OdscMagics-error');
      box.appendChild(element('div', 'jp-OdscMagics-errorTitle', title));
      box.appendChild(element('div', 'jp-OdscMagics-errorMessage', text));
      if (hint) {
        box.appendChild(element('div', 'jp-OdscMagics-hint', hint));
      }
      body.appendChild(box);
      return;
    }
    if (model.deployments.length === 0) {
      const box = element('div', 'jp-OdscMagics-empty');
      box.appendChild(element('div', '', trans.__('No model deployments yet.')));
      box.appendChild(
        element(
          'div',
          'jp-OdscMagics-hint',
          trans.__('Click "New deployment" to insert a %llm_deploy cell into the current notebook.')
        )
      );
      body.appendChild(box);
      return;
    }
    const list = element('ul', 'jp-OdscMagics-list');
    for (const deployment of model.deployments) {
      list.appendChild(this._item(deployment));
    }
    body.appendChild(list);
  }

  /**
   * Read the list again each time the panel is shown.
   */
  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this._model.refresh();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._model.changed.disconnect(this.render, this);
    super.dispose();
  }

  private _build(): void {
    const trans = this._trans;
    const header = element('div', 'jp-OdscMagics-header');
    header.appendChild(element('h2', 'jp-OdscMagics-title', trans.__('LLM Deployments')));
    const tools = element('div', 'jp-OdscMagics-tools');
    tools.appendChild(
      button(trans.__('New deployment'), 'new', trans.__('Insert a %llm_deploy cell'), () =>
        this._actions.insertDeployCell()
      )
    );
    tools.appendChild(
      button(trans.__('Refresh'), 'refresh', trans.__('Read the deployments again'), () =>
        void this._model.refresh()
      )
    );
    header.appendChild(tools);
    this.node.appendChild(header);
    this._body = element('div', 'jp-OdscMagics-body');
    this.node.appendChild(this._body);
  }

  private _item(deployment: IDeployment): HTMLElement {
    const trans = this._trans;
    const item = element('li', 'jp-OdscMagics-item');
    item.dataset.deploymentId = deployment.id;
    item.dataset.deploymentName = deployment.name;
    item.dataset.state = deployment.state;

    const head = element('div', 'jp-OdscMagics-itemHead');
    head.appendChild(element('span', 'jp-OdscMagics-name', deployment.name));
    const badge = element('span', `jp-OdscMagics-badge jp-OdscMagics-state-${deployment.state}`, deployment.state);
    badge.title = deployment.lifecycle_details || deployment.state;
    head.appendChild(badge);
    item.appendChild(head);

    const meta = element('div', 'jp-OdscMagics-meta');
    for (const [label, value] of [
      [trans.__('Shape'), deployment.shape],
      [trans.__('Model'), deployment.model],
      [trans.__('Created'), formatCreated(deployment.created)]
    ] as const) {
      if (value) {
        const row = element('div', 'jp-OdscMagics-metaRow');
        row.appendChild(element('span', 'jp-OdscMagics-label', label));
        row.appendChild(element('span', 'jp-OdscMagics-value', value));
        meta.appendChild(row);
      }
    }
    item.appendChild(meta);

    const busy = TRANSITIONAL_STATES.includes(deployment.state);
    const actions = element('div', 'jp-OdscMagics-actions');
    actions.appendChild(
      button(trans.__('Copy endpoint'), 'copy', predictEndpoint(deployment), () => {
        this._actions.copy(predictEndpoint(deployment));
        this._actions.notify(trans.__('Copied %1', predictEndpoint(deployment)), 'success');
      })
    );
    actions.appendChild(
      button(trans.__('Predict cell'), 'predict', trans.__('Insert a %%llm_predict cell below the active cell'), () =>
        this._actions.insertPredictCell(deployment)
      , deployment.state !== 'ACTIVE')
    );
    actions.appendChild(
      button(trans.__('Logs'), 'logs', trans.__('Show the recent log lines'), () => void this._toggleLogs(deployment, item))
    );
    if (deployment.state === 'INACTIVE') {
      actions.appendChild(
        button(trans.__('Activate'), 'activate', trans.__('Activate this deployment'), () =>
          void this._act(deployment, 'activate')
        )
      );
    } else {
      actions.appendChild(
        button(trans.__('Deactivate'), 'deactivate', trans.__('Deactivate this deployment'), () =>
          void this._act(deployment, 'deactivate')
        , deployment.state !== 'ACTIVE')
      );
    }
    actions.appendChild(
      button(trans.__('Delete'), 'delete', trans.__('Delete this deployment'), () =>
        void this._act(deployment, 'delete')
      , busy)
    );
    item.appendChild(actions);

    const logs = this._openLogs.get(deployment.id);
    if (logs) {
      item.appendChild(logs);
    }
    return item;
  }

  private async _act(deployment: IDeployment, action: Action): Promise<void> {
    const trans = this._trans;
    if (!(await this._confirm(deployment, action, trans))) {
      return;
    }
    try {
      await this._model.act(deployment.id, action);
    } catch (error) {
      const { message: text, hint } = describeError(error as Error, trans);
      this._actions.notify([text, hint].filter(Boolean).join(' '), 'error');
    }
  }

  private async _toggleLogs(deployment: IDeployment, item: HTMLElement): Promise<void> {
    const open = this._openLogs.get(deployment.id);
    if (open) {
      this._openLogs.delete(deployment.id);
      open.remove();
      return;
    }
    const box = element('pre', 'jp-OdscMagics-logs', this._trans.__('Reading logs…'));
    this._openLogs.set(deployment.id, box);
    item.appendChild(box);
    try {
      const lines = await this._model.logs(deployment.id);
      box.textContent = lines.length
        ? lines.map(line => `${line.time} ${line.kind} ${line.message}`).join('\n')
        : this._trans.__('No log lines yet.');
    } catch (error) {
      const { message: text, hint } = describeError(error as Error, this._trans);
      box.classList.add('jp-OdscMagics-logsError');
      box.textContent = [text, hint].filter(Boolean).join('\n');
    }
  }

  private _model: DeploymentsModel;
  private _actions: IPanelActions;
  private _trans: TranslationBundle;
  private _confirm: DeploymentsPanel.Confirm;
  private _body!: HTMLElement;
  private _openLogs = new Map<string, HTMLElement>();
}

/**
 * The DeploymentsPanel's types.
 */
export namespace DeploymentsPanel {
  /**
   * Asks the user to confirm a lifecycle action; resolves true to go ahead.
   */
  export type Confirm = (deployment: IDeployment, action: Action, trans: TranslationBundle) => Promise<boolean>;

  export interface IOptions {
    model: DeploymentsModel;
    actions: IPanelActions;
    translator?: TranslationBundle;
    confirm?: Confirm;
  }
}

/**
 * The confirmation dialog of a lifecycle action.
 */
export async function confirmAction(
  deployment: IDeployment,
  action: Action,
  trans: TranslationBundle
): Promise<boolean> {
  const texts: Record<Action, { title: string; body: string; label: string }> = {
    activate: {
      title: trans.__('Activate %1?', deployment.name),
      body: trans.__('The deployment starts serving again, and its compute is billed while it is active.'),
      label: trans.__('Activate')
    },
    deactivate: {
      title: trans.__('Deactivate %1?', deployment.name),
      body: trans.__('The deployment stops serving predictions until it is activated again.'),
      label: trans.__('Deactivate')
    },
    delete: {
      title: trans.__('Delete %1?', deployment.name),
      body:
        deployment.state === 'ACTIVE'
          ? trans.__('The deployment is ACTIVE: it stops serving and is deleted. This cannot be undone.')
          : trans.__('The deployment is deleted. This cannot be undone.'),
      label: trans.__('Delete')
    }
  };
  const text = texts[action];
  const result = await showDialog({
    title: text.title,
    body: text.body,
    buttons: [
      Dialog.cancelButton({ label: trans.__('Cancel') }),
      action === 'activate'
        ? Dialog.okButton({ label: text.label })
        : Dialog.warnButton({ label: text.label })
    ]
  });
  return result.button.accept;
}

function element(tag: string, className: string, text?: string): HTMLElement {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function message(className: string, text: string): HTMLElement {
  return element('div', className, text);
}

function button(label: string, action: string, title: string, onClick: () => void, disabled = false): HTMLButtonElement {
  const node = document.createElement('button');
  node.type = 'button';
  node.className = `jp-OdscMagics-button jp-OdscMagics-action-${action}`;
  node.dataset.action = action;
  node.textContent = label;
  node.title = title;
  node.disabled = disabled;
  node.addEventListener('click', onClick);
  return node;
}
