// Worker-thread entry of startTypecheck (src/cli/typecheck.ts): TypeScript sources need tsx's
// loader, which a worker does not inherit from the main thread, so it registers it itself.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { typecheckFile } = await import(workerData.module);
parentPort.postMessage(await typecheckFile(workerData.file));
