import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { Action, IDeployment, IDeploymentsApi, ILogLine } from './api';

/**
 * Lifecycle states during which the list keeps refreshing itself.
 */
export const TRANSITIONAL_STATES = ['CREATING', 'UPDATING', 'DELETING'];

/**
 * Where the list stands: first load, loaded, or failed.
 */
export type Status = 'loading' | 'ready' | 'error';

/**
 * The deployments shown by the panel, refreshed on demand and, while any deployment is changing state,
 * every `pollInterval` milliseconds.
 */
export class DeploymentsModel implements IDisposable {
  constructor(options: DeploymentsModel.IOptions) {
    this._api = options.api;
    this._pollInterval = options.pollInterval ?? 2000;
  }

  /**
   * Emitted whenever the list, the status or the error changes.
   */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get deployments(): readonly IDeployment[] {
    return this._deployments;
  }

  get status(): Status {
    return this._status;
  }

  /**
   * The error of the last refresh, when it failed.
   */
  get error(): Error | null {
    return this._error;
  }

  /**
   * True while a refresh is scheduled because a deployment is changing state.
   */
  get polling(): boolean {
    return this._timer !== null;
  }

  /**
   * Milliseconds between refreshes while a deployment changes state.
   */
  get pollInterval(): number {
    return this._pollInterval;
  }

  set pollInterval(value: number) {
    this._pollInterval = Math.max(100, value);
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /**
   * The deployment with this id, if listed.
   */
  find(id: string): IDeployment | undefined {
    return this._deployments.find(d => d.id === id);
  }

  /**
   * Read the list again; schedules the next refresh while any deployment is in a transitional state.
   */
  async refresh(): Promise<void> {
    if (this._isDisposed) {
      return;
    }
    this._clearTimer();
    const ticket = ++this._ticket;
    try {
      const found = await this._api.list();
      if (ticket !== this._ticket || this._isDisposed) {
        return;
      }
      this._deployments = found;
      this._status = 'ready';
      this._error = null;
    } catch (error) {
      if (ticket !== this._ticket || this._isDisposed) {
        return;
      }
      this._status = 'error';
      this._error = error as Error;
    }
    this._schedule();
    this._changed.emit();
  }

  /**
   * Activate, deactivate or delete a deployment, then refresh (which polls until the change is done).
   */
  async act(id: string, action: Action): Promise<IDeployment> {
    const updated = await this._api.act(id, action);
    this._deployments = this._deployments.map(d => (d.id === id ? updated : d));
    this._changed.emit();
    await this.refresh();
    return updated;
  }

  /**
   * The deployment's recent log lines (oldest first).
   */
  logs(id: string, tail = 50): Promise<ILogLine[]> {
    return this._api.logs(id, tail);
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._clearTimer();
    Signal.clearData(this);
  }

  private _schedule(): void {
    const changing = this._deployments.some(d => TRANSITIONAL_STATES.includes(d.state));
    if (changing && this._status === 'ready') {
      this._timer = setTimeout(() => {
        this._timer = null;
        void this.refresh();
      }, this._pollInterval);
    }
  }

  private _clearTimer(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _api: IDeploymentsApi;
  private _pollInterval: number;
  private _deployments: IDeployment[] = [];
  private _status: Status = 'loading';
  private _error: Error | null = null;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _ticket = 0;
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
}

/**
 * The DeploymentsModel's types.
 */
export namespace DeploymentsModel {
  export interface IOptions {
    api: IDeploymentsApi;
    /**
     * Milliseconds between refreshes while a deployment changes state (default 2000).
     */
    pollInterval?: number;
  }
}
