// node:util for the browser bundle: promisify (src/io/safetensors.ts wraps fs calls at import).
export function promisify<T>(f: (...a: any[]) => void): (...a: unknown[]) => Promise<T> {
  return (...a) => new Promise<T>((resolve, reject) => f(...a, (e: Error | null, v: T) => (e ? reject(e) : resolve(v))));
}
export default { promisify };
