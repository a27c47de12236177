import { DeploymentsModel } from '../model';
import { deployment, FakeApi } from './fakes';

describe('DeploymentsModel', () => {
  afterEach(() => jest.useRealTimers());

  it('starts loading, then holds the list and emits changed', async () => {
    const api = new FakeApi([[deployment()]]);
    const model = new DeploymentsModel({ api });
    expect(model.status).toBe('loading');
    let emitted = 0;
    model.changed.connect(() => emitted++);
    await model.refresh();
    expect(model.status).toBe('ready');
    expect(model.deployments.map(d => d.name)).toEqual(['my-llm']);
    expect(emitted).toBe(1);
    expect(model.polling).toBe(false);
    model.dispose();
  });

  it('keeps the error of a failed refresh', async () => {
    const model = new DeploymentsModel({ api: new FakeApi([new Error('boom')]) });
    await model.refresh();
    expect(model.status).toBe('error');
    expect(model.error?.message).toBe('boom');
    expect(model.polling).toBe(false);
  });

  it('refreshes itself while a deployment is CREATING, UPDATING or DELETING, and stops after', async () => {
    jest.useFakeTimers();
    const api = new FakeApi([
      [deployment({ state: 'CREATING' })],
      [deployment({ state: 'UPDATING' })],
      [deployment({ state: 'ACTIVE' })]
    ]);
    const model = new DeploymentsModel({ api, pollInterval: 1000 });
    await model.refresh();
    expect(model.polling).toBe(true);
    await jest.advanceTimersByTimeAsync(1000);
    expect(api.calls).toBe(2);
    expect(model.polling).toBe(true);
    await jest.advanceTimersByTimeAsync(1000);
    expect(api.calls).toBe(3);
    expect(model.deployments[0].state).toBe('ACTIVE');
    expect(model.polling).toBe(false);
    await jest.advanceTimersByTimeAsync(5000);
    expect(api.calls).toBe(3);
    model.dispose();
  });

  it('acts through the API, shows the new state at once, then refreshes', async () => {
    const api = new FakeApi([[deployment()], [deployment({ state: 'INACTIVE' })]]);
    const model = new DeploymentsModel({ api });
    await model.refresh();
    const states: string[] = [];
    model.changed.connect(() => states.push(model.deployments[0].state));
    await model.act(deployment().id, 'deactivate');
    expect(api.actions).toEqual([[deployment().id, 'deactivate']]);
    expect(states).toEqual(['UPDATING', 'INACTIVE']);
  });

  it('stops polling when disposed', async () => {
    jest.useFakeTimers();
    const api = new FakeApi([[deployment({ state: 'DELETING' })]]);
    const model = new DeploymentsModel({ api, pollInterval: 1000 });
    await model.refresh();
    model.dispose();
    await jest.advanceTimersByTimeAsync(5000);
    expect(api.calls).toBe(1);
  });
});
