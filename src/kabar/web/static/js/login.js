// Login and invitation acceptance. The login response sets the HttpOnly session cookie.
import { api, ApiError } from './api.js';
import { busy } from './dom.js';

const login = document.getElementById('login-form');
if (login) {
  login.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(login, async () => {
      const email = login.elements.email.value.trim();
      const password = login.elements.password.value;
      if (!email || !password) throw new ApiError(400, { detail: 'Enter your email and password.' });
      await api('POST', '/v1/auth/login', { json: { email, password } });
      const next = login.dataset.next || '/';
      window.location.assign(next.startsWith('/') && !next.startsWith('//') ? next : '/');
    });
  });
}

const accept = document.getElementById('accept-form');
if (accept) {
  accept.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(accept, async () => {
      const body = {
        token: accept.elements.token.value.trim(),
        password: accept.elements.password.value || null,
        name: accept.elements.name.value.trim() || null,
      };
      const result = await api('POST', '/v1/invitations/accept', { json: body });
      // Accepting returns a bearer token; the browser needs the cookie session, so log in.
      if (body.password) {
        try {
          await api('POST', '/v1/auth/login', { json: { email: result.user.email, password: body.password } });
        } catch (err) {
          window.location.assign('/login');
          return;
        }
      }
      window.location.assign(`/w/${encodeURIComponent(result.workspace_id)}/inbox`);
    });
  });
}
