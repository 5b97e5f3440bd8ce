// node:url for the browser bundle: module-level path arithmetic in src/layout.ts and src/dsl/site.ts
// runs at import (their results are unused by the page, but must not throw).
export function fileURLToPath(u: string | URL): string {
  return decodeURIComponent(new URL(String(u)).pathname);
}
export function pathToFileURL(p: string): URL {
  return new URL(`file://${p.split('/').map(encodeURIComponent).join('/')}`);
}
export default { fileURLToPath, pathToFileURL };
