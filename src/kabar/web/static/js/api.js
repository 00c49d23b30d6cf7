// The JSON API from the browser: session cookie + X-CSRF-Token, problem+json turned into ApiError.
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `Request failed (${status})`);
    this.status = status;
    this.problem = problem || {};
    this.type = this.problem.type || '';
    this.errors = Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)kabar_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : '';
}

export const ws = document.body.dataset.ws || '';
export const wsBase = `/v1/workspaces/${encodeURIComponent(ws)}`;

/** api('GET', '/v1/me') · api('POST', path, {json}) · api('POST', path, {form: FormData}) */
export async function api(method, path, { json, form, headers = {}, query, signal } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, credentials: 'same-origin', signal };
  if (method !== 'GET' && method !== 'HEAD') init.headers['X-CSRF-Token'] = csrfToken();
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value === undefined || value === null || value === '') continue;
      for (const v of Array.isArray(value) ? value : [value]) params.append(key, String(v));
    }
    const qs = params.toString();
    if (qs) url += (url.includes('?') ? '&' : '?') + qs;
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, { title: 'Network error', detail: 'Cannot reach Kabar. Check your connection.' });
  }
  if (response.status === 401 && !path.startsWith('/v1/auth/login')) {
    window.location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new ApiError(401, { title: 'Signed out' });
  }
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  const body = type.includes('json') ? await response.json().catch(() => null) : await response.text();
  if (!response.ok) throw new ApiError(response.status, typeof body === 'object' ? body : { detail: String(body).slice(0, 300) });
  return body;
}

/** A random id for Idempotency-Key and optimistic rows. */
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}
