// How loud onnxruntime may be. Its own log lines (graph-optimizer warnings, C++ source positions,
// library-loading attempts) mean nothing to a user of this CLI, and every error it reports is
// rewritten by the runtime into the user's terms, so by default only fatal messages pass.
// `--verbose` (or UNIFUSION_VERBOSE=1) lets everything through. No onnxruntime import here:
// the CLI sets this before deciding whether to load the native addon at all.

export const ortLogging = {
  verbose: Boolean(process.env.UNIFUSION_VERBOSE),
};

export function setVerbose(on: boolean): void {
  ortLogging.verbose = on;
}

/** ORT severity: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal. */
export function ortSeverity(): 0 | 1 | 2 | 3 | 4 {
  return ortLogging.verbose ? 1 : 4;
}
