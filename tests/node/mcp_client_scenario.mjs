// An agent and a human using TaskFlow's MCP server through the official MCP TypeScript SDK
// client, over real Streamable HTTP (tests/mcp/test_http_typescript.py runs it).
//
// Why the TypeScript client: it is what many hosts embed, and it checks things our Python tests
// would not (it validates every structuredContent against the tool's outputSchema with Ajv).
//
// Usage: node mcp_client_scenario.mjs <mcp-url>
//   env AGENT_KEY  an agent's API key (tf_...)      env HUMAN_JWT  a Better Auth JWT
// Prints one JSON line with what happened; exits non-zero on any unexpected answer.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = new URL(process.argv[2]);
const { AGENT_KEY, HUMAN_JWT } = process.env;
if (!AGENT_KEY || !HUMAN_JWT) throw new Error("AGENT_KEY and HUMAN_JWT are required");

async function connect(name, token) {
  const client = new Client({ name, version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  return client;
}

// callTool validates structuredContent against outputSchema; a tool error is a failure here.
async function call(client, name, args = {}) {
  const result = await client.callTool({ name, arguments: args });
  if (result.isError) throw new Error(`${name} refused: ${result.content[0].text}`);
  return result.structuredContent;
}

const out = {};

// Without a token: 401 and a pointer to the protected-resource metadata (RFC 9728).
const anonymous = await fetch(url, {
  method: "POST",
  headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream" },
  body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
});
out.anonymous = { status: anonymous.status, wwwAuthenticate: anonymous.headers.get("www-authenticate") };

const agent = await connect("scenario-agent", AGENT_KEY);
out.protocolVersion = agent.transport.protocolVersion ?? null;
const tools = await agent.listTools();
out.tools = tools.tools.map((t) => t.name);
out.annotated = tools.tools.every((t) => t.annotations && t.annotations.openWorldHint === false);
out.agent = (await call(agent, "whoami")).handle;

const created = await call(agent, "create_task", {
  title: "Ship the MCP server",
  priority: "high",
  subtasks: [{ title: "Write the tools" }, { title: "Write the docs" }],
});
const taskId = created.task.id;
out.taskId = taskId;
out.subtaskIds = created.subtasks.map((t) => t.id);
for (const id of out.subtaskIds) {
  // Parents finish last: the subtasks are done before the task goes for approval.
  await call(agent, "start_task", { task_id: id });
  await call(agent, "complete_task", { task_id: id });
}
out.started = await call(agent, "start_task", { task_id: taskId, expected_version: created.task.version });
out.progressed = await call(agent, "update_progress", { task_id: taskId, percent: 80, note: "tests green" });
out.review = await call(agent, "request_review", { task_id: taskId });

// A refusal is a tool result with isError, never a protocol error.
const refused = await agent.callTool({ name: "approve_task", arguments: { task_id: taskId } });
out.selfApproval = { isError: refused.isError === true, text: refused.content[0].text };

const human = await connect("scenario-human", HUMAN_JWT);
out.human = (await call(human, "whoami")).handle;
out.approved = await call(human, "approve_task", { task_id: taskId, note: "looks good" });
const trail = await call(human, "get_audit_trail", { task_id: taskId });
out.audit = trail.items.map((e) => ({ action: e.action, actor: e.actor, type: e.actor_type, via: e.via }));

await agent.close();
await human.close();
console.log(JSON.stringify(out));
