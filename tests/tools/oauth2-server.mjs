// A real OAuth2 authorization server for the tests: panva's oidc-provider (npm, installed by
// scripts/test-tools), configured — not written — here: one client allowed the client
// credentials grant, authenticated with client_secret_basic or client_secret_post, tokens that
// last TTL seconds. Listens on loopback only. Prints one JSON line per event the tests read:
// {"event":"ready"}, {"event":"issued","token":…}, {"event":"refused","error":…}.
//
// node oauth2-server.mjs PORT CLIENT_ID CLIENT_SECRET TTL_SECONDS [basic|post]
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, ttl, method] = process.argv.slice(2);
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: method === 'post' ? 'client_secret_post' : 'client_secret_basic',
  }],
  scopes: ['cancelamentos'],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
  },
  ttl: { ClientCredentials: Number(ttl) },
  cookies: { keys: ['chave-de-teste-dos-cookies'] },
});
// Opaque access tokens: the value is the token's id.
provider.on('client_credentials.saved', (token) => {
  console.log(JSON.stringify({ event: 'issued', token: token.jti }));
});
provider.on('grant.error', (_ctx, error) => {
  console.log(JSON.stringify({ event: 'refused', error: error.error }));
});
provider.listen(Number(port), '127.0.0.1', () => console.log(JSON.stringify({ event: 'ready' })));
