/**
 * Plans of local commands standing in for k3s (no real k3s here): the "server" writes a token file in
 * `dir` and prints it as `corral-token: …`; an "agent" records the server URL and token it was given;
 * the uninstall plans remove what they wrote. `failOnce` names a node whose agent step fails on its
 * first run only; `failAlways` one whose agent step always fails. Like the real k3s plans, the steps
 * ask for root (`root: true`): they read and remove what the agent wrote as root.
 */
export const testPlans: Readonly<Record<string, string>> = {
  "test-k3s-server.yaml": `name: test-k3s-server
version: 1
parameters:
  dir: { required: true, pattern: "/[A-Za-z0-9._/-]+" }
  token: { required: true, secret: true, pattern: "[A-Za-z0-9]{16,128}" }
steps:
  - name: write the node token
    file: { path: "{{dir}}/server-node-token", content: "K10test{{node.name}}::server:{{token}}\\n", mode: "0600" }
  - name: print the node token
    exec: [sed, -n, "s/^/corral-token: /p", "{{dir}}/server-node-token"]
    root: true
onFailure: { retries: 1, rollback: test-k3s-server-uninstall }
`,
  "test-k3s-agent.yaml": `name: test-k3s-agent
version: 1
parameters:
  dir: { required: true, pattern: "/[A-Za-z0-9._/-]+" }
  server: { required: true, pattern: "https://[A-Za-z0-9.-]+:[0-9]{1,5}" }
  token: { required: true, secret: true, pattern: "[A-Za-z0-9:._-]{16,256}" }
  failOnce: { default: "-", pattern: "[a-z0-9-]+" }
  failAlways: { default: "-", pattern: "[a-z0-9-]+" }
steps:
  - name: record the join
    file: { path: "{{dir}}/agent-{{node.name}}.join", content: "server={{server}}\\ntoken={{token}}\\n", mode: "0600" }
  - name: start the agent
    exec:
      - sh
      - -c
      - 'if [ "$1" = "$3" ]; then echo "$1 cannot start" >&2; exit 3; fi; if [ "$1" = "$2" ] && [ ! -e "$4" ]; then : > "$4"; echo "$1 fails its first try" >&2; exit 1; fi; echo "$1 started"'
      - sh
      - "{{node.name}}"
      - "{{failOnce}}"
      - "{{failAlways}}"
      - "{{dir}}/agent-{{node.name}}.tried"
    root: true
onFailure: { retries: 1, rollback: test-k3s-agent-uninstall }
`,
  "test-k3s-server-uninstall.yaml": `name: test-k3s-server-uninstall
version: 1
parameters:
  dir: { required: true, pattern: "/[A-Za-z0-9._/-]+" }
steps:
  - name: remove the node token
    exec: [rm, -f, "{{dir}}/server-node-token"]
    root: true
`,
  "test-k3s-agent-uninstall.yaml": `name: test-k3s-agent-uninstall
version: 1
parameters:
  dir: { required: true, pattern: "/[A-Za-z0-9._/-]+" }
steps:
  - name: remove what the agent wrote
    exec: [rm, -f, "{{dir}}/agent-{{node.name}}.join", "{{dir}}/agent-{{node.name}}.tried"]
    root: true
`,
};

export const testClusterPlans = {
  server: "test-k3s-server",
  agent: "test-k3s-agent",
  serverUninstall: "test-k3s-server-uninstall",
  agentUninstall: "test-k3s-agent-uninstall",
};
