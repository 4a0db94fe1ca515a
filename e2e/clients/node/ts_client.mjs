// Interop check with the REAL TypeScript MCP SDK clients (pinned in ../versions.env).
//
// Usage: node ts_client.mjs URL --sdk v2|v1 --era legacy|modern
//   env MCP_E2E_NODE_MODULES = node_modules dir from install.sh (required)
//
//   --sdk v2  @modelcontextprotocol/client (v2 split package). Speaks both eras:
//             --era legacy  versionNegotiation {mode:'legacy'} (the SDK default):
//                           POST initialize (offers 2025-11-25), Mcp-Session-Id.
//             --era modern  versionNegotiation {mode:'auto'}: POST server/discover
//                           first, must land on 2026-07-28 (stateless; every request
//                           carries the _meta envelope + MCP-Protocol-Version,
//                           Mcp-Method, Mcp-Name headers). A silent fallback to
//                           initialize is detected and FAILS.
//   --sdk v1  @modelcontextprotocol/sdk 1.x (legacy only; the most deployed client).
//
// With MCP_E2E_OAUTH_CLIENT_ID / _CLIENT_SECRET / _ISSUER (and optionally _SCOPE) set, the
// transport authenticates with the SDK's own ClientCredentialsProvider: a 401 leads it to the
// server's Protected Resource Metadata, the issuer's metadata and a client_credentials token
// (e2e/auth/run.sh).
//
// Checks: connect, tools/list (has echo + test_simple_text), tools/call echo
// {"text":"hello"} (text contains "hello"), tools/call test_simple_text (has text),
// resources/list, prompts/list, close. Exit 0 if all pass, 1 on the first failure,
// 2 on usage / environment errors.
import { createRequire } from 'node:module';
import path from 'node:path';

const MODERN = '2026-07-28';
const TIMEOUT_MS = 30_000;

function usage(msg) {
  if (msg) console.log(`  FAIL ${msg}`);
  console.error('usage: node ts_client.mjs URL --sdk v2|v1 --era legacy|modern');
  process.exit(2);
}

const args = process.argv.slice(2);
const url = args.find((a) => !a.startsWith('--') && !['v1', 'v2', 'legacy', 'modern'].includes(a));
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const sdk = opt('--sdk');
const era = opt('--era');
if (!url || !['v1', 'v2'].includes(sdk) || !['legacy', 'modern'].includes(era)) usage();
if (sdk === 'v1' && era === 'modern') usage('@modelcontextprotocol/sdk v1 cannot speak 2026-07-28');

const nm = process.env.MCP_E2E_NODE_MODULES;
if (!nm) usage('MCP_E2E_NODE_MODULES is not set; run e2e/clients/install.sh');
const req = createRequire(path.join(nm, '..', 'package.json'));

let Client, StreamableHTTPClientTransport, ClientCredentialsProvider, version;
try {
  if (sdk === 'v2') {
    ({ Client, StreamableHTTPClientTransport, ClientCredentialsProvider } = req('@modelcontextprotocol/client'));
    version = req(path.join(nm, '@modelcontextprotocol/client/package.json')).version;
  } else {
    ({ Client } = req('@modelcontextprotocol/sdk/client/index.js'));
    ({ StreamableHTTPClientTransport } = req('@modelcontextprotocol/sdk/client/streamableHttp.js'));
    ({ ClientCredentialsProvider } = req('@modelcontextprotocol/sdk/client/auth-extensions.js'));
    version = req(path.join(nm, '@modelcontextprotocol/sdk/package.json')).version;
  }
} catch (e) {
  console.log(`  FAIL cannot load the TypeScript SDK from ${nm}: ${e.message}; run e2e/clients/install.sh`);
  process.exit(2);
}
const label = `ts-${sdk === 'v2' ? 'client' : 'sdk'}${version}/${era}`;

class CheckFailed extends Error {}

function describe(e) {
  const parts = [`${e?.name ?? 'Error'}: ${e?.message ?? String(e)}`];
  if (e?.code !== undefined) parts.push(`code=${e.code}`);
  if (e?.data !== undefined) parts.push(`data=${JSON.stringify(e.data)}`);
  let c = e?.cause;
  for (let depth = 0; c && depth < 4; depth++, c = c.cause) parts.push(`cause: ${c?.message ?? String(c)}`);
  return parts.join('; ');
}

const textOf = (res) => (res?.content ?? []).filter((c) => c?.type === 'text').map((c) => c.text);

let t0 = Date.now();
const ok = (what) => {
  console.log(`  ok   ${label} ${what} (${Date.now() - t0} ms)`);
  t0 = Date.now();
};

