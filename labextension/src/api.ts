import { requestAPI } from './request';

/**
 * A model deployment as the server extension describes it.
 */
export interface IDeployment {
  id: string;
  name: string;
  state: string;
  url: string;
  shape: string | null;
  model: string | null;
  model_id: string | null;
  created: string | null;
  chat: boolean;
  lifecycle_details: string | null;
}

/**
 * One log line of a deployment.
 */
export interface ILogLine {
  time: string;
  kind: string;
  message: string;
}

/**
 * The lifecycle actions the panel offers.
 */
export type Action = 'activate' | 'deactivate' | 'delete';

/**
 * What the panel needs from the server: list, read logs, act.
 */
export interface IDeploymentsApi {
  list(): Promise<IDeployment[]>;
  logs(id: string, tail?: number): Promise<ILogLine[]>;
  act(id: string, action: Action): Promise<IDeployment>;
}

/**
 * The server extension's REST API under /odsc-magics/.
 */
export class RestApi implements IDeploymentsApi {
  async list(): Promise<IDeployment[]> {
    const data = await requestAPI<{ deployments: IDeployment[] }>('deployments');
    return data.deployments;
  }

  async logs(id: string, tail = 50): Promise<ILogLine[]> {
    const data = await requestAPI<{ logs: ILogLine[] }>(
      `deployments/${encodeURIComponent(id)}/logs?tail=${tail}`
    );
    return data.logs;
  }

  async act(id: string, action: Action): Promise<IDeployment> {
    const path = `deployments/${encodeURIComponent(id)}`;
    if (action === 'delete') {
      // The panel has asked for confirmation already, so an ACTIVE deployment may be deleted.
      return requestAPI<IDeployment>(`${path}?force=true`, { method: 'DELETE' });
    }
    return requestAPI<IDeployment>(`${path}/${action}`, { method: 'POST', body: '{}' });
  }
}
