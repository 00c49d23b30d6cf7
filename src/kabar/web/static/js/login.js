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
      const token = accept.elements.token.value.trim();
      // An address with an account: the signed-in holder accepts with one click, no password.
      if (accept.dataset.mode === 'existing') {
        const result = await api('POST', '/v1/invitations/accept', { json: { token } });
        window.location.assign(`/w/${encodeURIComponent(result.workspace_id)}/inbox`);
        return;
      }
      const body = { token, password: accept.elements.password.value || null, name: accept.elements.name.value.trim() || null };
      const result = await api('POST', '/v1/invitations/accept', { json: body });
      // Accepting returns a bearer token; the browser needs the cookie session, so log in.
      try {
        await api('POST', '/v1/auth/login', { json: { email: result.user.email, password: body.password } });
      } catch (err) {
        window.location.assign('/login');
        return;
      }
      window.location.assign(`/w/${encodeURIComponent(result.workspace_id)}/inbox`);
    });
  });
}

const forgot = document.getElementById('forgot-form');
if (forgot) {
  forgot.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(forgot, async () => {
      const email = forgot.elements.email.value.trim();
      if (!email) throw new ApiError(400, { detail: 'Enter your email.' });
      await api('POST', '/v1/auth/password-reset', { json: { email } });
      forgot.hidden = true;
      document.getElementById('forgot-sent').hidden = false;
    });
  });
}

const reset = document.getElementById('reset-form');
if (reset) {
  reset.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(reset, async () => {
      await api('POST', '/v1/auth/password-reset/confirm', { json: { token: reset.elements.token.value, password: reset.elements.password.value } });
      reset.hidden = true;
      document.getElementById('reset-done').hidden = false;
    });
  });
}

const verify = document.getElementById('verify-form');
if (verify) {
  verify.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(verify, async () => {
      await api('POST', '/v1/auth/verify-email', { json: { token: verify.elements.token.value } });
      verify.hidden = true;
      document.getElementById('verify-done').hidden = false;
    });
  });
}
