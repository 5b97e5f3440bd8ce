// Node-only modules that runtime/ code imports but the page never calls (sharp, cli-progress,
// node:zlib, ...): any call fails naming what was called, so a browser path that reaches one is
// a clear error instead of undefined behaviour. CommonJS so that any named import binds; the bundler
// plugin (src/web/bundle.ts) makes one per module: require(this)(name).
'use strict';
function stub(name) {
  return new Proxy(function () {}, {
    get(_t, k) {
      if (k === '__esModule') return false;
      if (k === 'then' || typeof k === 'symbol') return undefined;
      return stub(`${name}.${String(k)}`);
    },
    apply() {
      throw new Error(`${name}() is a Node API, not available in the browser page`);
    },
    construct() {
      throw new Error(`new ${name}() is a Node API, not available in the browser page`);
    },
  });
}
module.exports = stub;
