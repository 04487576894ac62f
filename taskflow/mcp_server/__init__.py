"""The MCP surface: every core operation as a lean, annotated tool (see docs/mcp.md).

server.py builds the server (tools_*.py, resources.py); http.py and stdio.py serve it;
identity.py says who is calling; errors.py, schema.py, outputs.py and toolkit.py are shared by
the tools; coverage.py maps each core operation to the tool that reaches it.
"""