const reqOpts = { timeout: TIMEOUT_MS };
// v2's cacheable list verbs take cacheMode; 'bypass' makes sure we hit the server.
const listOpts = sdk === 'v2' ? { ...reqOpts, cacheMode: 'bypass' } : reqOpts;
// v1: callTool(params, resultSchema?, options?); v2: callTool(params, options?).
const callTool = (params) =>
  sdk === 'v2' ? client.callTool(params, reqOpts) : client.callTool(params, undefined, reqOpts);

let current = 'connect';
const clientOpts = sdk === 'v2' ? { versionNegotiation: { mode: era === 'modern' ? 'auto' : 'legacy' } } : {};
const client = new Client({ name: 'mcpcluster-e2e', version: '0.0.0' }, clientOpts);
const oauth = process.env.MCP_E2E_OAUTH_CLIENT_ID
  ? new ClientCredentialsProvider({
      clientId: process.env.MCP_E2E_OAUTH_CLIENT_ID,
      clientSecret: process.env.MCP_E2E_OAUTH_CLIENT_SECRET ?? '',
      scope: process.env.MCP_E2E_OAUTH_SCOPE || undefined,
      expectedIssuer: process.env.MCP_E2E_OAUTH_ISSUER,
    })
  : undefined;
const transport = new StreamableHTTPClientTransport(new URL(url), oauth ? { authProvider: oauth } : {});
let rc = 0;
const overall = setTimeout(() => {
  console.log(`  FAIL ${label} ${current}: overall timeout (${(6 * TIMEOUT_MS) / 1000}s)`);
  process.exit(1);
}, 6 * TIMEOUT_MS);
try {
  await client.connect(transport, reqOpts);
  const pv = client.getNegotiatedProtocolVersion?.() ?? transport.protocolVersion;
  const srv = client.getServerVersion();
  const who = srv ? `${srv.name} ${srv.version}` : 'anonymous server';
  if (era === 'modern') {
    const eraGot = client.getProtocolEra?.();
    if (pv !== MODERN || eraGot !== 'modern') {
      throw new CheckFailed(
        `expected protocol ${MODERN} via server/discover, but got era=${eraGot} protocol=${pv}: the SDK fell ` +
          'back to the initialize handshake (server/discover was rejected, or its supportedVersions lacked 2026-07-28)',
      );
    }
  } else if (pv === MODERN) {
    throw new CheckFailed(`legacy mode negotiated ${pv}?!`);
  }
  const sid = transport.sessionId;
  ok(`connect: protocol ${pv}, ${who}, Mcp-Session-Id=${sid ? 'set' : 'none'}`);

  current = 'tools/list';
  let res = await client.listTools({}, listOpts);
  const names = res.tools.map((t) => t.name);
  const missing = ['echo', 'test_simple_text'].filter((n) => !names.includes(n));
  if (missing.length) throw new CheckFailed(`lacks ${JSON.stringify(missing)}; got ${JSON.stringify(names)}`);
  ok(`tools/list: ${JSON.stringify(names)}`);

  current = 'tools/call echo';
  res = await callTool({ name: 'echo', arguments: { text: 'hello' } });
  if (res.isError) throw new CheckFailed(`isError=true: ${JSON.stringify(textOf(res))}`);
  if (!textOf(res).some((t) => t.includes('hello')))
    throw new CheckFailed(`no text content containing 'hello': ${JSON.stringify(res.content)}`);
  ok(`tools/call echo: ${JSON.stringify(textOf(res))}`);

  current = 'tools/call test_simple_text';
  res = await callTool({ name: 'test_simple_text', arguments: {} });
  if (res.isError) throw new CheckFailed(`isError=true: ${JSON.stringify(textOf(res))}`);
  if (!textOf(res).length) throw new CheckFailed(`no text content: ${JSON.stringify(res.content)}`);
  ok(`tools/call test_simple_text: ${JSON.stringify(textOf(res))}`);

  current = 'resources/list';
  res = await client.listResources({}, listOpts);
  ok(`resources/list: ${JSON.stringify(res.resources.map((r) => r.uri))}`);

  current = 'prompts/list';
  res = await client.listPrompts({}, listOpts);
  ok(`prompts/list: ${JSON.stringify(res.prompts.map((p) => p.name))}`);

  current = 'close';
  // Legacy: DELETE the session (404/405 tolerated by the SDK), then close.
  if (era === 'legacy' && transport.sessionId && typeof transport.terminateSession === 'function') {
    await transport.terminateSession();
  }
  await client.close();
  ok('close');
} catch (e) {
  console.log(`  FAIL ${label} ${current}: ${e instanceof CheckFailed ? e.message : describe(e)}`);
  rc = 1;
  try {
    await client.close();
  } catch {}
}
clearTimeout(overall);
process.exit(rc);
