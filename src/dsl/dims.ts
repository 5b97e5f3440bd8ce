// Dim arithmetic for user graphs, without internal imports: a shape of `h*2` is `dims.mul(h, 2)`.
// Dims are numbers or symbolic polynomials (src/ir/dims.ts); results stay symbolic exactly where
// they must (div(mul(seq, 2), 2) is seq again), so shapes of different paths compare equal.
export { dimAdd as add, dimSub as sub, dimMul as mul, dimDiv as div, dimProd as prod, dimEq as eq, dimStr as str, evalDim as evaluate, isStatic, parseDim as parse } from '../ir/dims.ts';
