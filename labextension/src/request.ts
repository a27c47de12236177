import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * The URL namespace of the odsc_magics server extension.
 */
export const NAMESPACE = 'odsc-magics';

/**
 * The JSON body the server extension answers with when the deployment API raised an error.
 */
export interface IErrorBody {
  error: string;
  kind: string;
  message: string;
  hint: string;
  opc_request_id?: string | null;
}

/**
 * An error answered by the server extension: what went wrong (`message`), what to do (`hint`), and its
 * `kind` ("configuration", "validation", "not_found", "not_active", "unreachable", "service").
 */
export class ApiError extends ServerConnection.ResponseError {
  constructor(response: Response, body: IErrorBody) {
    super(response, body.message);
    this.kind = body.kind;
    this.hint = body.hint ?? '';
    this.status = response.status;
  }

  readonly kind: string;
  readonly hint: string;
  readonly status: number;
}

function isErrorBody(data: unknown): data is IErrorBody {
  return (
    typeof data === 'object' &&
    data !== null &&
    typeof (data as IErrorBody).message === 'string' &&
    typeof (data as IErrorBody).kind === 'string'
  );
}

/**
 * Call the server extension's REST API.
 *
 * @param endPoint - path under /odsc-magics/
 * @param init - fetch options (method, body)
 * @param settings - server connection settings (the page's by default)
 * @returns the decoded JSON answer
 * @throws ApiError for an odsc-magics error, ServerConnection.ResponseError for other error statuses
 *   (404 when the server extension is not enabled), ServerConnection.NetworkError when the server is unreachable
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, NAMESPACE, endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON (e.g. the server's HTML 404 page): keep the text
    }
  }
  if (!response.ok) {
    if (isErrorBody(data)) {
      throw new ApiError(response, data);
    }
    throw new ServerConnection.ResponseError(response, typeof data === 'string' ? data : data?.message);
  }
  return data as T;
}
