#!/usr/bin/env bash
# How a consumer's install of the packed tarball behaves on this machine (registry-only network),
# for npm 11 (this machine's) and npm 10 (Node 20's bundled one, fetched with npx from the registry):
#   plain           npm install <tgz>
#   env             ONNXRUNTIME_NODE_INSTALL=skip npm install <tgz>
#   allowScripts    package.json "allowScripts": { "onnxruntime-node": false }, then npm install <tgz>
# Each case: a fresh project, exit status, seconds, the npm warnings, whether onnxruntime-node's
# postinstall tried its download, and whether CPU inference then works.
#   bash scripts/measure-consumer-install.sh /tmp/unifusion-0.1.0.tgz [npm10]
set -uo pipefail
tgz="$(readlink -f "$1")"
versions=("11")
[ "${2:-}" = "npm10" ] && versions+=("10")
for v in "${versions[@]}"; do
  if [ "$v" = 11 ]; then npm=(npm); else npm=(npx -y npm@10); fi
  for mode in plain env allowScripts; do
    dir="$(mktemp -d)"
    if [ "$mode" = allowScripts ]; then
      printf '{ "name": "consumer", "private": true, "type": "module", "allowScripts": { "onnxruntime-node": false } }\n' > "$dir/package.json"
    else
      printf '{ "name": "consumer", "private": true, "type": "module" }\n' > "$dir/package.json"
    fi
    envs=()
    [ "$mode" = env ] && envs=(ONNXRUNTIME_NODE_INSTALL=skip)
    t0=$(date +%s.%N)
    (cd "$dir" && env "${envs[@]}" "${npm[@]}" install "$tgz" --no-audit --no-fund --prefer-offline > out.log 2>&1)
    rc=$?
    t1=$(date +%s.%N)
    tried=$(grep -c -E "nuget|Failed to|Downloading" "$dir/out.log")
    warns=$(grep -E "^npm warn" "$dir/out.log" | grep -v "^npm warn install-scripts *$" | sed 's/^/      /' | head -8)
    infer="-"
    if [ "$rc" = 0 ]; then
      infer=$(cd "$dir" && node --input-type=module -e "
        import * as ort from 'onnxruntime-node';
        import { Session } from 'unifusion/runtime';
        import { compileGraph, writeCompiled, trace, input, Linear } from 'unifusion';
        const g = trace('lin', () => ({ y: new Linear(3, 2).forward(input('x', 'f32', [1, 3])) }));
        await writeCompiled('m', compileGraph(g));
        const s = await Session.load('m/lin.onnx');
        const r = await s.run({ x: { dtype: 'f32', shape: [1, 3], data: Float32Array.of(1, 2, 3) } });
        console.log('cpu inference ok, y =', Array.from(r.y.data).map((v) => v.toFixed(4)).join(' '));
      " 2>&1 | tail -1)
    fi
    printf 'npm %s  %-12s exit %s  %5.1f s  download tried: %s  %s\n' "$("${npm[@]}" --version 2>/dev/null | tail -1)" "$mode" "$rc" "$(echo "$t1 - $t0" | bc)" "$([ "$tried" -gt 0 ] && echo yes || echo no)" "$infer"
    [ -n "$warns" ] && echo "$warns"
    [ "$rc" != 0 ] && grep -E "^npm error" "$dir/out.log" | head -4 | sed 's/^/      /'
    rm -rf "$dir"
  done
done
