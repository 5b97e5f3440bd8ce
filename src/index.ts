// The package's main entry ('unifusion'): the DSL, plus compiling a traced graph to ONNX and the
// output-folder discipline commands share. Graph files usually import 'unifusion/dsl' only.
export * from './dsl/index.ts';
export { compileGraph, writeCompiled, type Compiled, type CompileOptions, type Manifest } from './compiler.ts';
export { writeOutputDir, writeOutputFile, RunDir, OutputError } from './io/outdir.ts';
