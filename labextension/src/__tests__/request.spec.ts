import { ServerConnection } from '@jupyterlab/services';

import { ApiError, requestAPI } from '../request';

function settingsAnswering(status: number, body: string): {
  settings: ServerConnection.ISettings;
  urls: string[];
} {
  const urls: string[] = [];
  const fetch = async (input: RequestInfo | URL) => {
    urls.push(String(input instanceof Request ? input.url : input));
    return new Response(body, { status, headers: { 'Content-Type': 'application/json' } });
  };
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://localhost:8888/',
    fetch: fetch as any,
    Request: Request,
    Headers: Headers
  });
  return { settings, urls };
}

describe('requestAPI', () => {
  it('calls /odsc-magics/<endpoint> and decodes JSON', async () => {
    const { settings, urls } = settingsAnswering(200, '{"deployments": []}');
    const data = await requestAPI<{ deployments: unknown[] }>('deployments', {}, settings);
    expect(data).toEqual({ deployments: [] });
    expect(urls[0].split('?')[0]).toBe('http://localhost:8888/odsc-magics/deployments');
  });

  it('turns an odsc-magics error body into an ApiError with kind and hint', async () => {
    const body = JSON.stringify({
      error: 'ConfigurationError',
      kind: 'configuration',
      message: 'No OCI config file',
      hint: 'Create ~/.oci/config'
    });
    const { settings } = settingsAnswering(400, body);
    const error: any = await requestAPI('deployments', {}, settings).catch((e: any) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toBeInstanceOf(ServerConnection.ResponseError);
    expect(error.kind).toBe('configuration');
    expect(error.hint).toBe('Create ~/.oci/config');
    expect(error.message).toBe('No OCI config file');
  });

  it('keeps other error statuses as ResponseError', async () => {
    const { settings } = settingsAnswering(404, '<html>Not Found</html>');
    const error: any = await requestAPI('deployments', {}, settings).catch((e: any) => e);
    expect(error).toBeInstanceOf(ServerConnection.ResponseError);
    expect(error).not.toBeInstanceOf(ApiError);
    expect(error.response.status).toBe(404);
  });
});
