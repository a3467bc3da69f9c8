#!/usr/bin/env bash
# Starts vllm-sim and wasmgate for a local demo; Ctrl-C stops both.
set -euo pipefail
sim_port=${1:-8000}
gate_port=${2:-8080}
root=$(cd "$(dirname "$0")/.." && pwd)
run_dir="$root/run"
mkdir -p "$run_dir/components/guards" "$run_dir/components/agents"
cp "$root/target/wasm32-wasip2/component/guard.wasm" "$run_dir/components/guards/guard.wasm"
cp "$root/target/wasm32-wasip2/component/agent.wasm" "$run_dir/components/agents/expert.wasm"
# The default agent answers from this repository's docs.
cat > "$run_dir/components/agents/expert.toml" <<TOML
tools = ["kb-search", "calculator", "now"]
kb_dir = "$root/docs"
TOML

"$root/target/debug/vllm-sim" --port "$sim_port" --mode lorem --model Qwen/Qwen2.5-0.5B-Instruct \
  --script "$root/scripts/demo-script.json" &
sim=$!
trap 'kill $sim 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$sim_port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
# The web UI's Components panel needs the admin token; a fresh one per demo run unless
# WASMGATE_ADMIN_TOKEN is set. Passed in the environment, so `ps` does not show it.
export WASMGATE_ADMIN_TOKEN=${WASMGATE_ADMIN_TOKEN:-$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')}
echo "vllm-sim on http://127.0.0.1:$sim_port; starting wasmgate on http://127.0.0.1:$gate_port"
echo "web chat: http://127.0.0.1:$gate_port/  (admin token for its Components panel: $WASMGATE_ADMIN_TOKEN)"
echo "try: curl -N http://127.0.0.1:$gate_port/v1/chat/completions -H 'content-type: application/json' \\"
echo "       -d '{\"model\":\"Qwen/Qwen2.5-0.5B-Instruct\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'"
"$root/target/debug/wasmgate" serve \
  --listen "127.0.0.1:$gate_port" \
  --upstream "http://127.0.0.1:$sim_port/v1" \
  --components "$run_dir/components" \
  --ui-dir "$root/target/ui-dist"
