// Benchmark peer for bench/run.sh: node oidc-provider configured like oxidp's bench
// setup for the cases they share (discovery, JWKS, client_credentials with an RS256 JWT
// access token).
//   PEER_PORT     port on 127.0.0.1 (default 9392); the issuer is http://127.0.0.1:PEER_PORT
//   PEER_WORKERS  processes sharing the port through node:cluster (default 1, a plain
//                 process, as a default oidc-provider deployment runs; the core count is fairer to a multi-core box)
// One RSA-2048 signing key is generated at start by the primary and handed to every
// worker, so all of them sign with the same key and serve the same JWKS.
import cluster from 'node:cluster';
import { generateKeyPairSync } from 'node:crypto';

const port = Number(process.env.PEER_PORT || 9392);
const workers = Number(process.env.PEER_WORKERS || 1);
const issuer = `http://127.0.0.1:${port}`;
const secret = 'bench-client-secret-0123456789abcdef';
const resource = `${issuer}/api`;

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: 'bench-rs256', alg: 'RS256', use: 'sig' };
}

async function serve(jwk) {
  const { default: Provider } = await import('oidc-provider');
  const provider = new Provider(issuer, {
    jwks: { keys: [jwk] },
    scopes: ['openid', 'offline_access', 'api:read'],
    clients: [{
      client_id: 'm2m',
      client_secret: secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'api:read',
    }],
    // Fixed cookie keys: cookies are not used by the benchmarked endpoints, but this
    // keeps workers consistent and silences the "generated keys" notice.
    cookies: { keys: ['bench-peer-cookie-key-0123456789abcdef'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // A plain `grant_type=client_credentials&scope=api:read` (no `resource`
        // parameter) is bound to the one resource server, so it gets a JWT.
        defaultResource: () => resource,
        getResourceServerInfo: () => ({
          scope: 'api:read',
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    ttl: { ClientCredentials: 3600 },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  await new Promise((resolve) => { provider.listen(port, '127.0.0.1', resolve); });
}

if (workers <= 1) {
  await serve(signingKey());
  console.log(`oidc-provider peer on ${issuer}, 1 process`);
} else if (cluster.isPrimary) {
  const env = { PEER_JWK: JSON.stringify(signingKey()) };
  let ready = 0;
  for (let i = 0; i < workers; i += 1) {
    cluster.fork(env).on('listening', () => {
      ready += 1;
      if (ready === workers) console.log(`oidc-provider peer on ${issuer}, ${workers} worker processes`);
    });
  }
  // A worker that dies is not replaced: the benchmark should see it, not hide it.
  cluster.on('exit', (worker, code, signal) => {
    console.error(`peer worker ${worker.process.pid} exited (${signal || code})`);
  });
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  await serve(JSON.parse(process.env.PEER_JWK));
}
