import { ServerConnection } from '@jupyterlab/services';
import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { IDeployment } from '../api';
import { DeploymentsModel } from '../model';
import { confirmAction, describeError, DeploymentsPanel, IPanelActions, predictEndpoint } from '../panel';
import { ApiError } from '../request';
import { deployment, FakeApi } from './fakes';

function actions(): IPanelActions & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    insertPredictCell: d => calls.push(`predict ${d.name}`),
    insertDeployCell: () => calls.push('deploy'),
    copy: text => calls.push(`copy ${text}`),
    notify: (message, type) => calls.push(`${type} ${message}`)
  };
}

async function panelWith(
  api: FakeApi,
  confirm: DeploymentsPanel.Confirm = async () => true
): Promise<{ panel: DeploymentsPanel; host: ReturnType<typeof actions>; model: DeploymentsModel }> {
  const model = new DeploymentsModel({ api });
  const host = actions();
  const panel = new DeploymentsPanel({ model, actions: host, confirm });
  Widget.attach(panel, document.body);
  await model.refresh();
  return { panel, host, model };
}

function button(panel: DeploymentsPanel, name: string, action: string): HTMLButtonElement {
  return panel.node.querySelector(
    `[data-deployment-name="${name}"] button[data-action="${action}"]`
  ) as HTMLButtonElement;
}

describe('DeploymentsPanel', () => {
  it('shows loading until the first answer', () => {
    const model = new DeploymentsModel({ api: new FakeApi([[]]) });
    const panel = new DeploymentsPanel({ model, actions: actions() });
    expect(panel.node.textContent).toContain('Loading deployments');
  });

  it('lists each deployment with badge, shape, model and created time', async () => {
    const { panel } = await panelWith(
      new FakeApi([[deployment(), deployment({ id: 'b', name: 'other', state: 'CREATING', chat: true })]])
    );
    const items = panel.node.querySelectorAll('.jp-OdscMagics-item');
    expect(items.length).toBe(2);
    const first = items[0] as HTMLElement;
    expect(first.querySelector('.jp-OdscMagics-badge')!.textContent).toBe('ACTIVE');
    expect(first.textContent).toContain('VM.GPU.A10.1');
    expect(first.textContent).toContain('Mistral-7B-Instruct-v0.3');
    expect(first.textContent).toContain('2026');
    const second = items[1] as HTMLElement;
    expect(second.querySelector('.jp-OdscMagics-state-CREATING')).not.toBeNull();
    // Nothing to do on a deployment that is still being created, except reading about it.
    expect(button(panel, 'other', 'predict').disabled).toBe(true);
    expect(button(panel, 'other', 'delete').disabled).toBe(true);
    panel.dispose();
  });

  it('shows an empty state that points at New deployment', async () => {
    const { panel, host } = await panelWith(new FakeApi([[]]));
    expect(panel.node.textContent).toContain('No model deployments yet');
    (panel.node.querySelector('button[data-action="new"]') as HTMLButtonElement).click();
    expect(host.calls).toEqual(['deploy']);
    panel.dispose();
  });

  it('shows what to configure when there are no credentials', async () => {
    const response = new Response('', { status: 400 });
    const error = new ApiError(response, {
      error: 'ConfigurationError',
      kind: 'configuration',
      message: 'The OCI config file ~/.oci/config does not exist.',
      hint: 'Create it with `oci setup config`.'
    });
    const { panel } = await panelWith(new FakeApi([error]));
    const text = panel.node.querySelector('.jp-OdscMagics-error')!.textContent!;
    expect(text).toContain('not configured');
    expect(text).toContain('~/.oci/config does not exist');
    expect(text).toContain('oci setup config');
    expect(text).toContain('ODSC_MAGICS_BACKEND=local');
    panel.dispose();
  });

  it('explains a missing server extension', () => {
    const error = new ServerConnection.ResponseError(new Response('', { status: 404 }), 'Not Found');
    expect(describeError(error).hint).toContain('jupyter server extension enable odsc_magics');
  });

  it('copies the predict endpoint and inserts a predict cell', async () => {
    const { panel, host } = await panelWith(new FakeApi([[deployment()]]));
    button(panel, 'my-llm', 'copy').click();
    button(panel, 'my-llm', 'predict').click();
    expect(host.calls[0]).toBe(`copy ${predictEndpoint(deployment())}`);
    expect(predictEndpoint(deployment())).toMatch(/\/predict$/);
    expect(host.calls).toContain('predict my-llm');
    panel.dispose();
  });

  it('deactivates after confirmation and shows the new badge', async () => {
    const api = new FakeApi([[deployment()], [deployment({ state: 'INACTIVE' })]]);
    const asked: string[] = [];
    const { panel, model } = await panelWith(api, async (d, action) => {
      asked.push(`${action} ${d.name}`);
      return true;
    });
    const done = new Promise<void>(resolve =>
      model.changed.connect(() => model.deployments[0].state === 'INACTIVE' && resolve())
    );
    button(panel, 'my-llm', 'deactivate').click();
    await done;
    expect(asked).toEqual(['deactivate my-llm']);
    expect(api.actions).toEqual([[deployment().id, 'deactivate']]);
    expect(panel.node.querySelector('.jp-OdscMagics-badge')!.textContent).toBe('INACTIVE');
    expect(button(panel, 'my-llm', 'activate')).not.toBeNull();
    panel.dispose();
  });

  it('does nothing when the confirmation is cancelled', async () => {
    const api = new FakeApi([[deployment()]]);
    const { panel } = await panelWith(api, async () => false);
    button(panel, 'my-llm', 'delete').click();
    await new Promise(resolve => setTimeout(resolve, 0));
    expect(api.actions).toEqual([]);
    panel.dispose();
  });

  it('shows recent log lines', async () => {
    const { panel } = await panelWith(new FakeApi([[deployment()]]));
    button(panel, 'my-llm', 'logs').click();
    await new Promise(resolve => setTimeout(resolve, 0));
    const logs = panel.node.querySelector('.jp-OdscMagics-logs')!;
    expect(logs.textContent).toContain('ready');
    panel.dispose();
  });
});

