"""The MCP surface: every core operation as a lean, annotated tool (see docs/mcp.md).

operations.py generates the tools from the operation declarations, toolsets.py groups them;
server.py builds the server (with resources.py); http.py and stdio.py serve it; identity.py says
who is calling; errors.py words refusals for agents; schema.py compacts the schemas.
"""
