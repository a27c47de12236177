import { Action, IDeployment, IDeploymentsApi, ILogLine } from '../api';

/**
 * A deployment with defaults for the fields a test does not care about.
 */
export function deployment(overrides: Partial<IDeployment> = {}): IDeployment {
  return {
    id: 'ocid1.datasciencemodeldeployment.oc1..a',
    name: 'my-llm',
    state: 'ACTIVE',
    url: 'https://md.example/ocid1.datasciencemodeldeployment.oc1..a',
    shape: 'VM.GPU.A10.1',
    model: 'Mistral-7B-Instruct-v0.3',
    model_id: 'ocid1.datasciencemodel.oc1..m',
    created: '2026-01-02T03:04:05Z',
    chat: false,
    lifecycle_details: null,
    ...overrides
  };
}

/**
 * An in-memory API: `lists` are answered in turn (the last one repeats); errors are thrown.
 */
export class FakeApi implements IDeploymentsApi {
  constructor(public lists: Array<IDeployment[] | Error>) {}

  calls = 0;
  actions: Array<[string, Action]> = [];

  async list(): Promise<IDeployment[]> {
    const answer = this.lists[Math.min(this.calls, this.lists.length - 1)];
    this.calls++;
    if (answer instanceof Error) {
      throw answer;
    }
    return answer;
  }

  /**
   * The log lines answered for every deployment (default: one "ready" line naming the id).
   */
  logLines: ILogLine[] | null = null;

  async logs(id: string, tail = 50): Promise<ILogLine[]> {
    return this.logLines ?? [{ time: '2026-01-02T03:04:05Z', kind: 'predict', message: `ready ${id} ${tail}` }];
  }

  async act(id: string, action: Action): Promise<IDeployment> {
    this.actions.push([id, action]);
    return deployment({ id, state: action === 'delete' ? 'DELETING' : 'UPDATING' });
  }
}
