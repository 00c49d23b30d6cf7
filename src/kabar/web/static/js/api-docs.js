// The API reference at /schema: Swagger UI from our own static files (vendor/swagger-ui), started
// here rather than in an inline script, so the page runs under the same CSP as every other page.
const root = document.getElementById('api-docs');
window.SwaggerUIBundle({
  url: root.dataset.schemaUrl,
  domNode: root,
  deepLinking: true,
  // Never send the schema to a third-party validator.
  validatorUrl: null,
});
