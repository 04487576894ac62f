// A real Better Auth server for the Python test suite (tests/better_auth.py starts it).
//
// Why a real one: TaskFlow verifies Better Auth's JWTs against its JWKS, and a hand-written
// mock would only prove that we agree with ourselves. This is the same library a deployment
// runs, with the `jwt` and `bearer` plugins, email+password sign-up, and an in-memory database
// so that no external service is needed.
//
// Configuration (environment; the port may also be the first argument):
//   PORT                        port on 127.0.0.1 (0 = let the OS choose; the ready line tells)
//   BETTER_AUTH_SECRET          required; the fixture generates one per run, never committed
//   JWT_ALG                     EdDSA (default), RS256, PS256, ES256 or ES512
//   JWT_ROTATION_INTERVAL       seconds; when set, a signing key expires after this long and the
//                               next token is signed with a fresh key (the old one stays in the
//                               JWKS for JWT_GRACE_PERIOD seconds)
//   JWT_GRACE_PERIOD            seconds (Better Auth's default: 30 days)
//   JWT_EXPIRATION              lifetime of issued JWTs, e.g. "15m" (Better Auth's default)
//
// Besides Better Auth's own routes under /api/auth, one test-only route exists:
//   POST /__test__/sign-jwt  {"payload": {...}}  ->  {"token": "..."}
// It calls Better Auth's server-only `signJWT` API, so tests can obtain tokens with chosen claims
// (expired, not yet valid, another audience) signed by the server's real key. A deployment never
// runs this script; it only ever listens on 127.0.0.1.
//
// Once listening it prints one line to stdout:
//   BETTER_AUTH_READY {"url": "http://127.0.0.1:PORT", "alg": "EdDSA"}
import { createServer } from "node:http";

import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { toNodeHandler } from "better-auth/node";
import { bearer, jwt } from "better-auth/plugins";

const HOST = "127.0.0.1";

function positiveNumber(name) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name} must be a positive number of seconds, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function keyPairConfig(alg) {
  switch (alg) {
    case "EdDSA":
      return { alg: "EdDSA", crv: "Ed25519" };
    case "RS256":
    case "PS256":
      return { alg, modulusLength: 2048 };
    case "ES256":
    case "ES512":
      return { alg };
    default:
      throw new Error(`JWT_ALG ${JSON.stringify(alg)} is not one Better Auth can sign with`);
  }
}

function sendJson(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

async function signForTest(auth, req, res) {
  try {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const { payload } = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
      sendJson(res, 400, { message: "body must be {\"payload\": {...claims}}" });
      return;
    }
    const { token } = await auth.api.signJWT({ body: { payload } });
    sendJson(res, 200, { token });
  } catch (error) {
    sendJson(res, 500, { message: String(error?.message ?? error) });
  }
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, HOST, () => resolve(server.address().port));
  });
}

async function main() {
  const secret = process.env.BETTER_AUTH_SECRET;
  if (!secret || secret.length < 32) {
    throw new Error("BETTER_AUTH_SECRET must be set (at least 32 characters)");
  }
  const alg = process.env.JWT_ALG || "EdDSA";
  const rotationInterval = positiveNumber("JWT_ROTATION_INTERVAL");
  const gracePeriod = positiveNumber("JWT_GRACE_PERIOD");
  const requestedPort = Number(process.argv[2] ?? process.env.PORT ?? 0);

  // The base URL must be known before Better Auth is built (it becomes `iss` and `aud`),
  // so bind first, then hand requests to the handler once it exists.
  let auth = null;
  let handler = null;
  const server = createServer((req, res) => {
    if (handler === null) {
      sendJson(res, 503, { message: "starting" });
    } else if (req.method === "POST" && req.url === "/__test__/sign-jwt") {
      signForTest(auth, req, res);
    } else {
      handler(req, res);
    }
  });
  const port = await listen(server, requestedPort);
  const url = `http://${HOST}:${port}`;

  const db = { user: [], session: [], account: [], verification: [], jwks: [] };
  auth = betterAuth({
    baseURL: url,
    secret,
    database: memoryAdapter(db),
    emailAndPassword: { enabled: true },
    // Tests sign up many users from one address in a burst; a limiter would make them flaky.
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    plugins: [
      bearer(),
      jwt({
        jwks: {
          keyPairConfig: keyPairConfig(alg),
          ...(rotationInterval ? { rotationInterval } : {}),
          ...(gracePeriod ? { gracePeriod } : {}),
        },
        ...(process.env.JWT_EXPIRATION
          ? { jwt: { expirationTime: process.env.JWT_EXPIRATION } }
          : {}),
      }),
    ],
  });
  handler = toNodeHandler(auth);

  const stop = () => server.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  process.stdout.write(`BETTER_AUTH_READY ${JSON.stringify({ url, alg })}\n`);
}

main().catch((error) => {
  process.stderr.write(`better_auth_server: ${error?.stack ?? error}\n`);
  process.exit(1);
});
