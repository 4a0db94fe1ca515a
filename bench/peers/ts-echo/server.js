// Benchmark peer: the TypeScript SDK's stock McpServer + StreamableHTTPServerTransport
// (stateful: one transport per Mcp-Session-Id, kept in a session map), on the SDK's
// own express app, as in the SDK's examples/server/simpleStreamableHttp.js minus
// logging, OAuth, the event store and the 1000-session cap.
//
// Usage: node server.js PORT        (binds 127.0.0.1 only; endpoint /mcp)
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import * as z from 'zod/v4';

const port = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    console.error('usage: node server.js PORT');
    process.exit(2);
}
const HOST = '127.0.0.1';

const getServer = () => {
    const server = new McpServer({ name: 'ts-echo', version: '1.0.0' });
    server.registerTool(
        'echo',
        { description: 'Echo back the given text', inputSchema: { text: z.string() } },
        async ({ text }) => ({ content: [{ type: 'text', text }] })
    );
    return server;
};

// host 127.0.0.1 => the SDK applies its localhost Host-header (DNS rebinding) check.
const app = createMcpExpressApp({ host: HOST });
const sessions = new Map(); // session id -> transport

const jsonError = (res, status, code, message) =>
    res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id: null });

app.post('/mcp', async (req, res) => {
    const sessionId = req.headers['mcp-session-id'];
    try {
        let transport = sessionId ? sessions.get(sessionId) : undefined;
        if (!transport) {
            if (sessionId) return jsonError(res, 404, -32001, 'Session not found');
            if (!isInitializeRequest(req.body)) {
                return jsonError(res, 400, -32000, 'Bad Request: No valid session ID provided');
            }
            // Default transport options: SSE responses (enableJsonResponse: false).
            const t = new StreamableHTTPServerTransport({
                sessionIdGenerator: () => randomUUID(),
                onsessioninitialized: sid => { sessions.set(sid, t); }
            });
            t.onclose = () => { if (t.sessionId) sessions.delete(t.sessionId); };
            await getServer().connect(t);
            transport = t;
        }
        await transport.handleRequest(req, res, req.body);
    } catch (error) {
        console.error('Error handling MCP request:', error);
        if (!res.headersSent) jsonError(res, 500, -32603, 'Internal server error');
    }
});

// GET (standalone SSE stream) and DELETE (session termination) go to the session's transport.
const sessionRequest = async (req, res) => {
    const sessionId = req.headers['mcp-session-id'];
    if (!sessionId) return res.status(400).send('Missing session ID');
    const transport = sessions.get(sessionId);
    if (!transport) return jsonError(res, 404, -32001, 'Session not found');
    try {
        await transport.handleRequest(req, res);
    } catch (error) {
        console.error('Error handling MCP request:', error);
        if (!res.headersSent) res.status(500).send('Internal server error');
    }
};
app.get('/mcp', sessionRequest);
app.delete('/mcp', sessionRequest);

const httpServer = app.listen(port, HOST, error => {
    if (error) {
        console.error('Failed to start server:', error);
        process.exit(1);
    }
    console.error(`ts-echo listening on http://${HOST}:${port}/mcp (pid ${process.pid})`);
});

const shutdown = async () => {
    for (const t of sessions.values()) await t.close().catch(() => {});
    httpServer.close();
    process.exit(0);
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