// Text from the service (names, states, messages, models, shapes, log lines) that would run a handler if it
// became markup.
const IMG = '<img src=x onerror="window.__odsc_xss=1">';
const SVG = '<svg onload="window.__odsc_xss=1"></svg>';
const SCRIPT = '<script>window.__odsc_xss=1</script>';
const PAYLOAD = `${IMG} ${SVG} ${SCRIPT}`;
const MARKUP = 'img, svg, script, [onerror], [onload], a[href^="javascript:"]';

describe('DeploymentsPanel with untrusted text', () => {
  afterEach(() => {
    document.body.replaceChildren();
  });

  it('shows names, states, details, shapes and models as text', async () => {
    const hostile = deployment({
      name: `name ${PAYLOAD}`,
      state: `FAILED ${IMG}` as IDeployment['state'],
      lifecycle_details: `details ${PAYLOAD}`,
      shape: `shape ${SVG}`,
      model: `model ${SCRIPT}`
    });
    const { panel } = await panelWith(new FakeApi([[hostile]]));
    expect(panel.node.querySelectorAll(MARKUP).length).toBe(0);
    const item = panel.node.querySelector('.jp-OdscMagics-item')!;
    expect(item.querySelector('.jp-OdscMagics-name')!.textContent).toBe(`name ${PAYLOAD}`);
    const badge = item.querySelector('.jp-OdscMagics-badge') as HTMLElement;
    expect(badge.textContent).toBe(`FAILED ${IMG}`);
    expect(badge.title).toBe(`details ${PAYLOAD}`);
    const values = Array.from(item.querySelectorAll('.jp-OdscMagics-value')).map(node => node.textContent);
    expect(values.slice(0, 2)).toEqual([`shape ${SVG}`, `model ${SCRIPT}`]);
    panel.dispose();
  });

  it('shows log lines as text', async () => {
    const api = new FakeApi([[deployment()]]);
    api.logLines = [
      { time: '2026-01-02T03:04:05Z', kind: 'predict', message: `ERROR: ${PAYLOAD}` },
      { time: '2026-01-02T03:04:06Z', kind: 'predict', message: '````\n' + IMG }
    ];
    const { panel } = await panelWith(api);
    button(panel, 'my-llm', 'logs').click();
    await new Promise(resolve => setTimeout(resolve, 0));
    const logs = panel.node.querySelector('.jp-OdscMagics-logs')!;
    expect(logs.textContent).toBe(
      `2026-01-02T03:04:05Z predict ERROR: ${PAYLOAD}\n2026-01-02T03:04:06Z predict \`\`\`\`\n${IMG}`
    );
    expect(panel.node.querySelectorAll(MARKUP).length).toBe(0);
    panel.dispose();
  });

  it('shows an error message from the server as text', async () => {
    const response = new Response('', { status: 400 });
    const error = new ApiError(response, {
      error: 'ServiceError',
      kind: 'service',
      message: `No deployment named ${PAYLOAD}`,
      hint: `Try ${IMG}`
    });
    const { panel } = await panelWith(new FakeApi([error]));
    expect(panel.node.querySelectorAll(MARKUP).length).toBe(0);
    expect(panel.node.querySelector('.jp-OdscMagics-errorMessage')!.textContent).toBe(
      `No deployment named ${PAYLOAD}`
    );
    expect(panel.node.textContent).toContain(`Try ${IMG}`);
    panel.dispose();
  });

  it('names the deployment as text in the confirmation dialog', async () => {
    const answer = confirmAction(deployment({ name: `name ${PAYLOAD}` }), 'delete', nullTranslator.load('x'));
    let dialog: HTMLElement | null = null;
    for (let i = 0; i < 50 && !dialog; i++) {
      await new Promise(resolve => setTimeout(resolve, 10));
      dialog = document.body.querySelector('.jp-Dialog');
    }
    expect(dialog).not.toBeNull();
    expect(dialog!.querySelectorAll('img, script, [onerror], [onload]').length).toBe(0);
    expect(dialog!.textContent).toContain(`Delete name ${PAYLOAD}?`);
    (dialog!.querySelector('.jp-mod-reject') as HTMLButtonElement).click();
    expect(await answer).toBe(false);
  });
});
